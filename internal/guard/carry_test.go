package guard

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCarryOverSameMasks(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.MaxClientConns = 2, 1
	old := mustNew(t, cfg, Options{})
	bad, busy := ip("192.0.2.66"), ip("192.0.2.7")
	admitN(old, bad, 3, t0, 0) // banned
	if !old.Admit(busy, t0).OK {
		t.Fatal("busy refused")
	}
	old.Admit(ip("10.0.0.1"), t0) // in old's window only
	cfg2 := listener()
	cfg2.MaxConnRate, cfg2.MaxClientConns = 2, 1
	cfg2.Deny = prefixes(t, "10.0.0.0/8")
	g := mustNew(t, cfg2, Options{Shards: 4}) // other shard layout
	g.CarryOver(old)

	if v := g.Admit(bad, t0.Add(time.Second)); v.Reason != ReasonBan {
		t.Fatalf("ban not carried: %+v", v)
	}
	if v := g.Admit(busy, t0.Add(time.Second)); v.Reason != ReasonConcurrency {
		t.Fatalf("open connection not carried: %+v", v)
	}
	// The old connection ends against the old guard: forwarded.
	old.Release(busy)
	if v := g.Admit(busy, t0.Add(2*time.Second)); !v.OK {
		t.Fatalf("after forwarded Release: %+v", v)
	}
	// An accept loop still holding old is forwarded too.
	if v := old.Admit(busy, t0.Add(2*time.Second)); v.Reason != ReasonConcurrency {
		t.Fatalf("old.Admit not forwarded: %+v", v)
	}
	if !old.liftAt(bad, t0.Add(time.Second)) || len(g.Bans(t0.Add(time.Second))) != 0 {
		t.Fatal("Lift through old guard failed")
	}
	if c := g.Counters(); c.Ban != 1 || c.Rate != 1 || c.Concurrency != 2 || c.Tracked != 3 {
		t.Fatalf("counters not shared: %+v", c)
	}
	if c := old.Counters(); c.Tracked != 0 {
		t.Fatalf("old still tracks %d", c.Tracked)
	}
}

func TestCarryOverNewMasks(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.MaxClientConns = 2, 1
	old := mustNew(t, cfg, Options{})
	admitN(old, ip("192.0.2.66"), 3, t0, 0)
	old.Admit(ip("192.0.2.7"), t0)

	cfg.ClientMaskV4 = 24
	g := mustNew(t, cfg, Options{})
	g.CarryOver(old)
	bans := g.Bans(t0)
	if len(bans) != 1 || bans[0].Client.String() != "192.0.2.0/24" {
		t.Fatalf("Bans = %+v", bans)
	}
	// Open-connection counts stay with old; Release there is not forwarded.
	old.Release(ip("192.0.2.7"))
	if v := g.Admit(ip("198.51.100.1"), t0); !v.OK {
		t.Fatalf("%+v", v)
	}
	if v := g.Admit(ip("198.51.100.2"), t0); v.Reason != ReasonConcurrency {
		t.Fatalf("%+v", v)
	}

	// A guard without limits drops bans; a nil guard is fine either way.
	cfg.MaxConnRate, cfg.MaxClientConns = 0, 0
	cfg.Deny = prefixes(t, "10.0.0.0/8")
	h := mustNew(t, cfg, Options{})
	h.CarryOver(g)
	if len(h.Bans(t0)) != 0 {
		t.Fatal("bans kept without limits")
	}
	var none *Guard
	none.CarryOver(g)
	g.CarryOver(none)
}

// TestConcurrentAdmit hammers a few shards from several goroutines while a
// reload carries the state over; run with -race. Every OK is released, so
// every count must end at zero.
func TestConcurrentAdmit(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.MaxClientConns = 1_000_000, 1_000_000
	old := mustNew(t, cfg, Options{MaxClients: 64, Shards: 4})
	g := mustNew(t, cfg, Options{MaxClients: 64, Shards: 8})
	var cur atomic.Pointer[Guard]
	cur.Store(old)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20_000 {
				a := netip.AddrFrom4([4]byte{10, 0, byte(w), byte(i % 100)})
				gg := cur.Load()
				if gg.Admit(a, t0.Add(time.Duration(i)*time.Microsecond)).OK {
					if i%2 == 0 {
						gg.Release(a)
					} else {
						old.Release(a) // after the reload: forwarded
					}
				}
			}
		})
	}
	time.Sleep(2 * time.Millisecond)
	g.CarryOver(old)
	cur.Store(g)
	wg.Wait()
	for i := range g.shards {
		for k, e := range g.shards[i].m {
			if e.active != 0 {
				t.Errorf("%s: %d open after all releases", k, e.active)
			}
		}
	}
}
