package balance

import (
	"net/netip"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

// trafficRate sends a new connection to the candidate with the lowest recent
// bytes per second, both directions, per unit weight
// (stats.Node.TrafficRate, fed by the proxy through stats.Node.AddBytes).
// The pick adds at once the chosen node's mean bytes per connection to its
// rate, so a burst of new connections spreads before any of their bytes
// move; a node with no finished history borrows the mean of the other
// candidates, and with no history anywhere the estimate is 1 byte, which
// spreads a cold burst by weight. Ties rotate.
//
// Under sustained load the nodes' bytes per second settle in the ratio of
// their weights. One clock read and one exp per pick; no lock.
type trafficRate struct {
	window time.Duration
	now    func() stats.Instant
	rot    rotor
}

var _ Policy = (*trafficRate)(nil)

func newTrafficRate(p Params) (Policy, error) {
	return &trafficRate{window: p.RateWindow, now: p.clock()}, nil
}

func (p *trafficRate) Pick(_ netip.Addr, cands []Candidate) int {
	s := stats.NewScale(p.window, p.now())
	best := lowestRate(cands, p.rot.start(len(cands)), &s, trafficRates)
	st := cands[best].Stats
	est, ok := st.MeanConnBytes()
	if !ok {
		est = meanConnBytes(cands)
	}
	st.TrafficRate.AddScaled(&s, max(est, 1))
	return best
}

// meanConnBytes is the mean bytes per connection over all candidates with
// history (0 when none has any). It runs only for a node's first picks.
func meanConnBytes(cands []Candidate) float64 {
	var bytes, conns uint64
	for i := range cands {
		st := cands[i].Stats
		conns += st.Total.Load()
		bytes += st.BytesIn.Load() + st.BytesOut.Load()
	}
	if conns == 0 {
		return 0
	}
	return float64(bytes) / float64(conns)
}
