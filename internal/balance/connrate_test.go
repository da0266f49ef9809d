package balance

import (
	"math"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

func TestConnRateSharesByWeight(t *testing.T) {
	now := instant(0)
	c := newCluster(3, 1, 1)
	pol := mustNew(t, "conn-rate", c.params(&now))
	// Every pick is counted at once: 500 picks at one instant end exactly
	// proportional to the weights.
	got := count(pol, c.cands, 500)
	within(t, "500 picks at one instant", got, []int{3, 1, 1}, 0)
}

func TestConnRateBurst(t *testing.T) {
	// 1,000 picks from 1,000 goroutines released together, at one instant:
	// the count at pick time spreads them 600:200:200. Tolerance ±20 (2% of
	// the burst) per node: two goroutines may read the same rates before
	// either counts (CAS on different nodes), which can only move a pick
	// by one weight step.
	now := instant(0)
	c := newCluster(3, 1, 1)
	pol := mustNew(t, "conn-rate", c.params(&now))
	got := burst(pol, c.cands, 1000)
	within(t, "burst of 1,000", got, []int{3, 1, 1}, 20)
}

func TestConnRateSteersAwayFromBusyNode(t *testing.T) {
	now := instant(10 * time.Second)
	c := newCluster(1, 1, 1)
	// a took 100 connections a second ago (rate ≈ 9/s); b and c none.
	s := stats.NewScale(0, instant(9*time.Second))
	c.nodes[0].ConnRate.AddScaled(&s, 100)
	pol := mustNew(t, "conn-rate", c.params(&now))
	got := count(pol, c.cands, 100)
	if got[0] != 0 || got[1] != 50 || got[2] != 50 {
		t.Errorf("counts %v, want a untouched and b, c 50 each", got)
	}
	// Much later, a's old burst has decayed below the others' picks.
	now = instant(10*time.Second + time.Minute)
	if got := count(pol, c.cands, 3); got[0] == 0 {
		t.Errorf("after a minute: counts %v, want a picked again", got)
	}
}

func TestConnRateDecay(t *testing.T) {
	now := instant(0)
	c := newCluster(1)
	p := c.params(&now)
	p.RateWindow = 2 * time.Second
	c.nodes[0].SetRateWindow(2 * time.Second)
	pol := mustNew(t, "conn-rate", p)
	count(pol, c.cands, 10) // 10 picks at once: 10 / 2 s = 5/s
	read := func(d time.Duration) float64 {
		s := stats.NewScale(2*time.Second, instant(d))
		return s.Value(c.nodes[0].ConnRate.Scaled(&s))
	}
	ln2 := math.Ln2
	half := time.Duration(float64(2*time.Second) * ln2)
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{{0, 5}, {half, 2.5}, {2 * half, 1.25}, {2 * time.Second, 5 / math.E}} {
		if got := read(tc.at); math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("rate at %v = %v, want %v", tc.at, got, tc.want)
		}
	}
}

func TestConnRateWindowMismatch(t *testing.T) {
	// Nodes whose window was never set to the cluster's (here the default
	// 10 s against the policy's 3 s) are read through the slow path, an exp
	// per node: same answers.
	now := instant(0)
	c := newCluster(3, 1, 1)
	p := c.params(&now)
	p.RateWindow = 3 * time.Second
	pol := mustNew(t, "conn-rate", p)
	within(t, "windows differ", count(pol, c.cands, 500), []int{3, 1, 1}, 0)
	if w := c.nodes[0].ConnRate.Window(); w != 10*time.Second {
		t.Errorf("node window %v: the policy must not change it", w)
	}
}

func TestLowestRateTiesRotate(t *testing.T) {
	c := newCluster(2, 1, 2)
	s := stats.NewScale(0, instant(0))
	// All rates 0: the scan's first candidate wins, so the winner follows
	// the start offset.
	for start, want := range []int{0, 1, 2} {
		if got := lowestRate(c.cands, start, &s, connRates); got != want {
			t.Errorf("start %d: picked %d, want %d", start, got, want)
		}
	}
	// a and c tie at 1 per weight, b is higher: the tie rotates between a
	// and c only.
	c.nodes[0].ConnRate.AddScaled(&s, 2)
	c.nodes[1].ConnRate.AddScaled(&s, 2)
	c.nodes[2].ConnRate.AddScaled(&s, 2)
	for start, want := range []int{0, 2, 2} {
		if got := lowestRate(c.cands, start, &s, connRates); got != want {
			t.Errorf("start %d with a, c tied: picked %d, want %d", start, got, want)
		}
	}
}
