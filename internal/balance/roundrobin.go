package balance

import (
	"net/netip"
	"sync"
)

// roundRobin is smooth weighted round robin (the nginx algorithm): each pick
// adds every candidate's weight to its running score, takes the highest and
// subtracts the total from it. Weights 5,1,1 give a a b a c a a, never a
// burst of the heavy node. A node absent from the candidates (its slot
// empty) keeps its score and earns nothing meanwhile; when it returns it
// rejoins the rotation where it left it. The one policy with a lock: a
// per-cluster mutex held for one pass over the candidates.
type roundRobin struct {
	mu      sync.Mutex // guards current; held for one pass over the candidates
	current []int64    // running score per node ID
}

var _ Policy = (*roundRobin)(nil)

func newRoundRobin(p Params) (Policy, error) {
	return &roundRobin{current: make([]int64, p.Nodes)}, nil
}

func (r *roundRobin) Pick(_ netip.Addr, cands []Candidate) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	best, bestCur, total := -1, int64(0), int64(0)
	for i := range cands {
		c := &cands[i]
		w := int64(c.Weight)
		cur := r.current[c.ID] + w
		r.current[c.ID] = cur
		total += w
		if best < 0 || cur > bestCur {
			best, bestCur = i, cur
		}
	}
	r.current[cands[best].ID] -= total
	return best
}
