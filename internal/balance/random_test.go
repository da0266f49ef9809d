package balance

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestRandomSharesSeeded(t *testing.T) {
	// 100,000 picks from a fixed seed: every share within 2% (relative) of
	// its weight's share. Deterministic: the seed fixes the draws.
	for _, weights := range [][]int{{5, 1, 1}, {3, 1, 1}, {1, 2, 3, 4}} {
		c := newCluster(weights...)
		pol := &random{src: rand.New(rand.NewPCG(7, 11))}
		got := count(pol, c.cands, 100_000)
		total := 0
		for _, w := range weights {
			total += w
		}
		for i, w := range weights {
			want := 100_000 * float64(w) / float64(total)
			if d := float64(got[i]) - want; d > 0.02*want || d < -0.02*want {
				t.Errorf("weights %v: counts %v: node %d off its share %.0f by more than 2%%", weights, got, i, want)
			}
		}
	}
}

func TestRandomSharesRuntimeSource(t *testing.T) {
	// The runtime source cannot be seeded: the tolerance is 6 standard
	// deviations of the binomial count (for a share p of n picks,
	// sqrt(n·p·(1−p)); 6 sd fail once in 10^9 runs).
	c := newCluster(5, 1, 1)
	pol := mustNew(t, "random", c.params(nil))
	got := count(pol, c.cands, 100_000)
	within(t, "runtime source", got, []int{5, 1, 1}, 6*143) // sd ≤ 143 for p = 5/7
}

func TestRandomEdges(t *testing.T) {
	c := newCluster(3)
	pol := mustNew(t, "random", c.params(nil))
	if i := pol.Pick(netip.Addr{}, c.cands); i != 0 {
		t.Errorf("one candidate: picked %d", i)
	}
	// Weights <= 0 are outside the contract; they are still handled: such
	// a candidate is never chosen while another can be.
	z := newCluster(0, 2, -1)
	got := count(&random{src: rand.New(rand.NewPCG(1, 1))}, z.cands, 1000)
	if got[0] != 0 || got[2] != 0 || got[1] != 1000 {
		t.Errorf("weights 0, 2, -1: counts %v", got)
	}
	all := newCluster(0, 0)
	if got := count(&random{src: rand.New(rand.NewPCG(1, 1))}, all.cands, 1000); got[0] == 0 || got[1] == 0 {
		t.Errorf("all weights 0: counts %v, want both picked", got)
	}
}
