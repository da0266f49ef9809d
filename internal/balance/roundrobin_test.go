package balance

import (
	"net/netip"
	"sync"
	"testing"
)

func TestRoundRobinSmooth(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		want    string
	}{
		{[]int{5, 1, 1}, "aabacaa" + "aabacaa" + "aabacaa"},
		{[]int{1, 1, 1}, "abcabcabc"},
		{[]int{2, 1}, "abaaba"},
		{[]int{1}, "aaa"},
		{[]int{3, 2, 1}, "abacba" + "abacba"},
	} {
		c := newCluster(tc.weights...)
		pol := mustNew(t, "round-robin", c.params(nil))
		if got := seq(pol, c.cands, len(tc.want)); got != tc.want {
			t.Errorf("weights %v: %s, want %s", tc.weights, got, tc.want)
		}
	}
}

func TestRoundRobinCandidatesChange(t *testing.T) {
	c := newCluster(1, 1, 1)
	pol := mustNew(t, "round-robin", c.params(nil))
	if got := seq(pol, c.cands, 4); got != "abca" {
		t.Fatalf("start: %s", got)
	}
	// b's slot empties (b yellow, no stand-in): the others rotate. c had
	// been passed over in the round a just started, so it is owed one pick
	// first.
	ac := []Candidate{c.cands[0], c.cands[2]}
	if got := seq(pol, ac, 4); got != "ccac" {
		t.Errorf("without b: %s, want ccac", got)
	}
	// b comes back: it kept its score (it earned nothing while absent) and
	// rejoins the rotation at once.
	if got := seq(pol, c.cands, 6); got != "bacbac" {
		t.Errorf("b back: %s, want bacbac", got)
	}
	// c stands in for a: one candidate of summed weight 2.
	stand := []Candidate{{ID: 1, Name: "b", Weight: 1, Stats: c.nodes[1]}, {ID: 2, Name: "c", Weight: 2, Stats: c.nodes[2]}}
	if got := seq(pol, stand, 6); got != "ccbccb" && got != "cbccbc" && got != "bccbcc" {
		t.Errorf("c standing in for a: %s, want c twice as often as b, smoothly", got)
	}
}

func TestRoundRobinConcurrentShares(t *testing.T) {
	c := newCluster(5, 1, 1)
	pol := mustNew(t, "round-robin", c.params(nil))
	var mu sync.Mutex
	got := make([]int, 3)
	var wg sync.WaitGroup
	for range 7 {
		wg.Go(func() {
			local := make([]int, 3)
			for range 1000 {
				local[pol.Pick(netip.Addr{}, c.cands)]++
			}
			mu.Lock()
			for i := range local {
				got[i] += local[i]
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	// 7,000 picks are 1,000 whole cycles of weight 7: exact.
	if got[0] != 5000 || got[1] != 1000 || got[2] != 1000 {
		t.Errorf("counts %v, want [5000 1000 1000]", got)
	}
}
