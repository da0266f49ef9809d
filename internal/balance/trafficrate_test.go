package balance

import (
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

// history gives a node a past: conns connections of perConn bytes each.
func history(n *stats.Node, conns, perConn uint64) {
	n.Total.Add(conns)
	n.BytesIn.Add(conns * perConn / 4)
	n.BytesOut.Add(conns * perConn * 3 / 4)
}

func TestTrafficRateSteersAwayFromHeavyNode(t *testing.T) {
	now := instant(time.Minute)
	c := newCluster(1, 1, 1)
	for _, n := range c.nodes {
		history(n, 100, 10_000)
	}
	// a is relaying 1 MB/s; b and c are idle.
	s := stats.NewScale(0, instant(time.Minute-time.Second))
	c.nodes[0].TrafficRate.AddScaled(&s, 10_000_000)
	pol := mustNew(t, "traffic-rate", c.params(&now))
	got := count(pol, c.cands, 100)
	if got[0] != 0 || got[1] != 50 || got[2] != 50 {
		t.Errorf("counts %v, want a untouched and b, c 50 each", got)
	}
	// Each pick added 10,000 B to its node: b and c now carry 500 kB each,
	// 50 kB/s over the 10 s window.
	at := stats.NewScale(0, now)
	if v := at.Value(c.nodes[1].TrafficRate.Scaled(&at)); v < 49_999 || v > 50_001 {
		t.Errorf("b's estimate %v B/s, want 50,000", v)
	}
}

func TestTrafficRateBurst(t *testing.T) {
	// As conn-rate: 1,000 concurrent picks at one instant over weights
	// 3:1:1, each adding its node's 10 kB mean at once; ±20 per node.
	now := instant(0)
	c := newCluster(3, 1, 1)
	for _, n := range c.nodes {
		history(n, 10, 10_000)
	}
	pol := mustNew(t, "traffic-rate", c.params(&now))
	within(t, "burst of 1,000", burst(pol, c.cands, 1000), []int{3, 1, 1}, 20)
}

func TestTrafficRateByteShares(t *testing.T) {
	// Nodes with different bytes per connection: a's connections carry 4×
	// b's. Under the same weight, a gets a quarter of b's connections, so
	// bytes per second stay level.
	now := instant(0)
	c := newCluster(1, 1)
	history(c.nodes[0], 10, 40_000)
	history(c.nodes[1], 10, 10_000)
	pol := mustNew(t, "traffic-rate", c.params(&now))
	within(t, "connections", count(pol, c.cands, 500), []int{1, 4}, 1)
}

func TestTrafficRateColdNodes(t *testing.T) {
	now := instant(0)
	// No history anywhere: 1-byte estimates spread a cold burst by weight.
	cold := newCluster(3, 1, 1)
	pol := mustNew(t, "traffic-rate", cold.params(&now))
	within(t, "cold cluster", count(pol, cold.cands, 500), []int{3, 1, 1}, 1)

	// A new node in a warm cluster borrows the others' mean (20 kB), so it
	// takes its share of a burst instead of all of it.
	warm := newCluster(1, 1, 1)
	history(warm.nodes[0], 10, 20_000)
	history(warm.nodes[1], 10, 20_000)
	pol = mustNew(t, "traffic-rate", warm.params(&now))
	within(t, "new node in a warm cluster", count(pol, warm.cands, 300), []int{1, 1, 1}, 1)
}
