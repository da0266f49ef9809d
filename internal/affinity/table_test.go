package affinity

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func TestMasking(t *testing.T) {
	tests := []struct {
		name     string
		v4, v6   int
		a, b     string
		together bool
	}{
		{"v4 /24 same prefix", 24, 128, "10.1.2.3", "10.1.2.200", true},
		{"v4 /24 other prefix", 24, 128, "10.1.2.3", "10.1.3.3", false},
		{"v4 /32", 32, 128, "10.1.2.3", "10.1.2.4", false},
		{"v4 /0 everyone", 0, 128, "10.1.2.3", "192.0.2.1", true},
		{"v6 /64 same", 32, 64, "2001:db8:1:2::1", "2001:db8:1:2:ffff:1:2:3", true},
		{"v6 /64 other", 32, 64, "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"v6 /128", 32, 128, "2001:db8::1", "2001:db8::2", false},
		{"v6 /127", 32, 127, "2001:db8::2", "2001:db8::3", true},
		{"v6 /48", 32, 48, "2001:db8:1:2::1", "2001:db8:1:ffff::1", true},
		{"v4-mapped is v4", 24, 128, "::ffff:10.1.2.3", "10.1.2.99", true},
		{"v4-mapped ignores v6 mask", 32, 0, "::ffff:10.1.2.3", "10.1.2.4", false},
		{"v4 and v6 never share", 0, 0, "10.0.0.1", "2001:db8::1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTable("t", Options{MaskV4: tc.v4, MaskV6: tc.v6})
			tb.Record(ip(tc.a), "n1", t0)
			node, ok := tb.Lookup(ip(tc.b), t0)
			if ok != tc.together || (ok && node != "n1") {
				t.Fatalf("Lookup(%s) after Record(%s) = %q, %v; want together=%v", tc.b, tc.a, node, ok, tc.together)
			}
		})
	}
	tb := NewTable("t", DefaultOptions())
	if tb.Record(netipZero, "n1", t0); tb.Len() != 0 {
		t.Fatal("invalid address recorded")
	}
}

func TestTTL(t *testing.T) {
	tb := NewTable("t", Options{MaskV4: 32, MaskV6: 128, TTL: time.Hour})
	tb.Record(ip("10.0.0.1"), "n1", t0)
	tb.Record(ip("10.0.0.2"), "n2", t0.Add(30*time.Minute))
	if _, ok := tb.Lookup(ip("10.0.0.1"), t0.Add(time.Hour-time.Second)); !ok {
		t.Fatal("miss one second before the TTL")
	}
	if _, ok := tb.Lookup(ip("10.0.0.1"), t0.Add(time.Hour)); ok {
		t.Fatal("hit at the TTL")
	}
	if n := tb.Expire(t0.Add(time.Hour)); n != 1 || tb.Len() != 1 {
		t.Fatalf("Expire removed %d, %d left; want 1, 1", n, tb.Len())
	}
	// A refresh restarts the TTL.
	tb.Record(ip("10.0.0.2"), "n2", t0.Add(80*time.Minute))
	if _, ok := tb.Lookup(ip("10.0.0.2"), t0.Add(130*time.Minute)); !ok {
		t.Fatal("refreshed record expired")
	}
	s := tb.Stats()
	if s.Hits != 2 || s.Misses != 1 || s.Expirations != 1 || s.Records != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestEvictionLeastRecentlySeen(t *testing.T) {
	tb := NewTable("t", Options{MaskV4: 32, MaskV6: 128, Max: 3})
	for i, c := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		tb.Record(ip(c), "n", t0.Add(time.Duration(i)*time.Second))
	}
	tb.Record(ip("10.0.0.1"), "n", t0.Add(3*time.Second)) // touch: .2 is now the oldest
	tb.Record(ip("10.0.0.4"), "n", t0.Add(4*time.Second))
	for c, want := range map[string]bool{"10.0.0.1": true, "10.0.0.2": false, "10.0.0.3": true, "10.0.0.4": true} {
		if _, ok := tb.Lookup(ip(c), t0.Add(5*time.Second)); ok != want {
			t.Errorf("%s present = %v, want %v", c, ok, want)
		}
	}
	if s := tb.Stats(); s.Evictions != 1 || s.Records != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// TestEvictionAcrossShards checks that eviction is a global LRU, not a
// per-shard one: after 3,000 records into a table of 1,000, exactly the
// 1,000 most recently seen remain.
func TestEvictionAcrossShards(t *testing.T) {
	const max, n = 1000, 3000
	tb := NewTable("t", Options{MaskV4: 32, MaskV6: 128, Max: max})
	addrs := make([]string, n)
	for i := range n {
		addrs[i] = fmt.Sprintf("10.%d.%d.1", i/256, i%256)
		tb.Record(ip(addrs[i]), "n", t0.Add(time.Duration(i)*time.Second))
	}
	if tb.Len() != max {
		t.Fatalf("Len = %d, want %d", tb.Len(), max)
	}
	now := t0.Add(n * time.Second)
	for i, a := range addrs {
		if _, ok := tb.Lookup(ip(a), now); ok != (i >= n-max) {
			t.Fatalf("record %d present = %v", i, ok)
		}
	}
}

func TestRewriteAndTouch(t *testing.T) {
	tb := NewTable("t", DefaultOptions())
	tb.persist = true // observe the queued ops
	c := ip("192.0.2.7")
	tb.Record(c, "n1", t0)
	tb.Record(c, "n1", t0.Add(500*time.Millisecond)) // same second: nothing to write
	if got := len(tb.drain(false, nil)); got != 1 {
		t.Fatalf("%d changes after insert + same-second touch, want 1", got)
	}
	tb.Record(c, "n1", t0.Add(500*time.Millisecond))
	if got := len(tb.drain(false, nil)); got != 0 {
		t.Fatalf("%d changes after a no-op touch, want 0", got)
	}
	tb.Record(c, "n2", t0.Add(time.Second)) // the client moved to a stand-in
	cs := tb.drain(false, nil)
	if len(cs) != 1 || cs[0].node != "n2" || cs[0].seen != t0.Unix()+1 {
		t.Fatalf("changes %+v", cs)
	}
	if node, _ := tb.Lookup(c, t0.Add(time.Second)); node != "n2" {
		t.Fatalf("after rewrite: %q", node)
	}
	if _, ok := tb.Get(ip("192.0.2.99")); ok {
		t.Fatal("Get of an unknown client")
	}
	e, ok := tb.Get(ip("::ffff:192.0.2.7"))
	if !ok || e.Prefix.String() != "192.0.2.7/32" || e.Node != "n2" || !e.LastSeen.Equal(t0.Add(time.Second)) {
		t.Fatalf("Get = %+v, %v", e, ok)
	}
	if !tb.Forget(c) || tb.Forget(c) || tb.Len() != 0 {
		t.Fatal("Forget")
	}
	cs = tb.drain(false, nil)
	if len(cs) != 1 || !cs[0].del || !cs[0].fgt {
		t.Fatalf("changes after Forget %+v", cs)
	}
}

// TestGroupViews: an FTP control cluster and a data cluster share a table;
// the data cluster lacks node "ctl-only".
func TestGroupViews(t *testing.T) {
	tb := NewTable("ftp", Options{MaskV4: 24, MaskV6: 64})
	control := tb.View(func(n string) bool { return n == "ftp1" || n == "ftp2" || n == "ctl-only" })
	data := tb.View(func(n string) bool { return n == "ftp1" || n == "ftp2" })

	control.Record(ip("198.51.100.10"), "ftp2", t0)
	if node, ok := data.Lookup(ip("198.51.100.10"), t0); !ok || node != "ftp2" {
		t.Fatalf("data view: %q, %v; want the control connection's ftp2", node, ok)
	}
	control.Record(ip("203.0.113.5"), "ctl-only", t0)
	if _, ok := data.Lookup(ip("203.0.113.5"), t0); ok {
		t.Fatal("data view sees a node it does not have")
	}
	data.Record(ip("203.0.113.5"), "ftp1", t0.Add(time.Second)) // must not overwrite
	if node, _ := control.Lookup(ip("203.0.113.5"), t0); node != "ctl-only" {
		t.Fatalf("data view overwrote the record: %q", node)
	}
	later := t0.Add(DefaultTTL) // expired: now the data view may take the client
	data.Record(ip("203.0.113.5"), "ftp1", later)
	if node, _ := control.Lookup(ip("203.0.113.5"), later); node != "ftp1" {
		t.Fatalf("an expired record was protected: %q", node)
	}
	data.Record(ip("198.51.100.10"), "ftp1", t0.Add(time.Second)) // its own node: rewrite
	if node, _ := control.Lookup(ip("198.51.100.10"), t0); node != "ftp1" {
		t.Fatalf("rewrite through data view lost: %q", node)
	}
}

func TestGroupOptions(t *testing.T) {
	a := DefaultOptions()
	if o, err := GroupOptions("g", a, a); err != nil || o != a {
		t.Fatalf("equal: %v %v", o, err)
	}
	b := a
	b.MaskV4 = 24
	_, err := GroupOptions("g", a, b)
	if err == nil || !strings.Contains(err.Error(), `affinity group "g": clusters disagree on affinity_mask_v4 (32 and 24)`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := GroupOptions("g", Options{MaskV4: 33}); err == nil {
		t.Fatal("mask 33 accepted")
	}
}

func TestSetOptionsRekeys(t *testing.T) {
	tb := NewTable("t", DefaultOptions())
	tb.Record(ip("10.0.0.1"), "n1", t0)
	tb.Record(ip("10.0.0.2"), "n2", t0.Add(time.Second))
	tb.Record(ip("10.0.1.1"), "n3", t0)
	o := DefaultOptions()
	o.MaskV4 = 24
	if err := tb.SetOptions(o); err != nil {
		t.Fatal(err)
	}
	if node, ok := tb.Lookup(ip("10.0.0.77"), t0); !ok || node != "n2" || tb.Len() != 2 {
		t.Fatalf("%q %v len %d; want the most recently seen n2 and 2 records", node, ok, tb.Len())
	}
	o.Max = 1
	if tb.SetOptions(o); tb.Len() != 1 {
		t.Fatalf("Max not applied: %d", tb.Len())
	}
}

func TestNoAllocations(t *testing.T) {
	tb := NewTable("t", DefaultOptions())
	c := ip("10.9.8.7")
	tb.Record(c, "n1", t0)
	if n := testing.AllocsPerRun(100, func() { tb.Lookup(c, t0) }); n != 0 {
		t.Errorf("Lookup hit allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { tb.Lookup(ip("10.9.8.6"), t0) }); n != 0 {
		t.Errorf("Lookup miss allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { tb.Record(c, "n1", t0) }); n != 0 {
		t.Errorf("same-second Record allocates %v", n)
	}
}

// TestConcurrent exercises every writer against readers under -race and
// checks the bookkeeping afterwards.
func TestConcurrent(t *testing.T) {
	tb := NewTable("t", Options{MaskV4: 32, MaskV6: 128, Max: 500, TTL: time.Minute})
	tb.persist = true
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 5000 {
				c := ip(fmt.Sprintf("10.0.%d.%d", r.IntN(4), r.IntN(256)))
				now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
				switch r.IntN(10) {
				case 0:
					tb.Forget(c)
				case 1:
					tb.Expire(now)
				case 2, 3, 4:
					tb.Record(c, fmt.Sprint("n", r.IntN(3)), now)
				default:
					tb.Lookup(c, now)
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			tb.drain(true, nil)
		}
	})
	wg.Wait()
	total, inTree := 0, 0
	for i := range tb.shards {
		total += len(tb.shards[i].m)
		inTree += tb.shards[i].lru.Len()
		for k, e := range tb.shards[i].m {
			if e.k != k || !e.lru.Linked() || e.lru.Value != e {
				t.Fatalf("entry %+v filed under %v", *e, k)
			}
		}
	}
	if total != tb.Len() || inTree != total || total > 500 {
		t.Fatalf("maps %d, trees %d, Len %d", total, inTree, tb.Len())
	}
}
