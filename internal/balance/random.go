package balance

import (
	"math/rand/v2"
	"net/netip"
)

// random is weighted pure random: a candidate is chosen with probability
// Weight/ΣWeight, independently of every other pick. It draws from
// math/rand/v2's top-level functions, whose source is per thread in the
// runtime: no lock, no shared write.
type random struct {
	// src, when set, replaces the runtime source; it is not safe for
	// concurrent use, so only single-goroutine tests set it.
	src *rand.Rand
}

var _ Policy = (*random)(nil)

func newRandom(Params) (Policy, error) { return &random{}, nil }

// Pick is two passes over the candidates: sum the weights, then find where
// a uniform draw below the sum falls. Candidates with a weight <= 0 (which
// the contract excludes) are never chosen unless all are, then uniformly.
func (r *random) Pick(_ netip.Addr, cands []Candidate) int {
	if len(cands) == 1 {
		return 0
	}
	var total uint64
	for i := range cands {
		total += uint64(max(cands[i].Weight, 0))
	}
	if total == 0 {
		return int(r.draw(uint64(len(cands))))
	}
	x := r.draw(total)
	for i := range cands {
		w := uint64(max(cands[i].Weight, 0))
		if x < w {
			return i
		}
		x -= w
	}
	return len(cands) - 1 // unreachable: x < total
}

func (r *random) draw(n uint64) uint64 {
	if r.src != nil {
		return r.src.Uint64N(n)
	}
	return rand.Uint64N(n)
}
