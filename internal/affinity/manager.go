package affinity

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store timing. FlushInterval is the crash-loss bound: a record learnt or
// refreshed is in the bbolt file (fsync'd) and in Redis at most
// FlushInterval (+ one transaction, ~1 ms here) later, so a crash loses at
// most the last 100 ms of changes. At ~0.9 ms per transaction that is under
// 1% of one core for bbolt. A burst queueing FlushBatch changes flushes at
// once rather than building a transaction of unbounded size (100k puts take
// 0.7 s in one transaction here; 8192 sorted ones take a few ms).
const (
	FlushInterval  = 100 * time.Millisecond
	FlushBatch     = 8192
	ExpireInterval = time.Second
)

// Config says where a Manager keeps its tables.
type Config struct {
	// Path is the bbolt file ([store] path); "" keeps the tables in
	// memory only. It is opened by Open, so call Open only when some
	// cluster uses affinity.
	Path string
	// Redis is a redis:// URL ([store] redis); "" = not shared.
	Redis string
	// Log receives store failures, each once per outage; nil discards.
	Log *slog.Logger
}

// Manager owns the tables by name, the stores and the background flusher
// (one goroutine flushes every FlushInterval and expires every
// ExpireInterval; with Redis another pings it every RedisRetryInterval
// while it is down and then writes back). All methods are safe for
// concurrent use.
//
// Shared mode (Redis). The conflict rules, enforced by one Lua script per
// record so that Redis decides atomically:
//   - a client new to a balancer is written set-if-absent with the TTL as
//     expiry: the first writer wins, and a loser adopts the winner's node
//     for its next connections (Stats.Conflicts);
//   - a rewrite (the client moved to a stand-in) or a refresh overwrites,
//     unless Redis holds a record seen more recently, which then wins
//     (last seen is in whole seconds of each balancer's clock: keep the
//     twins' clocks synchronised);
//   - records learnt while Redis was away are written back when it
//     returns by the same rules: the record already in Redis wins for a
//     client new to this balancer, else the more recently seen one.
//
// Propagation bound: a record learnt by one balancer is in Redis within
// FlushInterval + one round trip (~100 ms; Redis is written before the
// bbolt fsync); from then on a local miss on the twin finds it
// (LookupShared). Every write that changes the node Redis holds is
// published by the same script, and a twin holding a stale local record
// replaces it on receipt (pub/sub, ~1 ms). Both stay well under the 0.5 s
// of DESIGN F5 while Redis is reachable. Two balancers that see a new
// client within the same ~100 ms may each send its first connections to
// their own pick; the loser converges at its next flush. Pushes sent while
// a twin was disconnected are lost: its stale records converge at their
// next refresh (a write that changes the node is published). A Forget
// while Redis is down is local only.
type Manager struct {
	log    *slog.Logger
	bolt   *boltStore
	redis  *redisStore
	mu     sync.Mutex
	tables map[string]*Table

	flushMu  sync.Mutex // one flush at a time; guards boltFail
	boltFail bool
	kickc    chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
	closed   sync.Once
	done     atomic.Bool // Close has run

	flushes, written, errs, writtenBack atomic.Uint64
}

// Open opens the stores and starts the flusher. A store file held by
// another process fails within BoltLockTimeout with an error wrapping
// ErrLocked. An unreachable Redis is not an error: the Manager starts on
// the local table and connects when Redis answers.
func Open(cfg Config) (*Manager, error) {
	m := &Manager{log: cfg.Log, tables: map[string]*Table{},
		kickc: make(chan struct{}, 1), stop: make(chan struct{})}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if cfg.Path != "" {
		if m.bolt, err = openBolt(cfg.Path); err != nil {
			return nil, err
		}
	}
	if cfg.Redis != "" {
		if m.redis, err = openRedis(cfg.Redis, m.log, &m.errs); err != nil {
			if m.bolt != nil {
				m.bolt.close()
			}
			return nil, err
		}
		m.redis.onPush = m.onPush
		m.redis.subscribe()
	}
	m.wg.Add(1)
	go m.run()
	if m.redis != nil {
		m.wg.Add(1)
		go m.reconnect()
	}
	return m, nil
}

// DB is the bbolt file, for other state kept beside the affinity records
// in their own top-level buckets (the "affinity" bucket is this package's).
// It is nil without Config.Path. Use short transactions: the flusher
// shares the single writer slot.
func (m *Manager) DB() *bolt.DB {
	if m.bolt == nil {
		return nil
	}
	return m.bolt.db
}

// Table returns the table called name (the affinity group, else the
// cluster name), creating it with o and restoring its records from the
// store on first use: call it for every table before the listeners open.
// Records last seen a TTL or more ago are dropped (and deleted from the
// file); beyond Max the least recently seen are. For an existing table o
// is applied with SetOptions (a reload). Get o from GroupOptions.
func (m *Manager) Table(name string, o Options) (*Table, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.tables[name]; t != nil {
		return t, t.SetOptions(o)
	}
	t := NewTable(name, o)
	t.persist = (m.bolt != nil || m.redis != nil) && !m.done.Load()
	t.kick = m.kick
	if m.bolt != nil {
		limit := time.Now().Unix() - int64(o.TTL/time.Second)
		expired := 0
		var recs []stored
		err := m.bolt.load(name, func(k key, node []byte, seen int64) {
			if seen <= limit {
				t.queueDelete(k)
				expired++
				return
			}
			recs = append(recs, stored{k, seen, t.nameIDBytes(node)})
		})
		if err != nil {
			return nil, err
		}
		t.restoreAll(recs)
		t.expirations.Add(uint64(expired))
		t.evict(int64(o.Max))
	}
	m.tables[name] = t
	return t, nil
}

func (t *Table) queueDelete(k key) {
	sh := t.shard(k)
	sh.mu.Lock()
	t.queueOp(sh, op{k: k})
	sh.mu.Unlock()
}

func (m *Manager) kick() {
	select {
	case m.kickc <- struct{}{}:
	default:
	}
}

func (m *Manager) run() {
	defer m.wg.Done()
	tick := time.NewTicker(FlushInterval)
	defer tick.Stop()
	var lastExpire time.Time
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		case <-m.kickc:
		}
		now := time.Now()
		if now.Sub(lastExpire) >= ExpireInterval {
			lastExpire = now
			for _, t := range m.snapshot() {
				t.Expire(now)
			}
		}
		m.flush(now) // errors are logged and counted inside
	}
}

func (m *Manager) snapshot() []*Table {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := make([]*Table, 0, len(m.tables))
	for _, t := range m.tables {
		ts = append(ts, t)
	}
	return ts
}

// Flush writes every queued change now, as the flusher does every
// FlushInterval. Close calls it.
func (m *Manager) Flush() error { return m.flush(time.Now()) }

func (m *Manager) flush(now time.Time) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	redisUp := m.redis != nil && m.redis.up.Load()
	var batches []tableChanges
	var tables []*Table
	for _, t := range m.snapshot() {
		if cs := t.drain(redisUp, nil); len(cs) > 0 {
			batches = append(batches, tableChanges{t.name, cs})
			tables = append(tables, t)
		}
	}
	var err error
	// Redis first: the twin's propagation bound should not wait on an fsync.
	if redisUp {
		for i, t := range tables {
			err = errors.Join(err, m.redisWrite(t, batches[i].changes, now))
		}
	}
	if m.bolt != nil && len(batches) > 0 {
		if n, berr := m.bolt.write(batches); berr != nil {
			err = errors.Join(err, berr)
			m.errs.Add(1)
			if !m.boltFail {
				m.log.Error("affinity: store write failed, will retry", "err", berr)
			}
			m.boltFail = true
			for i, b := range batches {
				for _, c := range b.changes {
					if c.bolt {
						tables[i].requeue(c)
					}
				}
			}
		} else {
			if m.boltFail {
				m.log.Info("affinity: store writes work again")
			}
			m.boltFail = false
			m.flushes.Add(1)
			m.written.Add(uint64(n))
		}
	}
	return err
}

func (m *Manager) table(name string) *Table {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tables[name]
}

// Stats returns the store counters.
func (m *Manager) Stats() StoreStats {
	s := StoreStats{Flushes: m.flushes.Load(), Written: m.written.Load(),
		Errors: m.errs.Load(), WrittenBack: m.writtenBack.Load()}
	if m.redis != nil {
		s.RedisUp, s.RedisDowns = m.redis.up.Load(), m.redis.downs.Load()
	}
	return s
}

// Close stops the flusher, flushes every queued change and closes the
// stores. It is idempotent. The tables stay usable (a binary upgrade closes
// the store while the old process drains), but what they learn afterwards
// is neither persisted nor shared, nor queued; records are no longer
// expired in the background (lookups still ignore expired ones).
func (m *Manager) Close() error {
	var err error
	m.closed.Do(func() {
		close(m.stop)
		m.wg.Wait()
		err = m.Flush()
		m.mu.Lock()
		m.done.Store(true)
		for _, t := range m.tables {
			t.detach()
		}
		m.mu.Unlock()
		if m.redis != nil {
			m.redis.up.Store(false) // lookups stay local from now on
			err = errors.Join(err, m.redis.close())
		}
		if m.bolt != nil {
			err = errors.Join(err, m.bolt.close())
		}
	})
	return err
}
