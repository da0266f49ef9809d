package guard

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

// t0 is a fixed instant on a slot boundary; tests drive time from it.
var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func listener() *config.Listener {
	return &config.Listener{Name: "web", ClientMaskV4: 32, ClientMaskV6: 64, BanTime: 10 * time.Minute}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func mustNew(t testing.TB, cfg *config.Listener, o Options) *Guard {
	t.Helper()
	g, err := NewWith(cfg, nil, o)
	if err != nil || g == nil {
		t.Fatalf("NewWith = %v, %v", g, err)
	}
	return g
}

// admitN admits n connections from a spread evenly over span starting at
// from, releasing each at once, and returns the verdicts.
func admitN(g *Guard, a netip.Addr, n int, from time.Time, span time.Duration) []Verdict {
	out := make([]Verdict, n)
	for i := range n {
		at := from
		if n > 1 {
			at = from.Add(span * time.Duration(i) / time.Duration(n-1))
		}
		out[i] = g.Admit(a, at)
		if out[i].OK {
			g.Release(a)
		}
	}
	return out
}

func TestRateBan(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate = 5
	var logs bytes.Buffer
	g, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c := ip("192.0.2.1")
	// Exactly max_conn_rate within 900 ms: all pass.
	for i, v := range admitN(g, c, 5, t0, ms(899)) {
		if !v.OK {
			t.Fatalf("connection %d refused: %v", i, v.Reason)
		}
	}
	// One more inside the same second: refused for rate, and banned.
	if v := g.Admit(c, t0.Add(ms(950))); v.OK || v.Reason != ReasonRate {
		t.Fatalf("6th connection: %+v, want rate refusal", v)
	}
	for _, at := range []time.Duration{ms(951), 5 * time.Second, 10*time.Minute + ms(949)} {
		if v := g.Admit(c, t0.Add(at)); v.Reason != ReasonBan {
			t.Fatalf("at +%v: %+v, want ban", at, v)
		}
	}
	bans := g.Bans(t0.Add(time.Minute))
	if len(bans) != 1 || bans[0].Client != netip.MustParsePrefix("192.0.2.1/32") ||
		!bans[0].Until.Equal(t0.Add(10*time.Minute+ms(950))) || bans[0].Reason != ReasonRate {
		t.Fatalf("Bans = %+v", bans)
	}
	// Other clients are unaffected.
	if v := g.Admit(ip("192.0.2.2"), t0.Add(ms(960))); !v.OK {
		t.Fatalf("other client: %+v", v)
	}
	g.Release(ip("192.0.2.2"))
	// The ban expires after ban_time, with a fresh window.
	end := t0.Add(10*time.Minute + ms(950))
	if len(g.Bans(end)) != 0 {
		t.Fatal("ban still listed at its end")
	}
	for i, v := range admitN(g, c, 5, end, ms(10)) {
		if !v.OK {
			t.Fatalf("after ban, connection %d refused: %v", i, v.Reason)
		}
	}
	cnt := g.Counters()
	if cnt.Rate != 1 || cnt.Ban != 3 || cnt.Deny != 0 || cnt.Concurrency != 0 || cnt.Tracked != 2 {
		t.Fatalf("Counters = %+v", cnt)
	}
	if n := strings.Count(logs.String(), "client banned"); n != 1 {
		t.Fatalf("ban logged %d times:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "client=192.0.2.1/32") {
		t.Fatalf("log lacks client: %s", logs.String())
	}
}

func TestRateWindowSlides(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate = 3
	g := mustNew(t, cfg, Options{})
	c := ip("192.0.2.1")
	// 3 per second, evenly, for 10 s: never banned (each 1 s window sees 3).
	for i := range 30 {
		if v := g.Admit(c, t0.Add(ms(i*334))); !v.OK {
			t.Fatalf("steady connection %d at %v refused: %v", i, ms(i*334), v.Reason)
		}
		g.Release(c)
	}
	// Bursts of 3 at +20.0 s and +21.0 s are two windows: fine. A 4th at
	// +21.05 s is within 900 ms of three others: banned.
	h := ip("192.0.2.9")
	admitN(g, h, 3, t0.Add(20*time.Second), 0)
	if vs := admitN(g, h, 3, t0.Add(21*time.Second), 0); !vs[2].OK {
		t.Fatalf("second burst refused: %+v", vs)
	}
	if v := g.Admit(h, t0.Add(21*time.Second+ms(50))); v.Reason != ReasonRate {
		t.Fatalf("4th within the window: %+v", v)
	}
}

func TestRateWithoutBanTime(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.BanTime = 2, 0
	g := mustNew(t, cfg, Options{})
	c := ip("192.0.2.1")
	vs := admitN(g, c, 4, t0, ms(300))
	if !vs[0].OK || !vs[1].OK || vs[2].Reason != ReasonRate || vs[3].Reason != ReasonRate {
		t.Fatalf("verdicts %+v", vs)
	}
	if v := g.Admit(c, t0.Add(ms(1000))); !v.OK {
		t.Fatalf("next window refused: %+v", v)
	}
	if len(g.Bans(t0)) != 0 {
		t.Fatal("ban_time 0 banned")
	}
}

func TestLift(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.ClientMaskV4 = 1, 24
	g := mustNew(t, cfg, Options{})
	now := time.Now()
	admitN(g, ip("203.0.113.5"), 2, now, 0)
	if v := g.Admit(ip("203.0.113.77"), now); v.Reason != ReasonBan {
		t.Fatalf("same /24 not banned: %+v", v)
	}
	if g.Lift(ip("198.51.100.1")) {
		t.Fatal("Lift of an unbanned client reported true")
	}
	if !g.Lift(ip("::ffff:203.0.113.200")) {
		t.Fatal("Lift by another address of the /24 failed")
	}
	if g.Lift(ip("203.0.113.5")) {
		t.Fatal("second Lift reported true")
	}
	if v := g.Admit(ip("203.0.113.5"), now.Add(ms(100))); !v.OK {
		t.Fatalf("after Lift: %+v", v)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	cfg := listener()
	cfg.MaxClientConns = 2
	g := mustNew(t, cfg, Options{})
	c := ip("2001:db8:1:2::1")
	for i := range 2 {
		if v := g.Admit(c, t0); !v.OK {
			t.Fatalf("connection %d refused", i)
		}
	}
	// Same /64, another address: the third connection of that client.
	if v := g.Admit(ip("2001:db8:1:2:ffff::9"), t0); v.Reason != ReasonConcurrency {
		t.Fatalf("3rd: %+v, want concurrency", v)
	}
	if v := g.Admit(ip("2001:db8:1:3::1"), t0); !v.OK {
		t.Fatalf("another /64 refused: %+v", v)
	}
	g.Release(c)
	if v := g.Admit(c, t0.Add(time.Second)); !v.OK {
		t.Fatalf("after Release: %+v", v)
	}
	if len(g.Bans(t0)) != 0 {
		t.Fatal("concurrency refusal banned")
	}
	for range 5 {
		g.Release(c) // extra releases stop at zero
	}
	for i := range 2 {
		if v := g.Admit(c, t0.Add(2*time.Second)); !v.OK {
			t.Fatalf("after over-release, connection %d refused", i)
		}
	}
	if v := g.Admit(c, t0.Add(2*time.Second)); v.Reason != ReasonConcurrency {
		t.Fatalf("count went wrong after over-release: %+v", v)
	}
	if c := g.Counters(); c.Concurrency != 2 || c.Rate != 0 {
		t.Fatalf("Counters = %+v", c)
	}
}

func TestMasksGroupClients(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.ClientMaskV4 = 3, 24 // v6 default /64
	g := mustNew(t, cfg, Options{})
	v4 := []string{"198.51.100.1", "198.51.100.2", "::ffff:198.51.100.3", "198.51.100.254"}
	v6 := []string{"2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:8000::3", "2001:db8:0:1:ffff::4"}
	for _, set := range [][]string{v4, v6} {
		for i, s := range set {
			v := g.Admit(ip(s), t0.Add(ms(i)))
			if want := i < 3; v.OK != want {
				t.Fatalf("%s: %+v, want OK=%v", s, v, want)
			}
		}
	}
	// Neighbouring networks are other clients.
	for _, s := range []string{"198.51.101.1", "2001:db8:0:2::1"} {
		if v := g.Admit(ip(s), t0); !v.OK {
			t.Fatalf("%s refused: %+v", s, v)
		}
	}
	want := []string{"198.51.100.0/24", "2001:db8:0:1::/64"}
	bans := g.Bans(t0)
	if len(bans) != 2 || bans[0].Client.String() != want[0] || bans[1].Client.String() != want[1] {
		t.Fatalf("Bans = %+v, want %v", bans, want)
	}
}

func TestBoundedMemory(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate = 10
	const bound = 10_000
	g := mustNew(t, cfg, Options{MaxClients: bound})
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if v := g.Admit(a, t0.Add(time.Duration(i)*time.Microsecond)); !v.OK {
			t.Fatalf("client %d refused: %+v", i, v)
		}
		g.Release(a)
		if i%50_000 == 0 {
			if c := g.Counters(); c.Tracked > bound {
				t.Fatalf("after %d clients: %d tracked > %d", i, c.Tracked, bound)
			}
		}
	}
	c := g.Counters()
	if c.Tracked > bound || c.Tracked < bound-len(g.shards) || c.Evicted != uint64(n-c.Tracked) {
		t.Fatalf("Counters = %+v, bound %d", c, bound)
	}
}

func TestEvictsLeastRecentlySeen(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.MaxClientConns = 1, 10
	g := mustNew(t, cfg, Options{MaxClients: 3, Shards: 1})
	a, b, c, d, e := ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.5")
	// a is banned, b holds a connection, c is idle; then a is seen again.
	admitN(g, a, 2, t0, 0)
	g.Admit(b, t0.Add(ms(1)))
	admitN(g, c, 1, t0.Add(ms(2)), 0)
	g.Admit(a, t0.Add(ms(3))) // refused (ban), but seen
	// d evicts c, the least recently seen idle client, not b (open
	// connection) and not a (seen later).
	admitN(g, d, 1, t0.Add(ms(4)), 0)
	if got := tracked(g); got != "10.0.0.1 10.0.0.2 10.0.0.4" {
		t.Fatalf("tracked %q", got)
	}
	if v := g.Admit(a, t0.Add(ms(5))); v.Reason != ReasonBan {
		t.Fatalf("a lost its ban: %+v", v)
	}
	// e evicts d (a was seen at +5 ms).
	admitN(g, e, 1, t0.Add(ms(6)), 0)
	if got := tracked(g); got != "10.0.0.1 10.0.0.2 10.0.0.5" {
		t.Fatalf("tracked %q", got)
	}
	// Every client holds a connection: the shard grows past its share
	// rather than lose a count.
	g.Admit(a, t0.Add(time.Hour))
	g.Admit(e, t0.Add(time.Hour))
	g.Admit(d, t0.Add(time.Hour))
	if got := tracked(g); got != "10.0.0.1 10.0.0.2 10.0.0.4 10.0.0.5" {
		t.Fatalf("tracked %q", got)
	}
	g.Release(b) // b's count is exact: it was never evicted
	if e := g.shards[0].m[b]; e == nil || e.active != 0 || !e.lru.Linked() {
		t.Fatalf("b after Release: %+v", e)
	}
	// Once they are idle again, the next new client shrinks the shard back
	// to its share, oldest first (b, then a: released before d and e).
	g.Release(a)
	g.Release(d)
	g.Release(e)
	admitN(g, ip("10.0.0.6"), 1, t0.Add(time.Hour+ms(1)), 0)
	if got := tracked(g); got != "10.0.0.4 10.0.0.5 10.0.0.6" {
		t.Fatalf("tracked %q", got)
	}
}

func tracked(g *Guard) string {
	var out []netip.Addr
	for i := range g.shards {
		for k := range g.shards[i].m {
			out = append(out, k)
		}
	}
	var sb strings.Builder
	for i, a := range sortAddrs(out) {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(a.String())
	}
	return sb.String()
}

func sortAddrs(as []netip.Addr) []netip.Addr {
	for i := 1; i < len(as); i++ {
		for j := i; j > 0 && as[j].Less(as[j-1]); j-- {
			as[j], as[j-1] = as[j-1], as[j]
		}
	}
	return as
}

func TestAdmitKnownClientAllocatesNothing(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.MaxClientConns = 1_000_000, 10
	cfg.Deny = prefixes(t, "10.0.0.0/8")
	g := mustNew(t, cfg, Options{})
	c := ip("192.0.2.1")
	now := t0
	g.Admit(c, now)
	g.Release(c)
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		if !g.Admit(c, now).OK {
			t.Fatal("refused")
		}
		g.Release(c)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Admit+Release", allocs)
	}
}
