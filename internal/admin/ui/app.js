// Proto Balance dashboard. Plain JavaScript, no build step, no framework.
//
// The server renders the page with the current state; this script then
// polls the admin API (GET /api/status, /api/clusters, /api/listeners,
// /api/bans) every data-poll milliseconds and updates the figures in place,
// keeping the last five minutes of connection and traffic rates (computed
// from the counters' deltas) for the small graphs. When listeners, clusters
// or nodes come or go it fetches /dashboard/main, the server-rendered
// fragment, and swaps it in. Controls call the same endpoints as
// `protobalance ctl`, and a failed call shows the API's own message.
//
// Token: when the server needs one (body data-token="required"), the page
// asks for it, keeps it in sessionStorage (this tab and origin only) and
// sends it as "Authorization: Bearer" on every request; there is no cookie.
'use strict';

(function () {
  const body = document.body;
  const main = document.getElementById('main');
  const TOKEN_KEY = 'protobalance-admin-token';
  const needToken = body.dataset.token === 'required';
  let token = needToken ? sessionStorage.getItem(TOKEN_KEY) : null;

  // ?poll=MS overrides the server's interval (bounded), e.g. for tests.
  const asked = Number(new URLSearchParams(location.search).get('poll'));
  const POLL = asked >= 200 && asked <= 60000 ? asked : Number(body.dataset.poll) || 2000;
  const POINTS = Math.min(300, Math.ceil(300000 / POLL)); // five minutes of samples

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const attr = (name, value) => '[' + name + '="' + CSS.escape(value) + '"]';

  // ---- formatting (the same as dashboard.go's template functions) ----
  function fmtBytes(n) {
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return i === 0 ? Math.round(n) + ' B' : n.toFixed(1) + ' ' + units[i];
  }
  const fmtRate = f => f < 10 ? f.toFixed(1) : f.toFixed(0);
  function fmtUptime(sec) {
    const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600);
    const m = Math.floor(sec % 3600 / 60), s = Math.floor(sec % 60);
    return d ? d + 'd ' + h + 'h' : h ? h + 'h ' + m + 'm' : m + 'm ' + s + 's';
  }

  // ---- the API ----
  class APIError extends Error {
    constructor(status, message, details) {
      super(message);
      this.status = status;
      this.details = details || [];
    }
  }

  // call makes one request; JSON bodies in and out. A failure throws an
  // APIError carrying the API's message and details (FILE:LINE problems).
  async function call(method, path, data, asText) {
    const headers = { Accept: asText ? 'text/html' : 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (data !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(data);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new APIError(0, 'the admin server does not answer (' + e.message + ')');
    }
    const text = await resp.text();
    if (resp.ok) return asText ? text : JSON.parse(text);
    let doc = null;
    try { doc = JSON.parse(text); } catch (e) { /* not an error document */ }
    const err = doc && doc.error;
    throw new APIError(resp.status, err ? err.message : resp.status + ' ' + resp.statusText, err && err.details);
  }
  const nodePath = (c, n) => '/api/clusters/' + encodeURIComponent(c) + '/nodes/' + encodeURIComponent(n);

  // ---- messages ----
  function showAlert(text, details) {
    const box = $('#alert');
    box.replaceChildren();
    const p = document.createElement('p');
    p.textContent = text;
    box.append(p);
    if (details && details.length) {
      const ul = document.createElement('ul');
      for (const d of details) {
        const li = document.createElement('li');
        li.textContent = d;
        ul.append(li);
      }
      box.append(ul);
    }
    box.hidden = false;
  }
  function clearAlert() { $('#alert').hidden = true; $('#alert').replaceChildren(); }
  function notice(text) { $('#notice').textContent = text; }
  function setLive(text, bad) { const l = $('#live'); l.textContent = text; l.classList.toggle('bad', !!bad); }

  // ---- history and graphs ----
  const hist = new Map(); // key -> {t, count, bytes, conn: [], traffic: []}

  function sample(key, t, count, bytes) {
    let h = hist.get(key);
    if (!h) {
      h = { t, count, bytes, conn: [], traffic: [] };
      hist.set(key, h);
      return h;
    }
    const dt = t - h.t;
    if (dt < 0.1) return h;
    push(h.conn, Math.max(0, (count - h.count) / dt));
    push(h.traffic, Math.max(0, (bytes - h.bytes) / dt));
    h.t = t; h.count = count; h.bytes = bytes;
    return h;
  }
  function push(a, v) { a.push(v); if (a.length > POINTS) a.shift(); }
  const last = a => a.length ? a[a.length - 1] : null;

  function draw(svg, values, unit) {
    if (!svg) return;
    const max = Math.max(...values, 1e-9);
    // The graph fills from the right; the x scale shrinks as samples come
    // in, until it holds five minutes (POINTS samples).
    const step = 150 / Math.max(30, values.length - 1);
    const x0 = 150 - (values.length - 1) * step;
    const pts = values.map((v, i) => (x0 + i * step).toFixed(1) + ',' + (23 - 22 * v / max).toFixed(1));
    svg.firstElementChild.setAttribute('points', pts.join(' '));
    svg.dataset.max = values.length ? unit(Math.max(...values)) : '';
    svg.setAttribute('aria-label', svg.getAttribute('aria-label').replace(/( \(peak .*\))?$/, values.length ? ' (peak ' + svg.dataset.max + ')' : ''));
  }

  // ---- applying a poll ----
  function set(row, field, text) {
    const el = $('[data-f="' + field + '"]', row);
    if (el && el.textContent !== String(text)) el.textContent = text;
  }
  const editing = el => el && (el === document.activeElement || el.dataset.dirty === '1');

  // shapeMatches reports whether the page shows exactly these listeners,
  // clusters and nodes (and fall-over links); otherwise the fragment is
  // fetched again.
  function shapeMatches(clusters, listeners) {
    const lrows = $$('tr[data-listener]');
    if (lrows.length !== listeners.length) return false;
    if (lrows.some((r, i) => r.dataset.listener !== listeners[i].name || r.dataset.clusterNow !== listeners[i].cluster)) return false;
    const secs = $$('section[data-cluster]');
    if (secs.length !== clusters.length) return false;
    return secs.every((sec, i) => {
      const c = clusters[i];
      const rows = $$('tr[data-node]', sec);
      return sec.dataset.cluster === c.name && rows.length === c.nodes.length &&
        $('[data-f="affinity"]', sec).dataset.affinity === String(c.affinity) &&
        rows.every((r, j) => r.dataset.node === c.nodes[j].name && r.dataset.fallover === c.nodes[j].fallover);
    });
  }

  function apply(st, clusters, listeners, bans) {
    const t = performance.now() / 1000;
    setLive('Live · updated ' + new Date().toLocaleTimeString() + ' · version ' + st.version + ' · up ' +
      fmtUptime(st.uptime_seconds) + ' · ' + st.goroutines + ' goroutines · ' + fmtBytes(st.rss_bytes) + ' resident');
    for (const l of listeners) {
      const row = $('tr' + attr('data-listener', l.name));
      if (!row) continue;
      set(row, 'accepted', l.accepted);
      set(row, 'active', l.active);
      set(row, 'no_node', l.no_node);
      set(row, 'refused', l.refused);
      const h = sample('l/' + l.name, t, l.accepted, 0);
      set(row, 'rate', h.conn.length ? fmtRate(last(h.conn)) : '—');
      draw($('[data-g="conn"]', row), h.conn, v => fmtRate(v) + '/s');
      const sel = $('select', row);
      if (!editing(sel)) sel.value = l.cluster;
    }
    for (const c of clusters) {
      const sec = $('section' + attr('data-cluster', c.name));
      if (!sec) continue;
      const size = c.affinity_size;
      set(sec, 'affinity', !c.affinity ? '—' : size == null ? 'on' : size + ' client' + (size === 1 ? '' : 's'));
      for (const n of c.nodes) applyNode($('tr' + attr('data-node', n.name), sec), c, n, t);
    }
    applyBans(bans);
  }

  function applyNode(row, c, n, t) {
    if (!row) return;
    row.dataset.state = n.state;
    set(row, 'state', n.state);
    for (const b of $$('button[data-set]', row)) b.setAttribute('aria-pressed', String(b.dataset.set === n.state));
    const health = $('[data-f="health"]', row);
    health.className = n.available ? 'ok' : 'bad';
    // check_error: the last health-check error, once the API reports it.
    set(row, 'health', (n.available ? 'available' : 'unavailable') + (n.check_error ? ': ' + n.check_error : ''));
    const w = $('input[data-f="weight"]', row);
    if (!editing(w) && w.value !== String(n.weight)) w.value = n.weight;
    set(row, 'active', n.active);
    set(row, 'total', n.total);
    set(row, 'fails', n.failures + ' / ' + n.marked_down + ' / ' + n.fall_ins);
    set(row, 'bytes', fmtBytes(n.bytes_in) + ' in · ' + fmtBytes(n.bytes_out) + ' out');
    const h = sample(c.name + '/' + n.name, t, n.total, n.bytes_in + n.bytes_out);
    if (h.conn.length) {
      set(row, 'conn', fmtRate(last(h.conn)));
      set(row, 'traffic', fmtBytes(last(h.traffic)) + '/s');
    }
    draw($('[data-g="conn"]', row), h.conn, v => fmtRate(v) + '/s');
    draw($('[data-g="traffic"]', row), h.traffic, v => fmtBytes(v) + '/s');
  }

  function applyBans(bans) {
    const box = $('[data-f="bans"]');
    if (!box) return;
    const p = document.createElement('p');
    p.className = 'muted';
    if (bans instanceof Error) {
      p.textContent = '— (' + bans.message + ')';
      box.replaceChildren(p);
      return;
    }
    if (!bans.bans.length) {
      p.textContent = 'none';
      box.replaceChildren(p);
      return;
    }
    const table = document.createElement('table');
    table.className = 'grid';
    const head = table.createTHead().insertRow();
    for (const h of ['Client', 'Listener', 'Until']) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      head.append(th);
    }
    const tb = table.createTBody();
    for (const b of bans.bans) {
      const r = tb.insertRow();
      for (const v of [b.client, b.listener, b.until]) r.insertCell().textContent = v;
    }
    box.replaceChildren(table);
  }

  // reloadMain swaps in a freshly rendered fragment, keeping the focus
  // on the same control when it still exists.
  async function reloadMain() {
    const html = await call('GET', '/dashboard/main', undefined, true);
    const active = document.activeElement;
    const row = active && active.closest && active.closest('tr[id]');
    const focusSel = active && active.id ? '#' + CSS.escape(active.id)
      : row && active.dataset.set ? '#' + CSS.escape(row.id) + ' ' + attr('data-set', active.dataset.set) : null;
    const doc = new DOMParser().parseFromString(html, 'text/html');
    main.replaceChildren(...doc.body.childNodes);
    const again = focusSel && $(focusSel);
    if (again) again.focus();
  }

  // ---- the polling loop: one request set at a time ----
  let timer = null, inFlight = null, stopped = false;

  async function pollOnce() {
    const [st, cl, ls, bans] = await Promise.all([
      call('GET', '/api/status'), call('GET', '/api/clusters'), call('GET', '/api/listeners'),
      call('GET', '/api/bans').catch(e => { if (e.status === 401) throw e; return e; }),
    ]);
    if (!shapeMatches(cl.clusters, ls.listeners)) await reloadMain();
    apply(st, cl.clusters, ls.listeners, bans);
  }

  function refresh() {
    clearTimeout(timer);
    if (inFlight) return inFlight.then(refresh);
    inFlight = pollOnce().then(() => { body.classList.remove('stale'); }, e => {
      if (e.status === 401) return lock(e.message);
      body.classList.add('stale');
      setLive('Connection lost, retrying: ' + e.message, true);
    }).finally(() => {
      inFlight = null;
      if (!stopped) timer = setTimeout(refresh, POLL);
    });
    return inFlight;
  }

  // ---- token ----
  function lock(message) {
    stopped = true;
    clearTimeout(timer);
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    main.replaceChildren();
    $('#forget').hidden = true;
    $('#login').hidden = false;
    setLive('Locked: enter the admin token');
    if (message) showAlert(message);
    $('#token').focus();
  }

  async function unlock(candidate) {
    token = candidate;
    try {
      await call('GET', '/api/status');
    } catch (e) {
      token = null;
      showAlert('Token refused: ' + e.message);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    clearAlert();
    $('#login').hidden = true;
    $('#forget').hidden = false;
    stopped = false;
    refresh();
  }

  // ---- controls ----
  async function act(what, fn) {
    clearAlert();
    notice(what + '…');
    try {
      const res = await fn();
      notice(res && res.message ? res.message : what + ': done');
    } catch (e) {
      notice('');
      showAlert(what + ' failed: ' + e.message, e.details);
      if (e.status === 401) lock(e.message);
    }
    if (!stopped) await refresh();
  }

  let confirmDone = null;
  function confirmRed(cluster, node, active) {
    const d = $('#confirm');
    $('#confirm-title').textContent = 'Set node ' + node + ' of cluster ' + cluster + ' red?';
    $('#confirm-text').textContent = 'Red closes its ' + active + ' open connection' + (active === '1' ? '' : 's') +
      ' at once and sends it no new ones. To let connections finish, choose Yellow instead.';
    d.returnValue = '';
    d.showModal();
    $('#confirm-cancel').focus();
    return new Promise(resolve => { confirmDone = resolve; });
  }
  $('#confirm').addEventListener('close', () => {
    if (confirmDone) confirmDone($('#confirm').returnValue === 'ok');
    confirmDone = null;
  });
  $('#confirm-ok').addEventListener('click', () => $('#confirm').close('ok'));
  $('#confirm-cancel').addEventListener('click', () => $('#confirm').close('cancel'));

  document.addEventListener('click', async ev => {
    const b = ev.target.closest('button[data-set]');
    if (!b) return;
    const row = b.closest('tr[data-node]');
    const { cluster, node } = row.dataset, state = b.dataset.set;
    if (state === 'red' && !await confirmRed(cluster, node, $('[data-f="active"]', row).textContent)) {
      notice('Node ' + node + ' left ' + row.dataset.state + '.');
      b.focus();
      return;
    }
    await act('Set ' + cluster + '/' + node + ' ' + state, () => call('PUT', nodePath(cluster, node), { state }));
  });

  document.addEventListener('input', ev => {
    if (ev.target.matches('input[data-f="weight"], select')) ev.target.dataset.dirty = '1';
  });

  document.addEventListener('submit', async ev => {
    const f = ev.target;
    ev.preventDefault();
    if (f.id === 'login') {
      unlock($('#token').value.trim());
      $('#token').value = '';
    } else if (f.classList.contains('weight')) {
      const input = $('input', f), raw = input.value.trim();
      const weight = /^-?\d+$/.test(raw) ? Number(raw) : raw;
      delete input.dataset.dirty;
      await act('Set weight of ' + f.dataset.cluster + '/' + f.dataset.node, () => typeof weight === 'number'
        ? call('PUT', nodePath(f.dataset.cluster, f.dataset.node), { weight })
        : Promise.reject(new APIError(0, 'weight ' + JSON.stringify(raw) + ': enter a whole number')));
    } else if (f.classList.contains('switch')) {
      const sel = $('select', f), l = f.dataset.listener;
      delete sel.dataset.dirty;
      await act('Point listener ' + l + ' at ' + sel.value, () =>
        call('PUT', '/api/listeners/' + encodeURIComponent(l), { cluster: sel.value }));
    }
  });

  $('#reload').addEventListener('click', () => act('Reload', () => call('POST', '/api/reload')));
  $('#forget').addEventListener('click', () => { lock(); clearAlert(); notice('Token forgotten.'); });

  // ---- start ----
  if (needToken && !token) {
    lock();
  } else {
    if (needToken) $('#forget').hidden = false;
    refresh();
  }
})();
