package balance

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

// holdPicks picks n times and holds every chosen connection open (Active+1),
// as the proxy does; it returns the counts.
func holdPicks(pol Policy, c *cluster, n int) []int {
	got := make([]int, len(c.cands))
	for range n {
		i := pol.Pick(netip.Addr{}, c.cands)
		c.cands[i].Stats.Active.Add(1)
		got[i]++
	}
	return got
}

func TestMinLoadHeldConnections(t *testing.T) {
	// 50 held connections over weights 3:1:1 end exactly 30:10:10, with the
	// default rating (integer fast path) and with an equivalent expression
	// that runs through expr and the cache.
	for _, rating := range []string{"", DefaultLoadRating, "(1 + active) / weight"} {
		c := newCluster(3, 1, 1)
		p := c.params(nil)
		p.LoadRating = rating
		pol := mustNew(t, "min-load", p)
		if got := holdPicks(pol, c, 50); got[0] != 30 || got[1] != 10 || got[2] != 10 {
			t.Errorf("rating %q: counts %v, want [30 10 10]", rating, got)
		}
	}
}

func TestMinLoadTiesRotate(t *testing.T) {
	for _, rating := range []string{DefaultLoadRating, "active / weight"} {
		c := newCluster(1, 1, 1)
		p := c.params(nil)
		p.LoadRating = rating
		pol := mustNew(t, "min-load", p)
		// Nothing changes between picks: every pick is a three-way tie.
		if got := count(pol, c.cands, 9); got[0] != 3 || got[1] != 3 || got[2] != 3 {
			t.Errorf("rating %q: counts %v, want [3 3 3]", rating, got)
		}
	}
}

func TestMinLoadCustomRating(t *testing.T) {
	c := newCluster(1, 1, 1)
	c.nodes[0].Active.Store(0)
	c.nodes[1].Active.Store(5)
	c.nodes[2].Active.Store(9)
	c.nodes[0].ConnectMS.Observe(80 * time.Millisecond)
	c.nodes[1].ConnectMS.Observe(2 * time.Millisecond)
	c.nodes[2].ConnectMS.Observe(10 * time.Millisecond)
	for _, tc := range []struct {
		rating string
		want   int
	}{
		{DefaultLoadRating, 0},               // fewest connections
		{"connect_ms", 1},                    // fastest connect
		{"active * connect_ms", 0},           // 0, 10, 90
		{"active + connect_ms / 10", 1},      // 8, 5.2, 10
		{"-active", 2},                       // most connections (a test of the order, not advice)
		{"max(active, 6) + connect_ms", 1},   // 86, 8, 19
		{"active % (weight - 1)", 0},         // every node errors (modulo 0): +Inf ties, first in scan
		{"failures * 100 + active", 0},       // no failures yet
		{"total == 0 ? active : -active", 0}, // no connections yet
		{"weight > 1 ? active : 100 - active", 2},
	} {
		p := c.params(nil)
		p.LoadRating = tc.rating
		pol := mustNew(t, "min-load", p).(*minLoad)
		pol.rot.n.Store(2) // next scan starts at 0: ties go to a
		if got := pol.Pick(netip.Addr{}, c.cands); got != tc.want {
			t.Errorf("rating %q: picked %s, want %s", tc.rating, c.cands[got].Name, c.cands[tc.want].Name)
		}
	}
	// A failing node drops out of a rating that counts failures.
	c.nodes[0].Failures.Add(1)
	p := c.params(nil)
	p.LoadRating = "failures * 100 + active"
	if got := mustNew(t, "min-load", p).Pick(netip.Addr{}, c.cands); got != 1 {
		t.Errorf("after a's failure: picked %s, want b", c.cands[got].Name)
	}
}

func TestMinLoadCacheFollowsInputs(t *testing.T) {
	c := newCluster(1, 1)
	p := c.params(nil)
	p.LoadRating = "active + connect_ms"
	pol := mustNew(t, "min-load", p)
	c.nodes[0].Active.Store(3)
	if got := pol.Pick(netip.Addr{}, c.cands); got != 1 {
		t.Fatalf("picked %d, want b", got)
	}
	c.nodes[1].Active.Store(4) // b's cached rating must not survive this
	if got := pol.Pick(netip.Addr{}, c.cands); got != 0 {
		t.Fatalf("after b's active changed: picked %d, want a", got)
	}
	c.nodes[0].ConnectMS.Observe(50 * time.Millisecond) // a: 3 + 50
	if got := pol.Pick(netip.Addr{}, c.cands); got != 1 {
		t.Fatalf("after a's connect time changed: picked %d, want b", got)
	}
	// A weight change (a stand-in summing slots) re-rates too.
	heavy := []Candidate{c.cands[0], {ID: 1, Name: "b", Weight: 1, Stats: c.nodes[1]}}
	p.LoadRating = "(active + connect_ms) / weight"
	pol = mustNew(t, "min-load", p)
	pol.Pick(netip.Addr{}, heavy)
	heavy[0].Weight = 100 // 53/100 < 4
	if got := pol.Pick(netip.Addr{}, heavy); got != 0 {
		t.Fatalf("after a's weight rose: picked %d, want a", got)
	}
}

func TestMinLoadRates(t *testing.T) {
	// A rating that reads conn_rate counts each pick in it at once, so it
	// spreads picks at one instant by weight, as conn-rate does.
	now := instant(0)
	c := newCluster(3, 1, 1)
	p := c.params(&now)
	p.LoadRating = "conn_rate / weight"
	pol := mustNew(t, "min-load", p)
	within(t, "conn_rate / weight", count(pol, c.cands, 500), []int{3, 1, 1}, 1)

	// traffic_rate: the node relaying more bytes rates higher; the rating
	// follows the decay of that traffic with time.
	now = instant(0)
	c = newCluster(1, 1)
	s := stats.NewScale(0, now)
	c.nodes[0].TrafficRate.AddScaled(&s, 1_000_000) // 100 kB/s at t
	c.nodes[1].TrafficRate.AddScaled(&s, 10_000)
	c.nodes[1].Active.Store(10)
	p = c.params(&now)
	p.LoadRating = "traffic_rate / 1000 + active"
	pol = mustNew(t, "min-load", p)
	if got := pol.Pick(netip.Addr{}, c.cands); got != 1 { // 100 against 11
		t.Errorf("heavy traffic on a: picked %d, want b", got)
	}
	now = instant(30 * time.Second) // a: 100·e^-3 ≈ 5 against b: 10.05
	if got := pol.Pick(netip.Addr{}, c.cands); got != 0 {
		t.Errorf("30 s later: picked %d, want a", got)
	}
}

func TestCompileLoadRatingErrors(t *testing.T) {
	for _, tc := range []struct {
		src          string
		line, column int
		msg          string
	}{
		{"(active + ", 1, 10, "unexpected token EOF"},
		{"active + foo", 1, 10, "unknown name foo"},
		{"active +\n  weight *", 2, 10, "unexpected token EOF"},
		{"active > 1", 0, 0, "expected float64, but got bool"},
		{`"text"`, 0, 0, "expected float64"},
	} {
		_, err := CompileLoadRating(tc.src)
		var re *RatingError
		if !errors.As(err, &re) {
			t.Errorf("%q: error %v, want a *RatingError", tc.src, err)
			continue
		}
		if re.Line != tc.line || re.Column != tc.column || !strings.Contains(re.Msg, tc.msg) {
			t.Errorf("%q: line %d column %d msg %q; want %d, %d, %q", tc.src, re.Line, re.Column, re.Msg, tc.line, tc.column, tc.msg)
		}
		if !strings.Contains(err.Error(), "load_rating") {
			t.Errorf("%q: message %q does not name load_rating", tc.src, err)
		}
	}
	if _, err := New("min-load", Params{Nodes: 1, LoadRating: "(active"}); err == nil {
		t.Error("New accepted a bad load_rating")
	}
	want := `load_rating "(active + ": line 1, column 10: unexpected token EOF`
	if _, err := CompileLoadRating("(active + "); err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestCompileLoadRatingDefault(t *testing.T) {
	for src, isDefault := range map[string]bool{
		"": true, "  ": true, DefaultLoadRating: true, "(active+1)/weight": true,
		" ( active + 1 ) / weight ": true, "(1 + active) / weight": false, "active / weight": false,
	} {
		l, err := CompileLoadRating(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if l.isDefault != isDefault {
			t.Errorf("%q: isDefault %v", src, l.isDefault)
		}
	}
	l, _ := CompileLoadRating("connect_ms + failures")
	if l.reads != readsConnectMS|readsFailures {
		t.Errorf("reads %b, want connect_ms and failures", l.reads)
	}
	if l.String() != "connect_ms + failures" {
		t.Errorf("String() = %q", l.String())
	}
}

func TestMinLoadAllocs(t *testing.T) {
	c := newCluster(3, 1, 1)
	pol := mustNew(t, "min-load", c.params(nil))
	if a := testing.AllocsPerRun(1000, func() { pol.Pick(netip.Addr{}, c.cands) }); a != 0 {
		t.Errorf("default rating: %v allocs per pick", a)
	}
	p := c.params(nil)
	p.LoadRating = "active / weight + connect_ms"
	pol = mustNew(t, "min-load", p)
	if a := testing.AllocsPerRun(1000, func() { pol.Pick(netip.Addr{}, c.cands) }); a != 0 {
		t.Errorf("cached custom rating: %v allocs per pick", a)
	}
}
