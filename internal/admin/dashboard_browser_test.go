package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/protobalance/protobalance/internal/admin"
)

// The dashboard in a real browser, against a balancer moving real
// connections: what the page shows, and what its buttons do to sockets.

// openPage loads the dashboard with a short poll interval and waits for
// the script's first update.
func openPage(t *testing.T, ctx context.Context, f *fixture) {
	t.Helper()
	do(t, ctx, "open the dashboard", chromedp.Navigate(f.url+"/?poll=250"))
	waitJS(t, ctx, "the first live update", `document.getElementById('live').textContent.startsWith('Live')`)
}

// held is a client connection kept open through the balancer.
type held struct {
	c net.Conn
	r *bufio.Reader
}

// holdOn opens connections through addr until one is served by node, and
// keeps that one open.
func holdOn(t *testing.T, addr, node string) *held {
	t.Helper()
	for range 20 {
		c, name, r, err := session(addr)
		if err != nil {
			t.Fatal(err)
		}
		if name == node {
			t.Cleanup(func() { c.Close() })
			return &held{c, r}
		}
		c.Close()
	}
	t.Fatalf("no connection through %s reached %s", addr, node)
	return nil
}

// echo checks that the connection still carries bytes both ways.
func (h *held) echo(t *testing.T, msg string) {
	t.Helper()
	h.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(h.c, msg); err != nil {
		t.Fatalf("held connection: write: %v", err)
	}
	if got, err := h.r.ReadString('\n'); err != nil || got != msg+"\n" {
		t.Fatalf("held connection: read %q, %v; want %q", got, err, msg)
	}
}

// closed checks that the balancer closed the connection (EOF or reset,
// not a timeout).
func (h *held) closed(t *testing.T) {
	t.Helper()
	h.c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := h.r.ReadByte()
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Fatalf("held connection still open after red: %v", err)
	}
}

// served makes n connections through addr and counts the serving nodes.
func served(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		name, err := roundTrip(addr, []byte("conn "+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		got[name]++
	}
	return got
}

// apiNode reads a node through the API.
func apiNode(t *testing.T, f *fixture, cluster, node string) admin.Node {
	t.Helper()
	st, body, _ := f.call(t, "GET", "/api/clusters/"+cluster+"/nodes/"+node, "")
	var n admin.Node
	if err := json.Unmarshal(body, &n); st != 200 || err != nil {
		t.Fatalf("GET node %s/%s: %d %v %s", cluster, node, st, err, body)
	}
	return n
}

func btn(cluster, node, state string) chromedp.CSS {
	return chromedp.CSS(nodeSel(cluster, node) + fmt.Sprintf(` button[data-set=%q]`, state))
}

func weightInput(cluster, node string) chromedp.CSS {
	return chromedp.CSS(nodeSel(cluster, node) + ` input[data-f="weight"]`)
}

// TestDashboardShowsState: the first render already shows every node in
// its state; later changes made elsewhere (ctl, the API) appear without a
// page load; traffic shows in the figures and graphs.
func TestDashboardShowsState(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := newBrowser(t)
	for _, c := range []struct{ node, body string }{{"a2", `{"state": "red"}`}, {"b2", `{"state": "yellow"}`}} {
		if st, body, _ := f.call(t, "PUT", "/api/clusters/"+strings.ToUpper(c.node[:1])+"/nodes/"+c.node, c.body); st != 200 {
			t.Fatalf("PUT %s: %d %s", c.node, st, body)
		}
	}
	// No waiting: the states are in the server-rendered HTML.
	do(t, ctx, "open the dashboard", chromedp.Navigate(f.url+"/?poll=250"))
	want := map[string]string{"A/a1": "green", "A/a2": "red", "B/b1": "green", "B/b2": "yellow"}
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-node][data-state]').length`); n != len(want) {
		t.Errorf("page shows %d nodes, want %d", n, len(want))
	}
	for k, state := range want {
		c, n, _ := strings.Cut(k, "/")
		if got := nodeState(t, ctx, c, n); got != state {
			t.Errorf("first render: %s is %q, want %q", k, got, state)
		}
	}
	if got := eval[string](t, ctx, `[...document.querySelectorAll('tr[data-listener]')].map(r => r.dataset.listener + '>' + r.querySelector('select').value).join(' ')`); got != "web>A other>B" {
		t.Errorf("listeners: %q", got)
	}

	// Live: changes through the API show up without a page load.
	eval[bool](t, ctx, `!!(window.view = document.getElementById('view'))`)
	f.call(t, "PUT", "/api/clusters/A/nodes/a2", `{"state": "green"}`)
	f.call(t, "PUT", "/api/clusters/B/nodes/b1", `{"weight": 4}`)
	waitState(t, ctx, "A", "a2", "green")
	waitJS(t, ctx, "b1 weight 4", `document.querySelector('`+nodeSel("B", "b1")+` input').value === '4'`)
	// Same page, same fragment: figures were updated in place.
	if !eval[bool](t, ctx, `window.view === document.getElementById('view')`) {
		t.Error("the page or its main fragment was loaded again for a change of figures")
	}

	// Traffic: totals, rates and graphs follow real connections.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range []string{"web", "other"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(5+i%40) * time.Millisecond):
				}
				roundTrip(f.listenerAddr(l), []byte(strings.Repeat("x", 1000*(1+i%50))))
			}
		}()
	}
	holdOn(t, f.listenerAddr("web"), "a1")
	holdOn(t, f.listenerAddr("other"), "b1")
	d := 3 * time.Second
	if os.Getenv("PB_SCREENSHOTS") == "1" {
		d = 12 * time.Second // longer graphs for the picture
	}
	time.Sleep(d)
	waitJS(t, ctx, "a conn/s graph", `document.querySelector('`+nodeSel("A", "a1")+` svg[data-g="conn"] polyline').getAttribute('points').split(' ').length >= 5`)
	waitJS(t, ctx, "a conn/s figure", `parseFloat(document.querySelector('`+nodeSel("A", "a1")+` [data-f="conn"]').textContent) > 0`)
	waitJS(t, ctx, "active connections", `document.querySelector('`+nodeSel("A", "a1")+` [data-f="active"]').textContent !== '0'`)
	f.call(t, "PUT", "/api/clusters/B/nodes/b2", `{"state": "yellow"}`)
	waitState(t, ctx, "B", "b2", "yellow")
	screenshot(t, ctx, "dashboard.png")
	close(stop)
	wg.Wait()
	a1 := apiNode(t, f, "A", "a1")
	waitJS(t, ctx, "a1's total as the API counts it",
		fmt.Sprintf(`+document.querySelector('%s [data-f="total"]').textContent >= %d`, nodeSel("A", "a1"), a1.Total))
}

// TestDashboardDrainAndStop: "yellow" drains a node (new connections
// avoid it, open ones continue), "red" asks first, and once confirmed
// closes the node's connections.
func TestDashboardDrainAndStop(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := newBrowser(t)
	web := f.listenerAddr("web")
	h := holdOn(t, web, "a1")
	openPage(t, ctx, f)

	do(t, ctx, "click yellow on a1", chromedp.Click(btn("A", "a1", "yellow")))
	waitState(t, ctx, "A", "a1", "yellow")
	if got := served(t, web, 12); got["a1"] != 0 || got["a2"] != 12 {
		t.Errorf("after yellow: connections went to %v, want all 12 on a2", got)
	}
	h.echo(t, "still served while draining")
	if n := apiNode(t, f, "A", "a1"); n.State != "yellow" || n.Active != 1 {
		t.Errorf("API: a1 %s with %d active, want yellow with 1", n.State, n.Active)
	}

	// Red asks first; cancelling changes nothing.
	do(t, ctx, "click red on a1", chromedp.Click(btn("A", "a1", "red")))
	waitJS(t, ctx, "the confirmation dialog", `document.getElementById('confirm').open`)
	if txt := eval[string](t, ctx, `document.getElementById('confirm').innerText`); !strings.Contains(txt, "closes its 1 open connection") {
		t.Errorf("dialog text: %q", txt)
	}
	screenshot(t, ctx, "dashboard-confirm-red.png")
	do(t, ctx, "cancel", chromedp.Click(chromedp.ID("confirm-cancel")))
	waitJS(t, ctx, "the dialog to close", `!document.getElementById('confirm').open`)
	time.Sleep(600 * time.Millisecond) // two polls
	if s := nodeState(t, ctx, "A", "a1"); s != "yellow" {
		t.Errorf("after cancel a1 is %q", s)
	}
	h.echo(t, "still served after cancel")

	// Confirmed, red closes the connection at once.
	do(t, ctx, "click red on a1", chromedp.Click(btn("A", "a1", "red")))
	waitJS(t, ctx, "the confirmation dialog", `document.getElementById('confirm').open`)
	do(t, ctx, "confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	waitState(t, ctx, "A", "a1", "red")
	h.closed(t)
	if got := served(t, web, 6); got["a1"] != 0 {
		t.Errorf("after red: connections went to %v", got)
	}
	waitJS(t, ctx, "a1 active 0 on the page", `document.querySelector('`+nodeSel("A", "a1")+` [data-f="active"]').textContent === '0'`)

	// Back to green from the keyboard: focus the button, press Enter.
	do(t, ctx, "green by keyboard", chromedp.Focus(btn("A", "a1", "green")), chromedp.KeyEvent("\r"))
	waitState(t, ctx, "A", "a1", "green")
	if got := served(t, web, 10); got["a1"] < 4 || got["a1"] > 6 {
		t.Errorf("after green: %v, want about 5 and 5", got)
	}
}

// TestDashboardWeight: a weight typed into the page shows up in the
// distribution of real connections, and in the page's totals.
func TestDashboardWeight(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := newBrowser(t)
	web := f.listenerAddr("web")
	openPage(t, ctx, f)
	do(t, ctx, "type weight 3 for a1",
		chromedp.SetValue(weightInput("A", "a1"), ""), chromedp.SendKeys(weightInput("A", "a1"), "3\r"))
	waitJS(t, ctx, "the API's answer", `document.getElementById('notice').textContent.includes('weight 3')`)
	if n := apiNode(t, f, "A", "a1"); n.Weight != 3 {
		t.Fatalf("API: a1 weight %d, want 3", n.Weight)
	}
	got := served(t, web, 40)
	if got["a1"] < 29 || got["a1"] > 31 || got["a1"]+got["a2"] != 40 {
		t.Errorf("weights 3:1 over 40 connections: %v, want about 30:10", got)
	}
	for _, n := range []string{"a1", "a2"} {
		total := apiNode(t, f, "A", n).Total
		waitJS(t, ctx, n+" total on the page", fmt.Sprintf(`document.querySelector('%s [data-f="total"]').textContent === '%d'`, nodeSel("A", n), total))
	}
	if v := eval[string](t, ctx, `document.querySelector('`+nodeSel("A", "a1")+` input').value`); v != "3" {
		t.Errorf("weight input shows %q", v)
	}
}

// TestDashboardErrors: a failing call shows the API's own message, and a
// rejected reload its FILE:LINE problems.
func TestDashboardErrors(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := newBrowser(t)
	openPage(t, ctx, f)
	do(t, ctx, "type weight 2000000",
		chromedp.SetValue(weightInput("A", "a2"), ""), chromedp.SendKeys(weightInput("A", "a2"), "2000000\r"))
	waitJS(t, ctx, "the error", `document.getElementById('alert').innerText.includes('weight 2000000: must be between 0 and 1048576')`)
	if n := apiNode(t, f, "A", "a2"); n.Weight != 1 {
		t.Errorf("weight changed to %d", n.Weight)
	}

	good, err := os.ReadFile(f.file)
	if err != nil {
		t.Fatal(err)
	}
	f.writeConfig(t, string(good)+"\n[[cluster]]\nname = \"C\"\nweight = -1\n")
	do(t, ctx, "click reload", chromedp.Click(chromedp.ID("reload")))
	waitJS(t, ctx, "the reload error", `document.getElementById('alert').innerText.includes('reload rejected')`)
	txt := alertText(t, ctx)
	if !strings.Contains(txt, "test.toml:") {
		t.Errorf("reload error without FILE:LINE details: %q", txt)
	}
	t.Logf("alert: %s", txt)
	screenshot(t, ctx, "dashboard-error.png")

	f.writeConfig(t, string(good))
	do(t, ctx, "reload again", chromedp.Click(chromedp.ID("reload")))
	waitJS(t, ctx, "the reload", `document.getElementById('notice').textContent === 'configuration reloaded'`)
	if txt := alertText(t, ctx); txt != "" {
		t.Errorf("alert still shown: %q", txt)
	}
}

// TestDashboardSwitch: pointing a listener at another cluster from the page
// moves the next connections; a node added through the API appears
// without a page load.
func TestDashboardSwitch(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := newBrowser(t)
	web := f.listenerAddr("web")
	openPage(t, ctx, f)
	sel := `tr[data-listener="web"]`
	// Typing "B" on the focused select picks the option, as a keyboard user would.
	do(t, ctx, "choose cluster B", chromedp.SendKeys(chromedp.CSS(sel+` select`), "B"))
	waitJS(t, ctx, "B chosen", `document.querySelector('`+sel+` select').value === 'B'`)
	time.Sleep(600 * time.Millisecond) // polls must not undo the choice
	do(t, ctx, "click switch", chromedp.Click(chromedp.CSS(sel+` button`)))
	waitJS(t, ctx, "web -> B", `document.querySelector('`+sel+`').dataset.clusterNow === 'B'`)
	if got := served(t, web, 4); got["b1"]+got["b2"] != 4 {
		t.Errorf("after the switch: %v, want all on b1/b2", got)
	}

	body := fmt.Sprintf(`{"name": "x1", "address": %q, "fallover": "b1"}`, f.nodes["x1"].addr())
	if st, out, _ := f.call(t, "POST", "/api/clusters/B/nodes", body); st != 201 {
		t.Fatalf("POST node: %d %s", st, out)
	}
	waitState(t, ctx, "B", "x1", "green")
	if href := eval[string](t, ctx, `document.querySelector('`+nodeSel("B", "x1")+` a').getAttribute('href')`); href != "#n-1-0" {
		t.Errorf("fall-over link of x1: %q, want #n-1-0 (b1)", href)
	}
	if got := served(t, web, 6); got["x1"] < 1 || got["x1"] > 3 {
		t.Errorf("with x1: %v, want about 2 of 6 on x1", got)
	}
}

// TestDashboardTokenBrowser: with a token file the page asks for the
// token, shows the API's refusal, keeps a good token for the tab and uses
// it for reads and changes.
func TestDashboardTokenBrowser(t *testing.T) {
	const token = "s3cret-t0ken"
	f := newFixture(t, fixtureOpts{token: token})
	ctx := newBrowser(t)
	do(t, ctx, "open the dashboard", chromedp.Navigate(f.url+"/?poll=250"))
	waitJS(t, ctx, "the token form", `!document.getElementById('login').hidden && document.activeElement.id === 'token'`)
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-node]').length`); n != 0 {
		t.Fatalf("locked page shows %d nodes", n)
	}
	do(t, ctx, "a wrong token", chromedp.SendKeys(chromedp.ID("token"), "wrong\r"))
	waitJS(t, ctx, "the refusal", `document.getElementById('alert').innerText.includes('missing or wrong token')`)
	do(t, ctx, "the token", chromedp.SendKeys(chromedp.ID("token"), token+"\r"))
	waitState(t, ctx, "B", "b1", "green")

	do(t, ctx, "click yellow on b1", chromedp.Click(btn("B", "b1", "yellow")))
	waitState(t, ctx, "B", "b1", "yellow")
	if n := apiNode(t, f, "B", "b1"); n.State != "yellow" {
		t.Errorf("API: b1 %s", n.State)
	}
	if got := served(t, f.listenerAddr("other"), 4); got["b2"] != 4 {
		t.Errorf("after yellow: %v", got)
	}

	do(t, ctx, "load the page again", chromedp.Reload())
	waitState(t, ctx, "B", "b1", "yellow") // the tab kept the token
	do(t, ctx, "forget the token", chromedp.Click(chromedp.ID("forget")))
	waitJS(t, ctx, "the token form again", `!document.getElementById('login').hidden && !document.querySelector('[data-node]')`)
}
