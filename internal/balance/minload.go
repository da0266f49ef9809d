package balance

import (
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

// minLoad sends a new connection to the candidate with the lowest value of
// the cluster's load_rating (see LoadRating). Ties rotate. Under sustained
// load with the default rating, (active + 1) / weight, open connections
// settle in the ratio of the weights.
//
// The default rating is computed in integer arithmetic from Active and the
// weight: no expression, no clock, a few ns per candidate. Any other rating
// is cached per node and re-evaluated only when a variable it reads has
// changed — weight, active, failures and total exactly, the float metrics
// when they cross a step of 1/128 of their value — so a pick runs the
// expression for the few nodes whose metrics moved, not for every node.
//
// min-load does not change active: the proxy counts a connection in
// stats.Node.Active, and should do so as soon as Pick returns (before the
// dial), or a burst of picks herds onto the node that rates lowest. When the
// rating reads conn_rate, Pick counts the pick there itself, at once, as
// conn-rate does.
//
// Pick takes no lock. With the default rating it does not allocate; with
// another, re-evaluating a node allocates what expr boxes (a few values).
type minLoad struct {
	rating *LoadRating
	window time.Duration
	now    func() stats.Instant
	cache  []atomic.Pointer[ratingEntry] // by node ID
	rot    rotor
}

var _ Policy = (*minLoad)(nil)

// ratingEntry is one node's cached rating and the inputs it was computed
// from; entries are immutable once published.
type ratingEntry struct {
	key    ratingKey
	rating float64
}

// ratingKey holds the inputs a rating depends on: the exact integers and
// the floats cut to 7 bits of mantissa (steps of at most 1/128). Variables
// the rating does not read stay zero.
type ratingKey struct {
	weight                  int
	active                  int64
	failures, total         uint64
	connRate, traffic, conn uint64
}

func newMinLoad(p Params) (Policy, error) {
	l, err := CompileLoadRating(p.LoadRating)
	if err != nil {
		return nil, err
	}
	return &minLoad{rating: l, window: p.RateWindow, now: p.clock(),
		cache: make([]atomic.Pointer[ratingEntry], p.Nodes)}, nil
}

func (p *minLoad) Pick(_ netip.Addr, cands []Candidate) int {
	if p.rating.isDefault {
		return p.pickDefault(cands)
	}
	var s stats.Scale
	if p.rating.reads&(readsConnRate|readsTrafficRate) != 0 {
		s = stats.NewScale(p.window, p.now())
	}
	n := len(cands)
	best := p.rot.start(n)
	bestR := p.rate(&cands[best], &s)
	for i, left := best+1, n-1; left > 0; i, left = i+1, left-1 {
		if i == n {
			i = 0
		}
		if r := p.rate(&cands[i], &s); r < bestR {
			best, bestR = i, r
		}
	}
	if p.rating.reads&readsConnRate != 0 {
		cands[best].Stats.ConnRate.AddScaled(&s, 1)
	}
	return best
}

// pickDefault minimises (active + 1) / weight by cross-multiplication:
// exact integers, the same order as the expression's float division.
func (p *minLoad) pickDefault(cands []Candidate) int {
	n := len(cands)
	best := p.rot.start(n)
	bestA := cands[best].Stats.Active.Load() + 1
	bestW := int64(cands[best].Weight)
	for i, left := best+1, n-1; left > 0; i, left = i+1, left-1 {
		if i == n {
			i = 0
		}
		c := &cands[i]
		a, w := c.Stats.Active.Load()+1, int64(c.Weight)
		if a*bestW < bestA*w {
			best, bestA, bestW = i, a, w
		}
	}
	return best
}

// quantize keeps the sign, exponent and 7 mantissa bits of v.
func quantize(v float64) uint64 { return math.Float64bits(v) >> 45 }

// rate returns c's rating, from the cache when its inputs have not moved.
func (p *minLoad) rate(c *Candidate, s *stats.Scale) float64 {
	st, reads := c.Stats, p.rating.reads
	env := ratingEnv{Weight: c.Weight}
	key := ratingKey{weight: c.Weight}
	if reads&readsActive != 0 {
		key.active = st.Active.Load()
		env.Active = int(key.active)
	}
	if reads&readsFailures != 0 {
		key.failures = st.Failures.Load()
		env.Failures = int(key.failures)
	}
	if reads&readsTotal != 0 {
		key.total = st.Total.Load()
		env.Total = int(key.total)
	}
	if reads&readsConnRate != 0 {
		env.ConnRate = s.Value(st.ConnRate.Scaled(s))
		key.connRate = quantize(env.ConnRate)
	}
	if reads&readsTrafficRate != 0 {
		env.TrafficRate = s.Value(st.TrafficRate.Scaled(s))
		key.traffic = quantize(env.TrafficRate)
	}
	if reads&readsConnectMS != 0 {
		env.ConnectMS = st.ConnectMS.Value()
		key.conn = quantize(env.ConnectMS)
	}
	if uint(c.ID) >= uint(len(p.cache)) { // outside the contract: no cache slot
		return p.rating.eval(&env)
	}
	slot := &p.cache[c.ID]
	if e := slot.Load(); e != nil && e.key == key {
		return e.rating
	}
	r := p.rating.eval(&env)
	slot.Store(&ratingEntry{key: key, rating: r})
	return r
}
