package balance

import (
	"net/netip"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

// connRate sends a new connection to the candidate with the lowest recent
// new-connection rate per unit weight (stats.Node.ConnRate, decaying over
// Params.RateWindow), and counts the pick in that rate before returning, so
// that concurrent picks see each other and a burst spreads 3:1:1 over
// weights 3:1:1 instead of herding onto the idlest node. Ties (equal rate per
// weight, e.g. a fresh cluster) rotate.
//
// One clock read and one exp per pick; comparing rates needs no exp (see
// stats.Scale). No lock: the count is a CAS on the chosen node's rate.
type connRate struct {
	window time.Duration
	now    func() stats.Instant
	rot    rotor
}

var _ Policy = (*connRate)(nil)

func newConnRate(p Params) (Policy, error) {
	return &connRate{window: p.RateWindow, now: p.clock()}, nil
}

func (p *connRate) Pick(_ netip.Addr, cands []Candidate) int {
	s := stats.NewScale(p.window, p.now())
	best := lowestRate(cands, p.rot.start(len(cands)), &s, connRates)
	cands[best].Stats.ConnRate.AddScaled(&s, 1)
	return best
}

// rateKind selects which of a node's rates lowestRate compares.
type rateKind bool

const (
	connRates    rateKind = false
	trafficRates rateKind = true
)

func (k rateKind) of(n *stats.Node) *stats.Rate {
	if k == trafficRates {
		return &n.TrafficRate
	}
	return &n.ConnRate
}

// lowestRate returns the candidate with the lowest rate per unit weight at
// s, scanning from start and wrapping, so that the first of equals in scan
// order wins and ties rotate with start. Rates per weight are compared by
// cross-multiplication: no division.
func lowestRate(cands []Candidate, start int, s *stats.Scale, kind rateKind) int {
	n := len(cands)
	best := start
	bestR := kind.of(cands[start].Stats).Scaled(s)
	bestW := float64(cands[start].Weight)
	for i, left := start+1, n-1; left > 0; i, left = i+1, left-1 {
		if i == n {
			i = 0
		}
		c := &cands[i]
		rate := kind.of(c.Stats)
		r, ok := rate.Probe(s) // inlined: no call for the common case
		if !ok {
			r = rate.Scaled(s)
		}
		if w := float64(c.Weight); r*bestW < bestR*w {
			best, bestR, bestW = i, r, w
		}
	}
	return best
}
