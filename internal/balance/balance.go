// Package balance holds the balancing algorithms: one file per algorithm,
// each a Policy built once per cluster configuration by New.
//
// A policy is pure selection: it is handed the cluster's filled slots (see
// internal/cluster) and returns one. It never dials, loops over retries or
// sorts; fall-over belongs to the caller, which excludes a failed node and
// asks again.
//
// The algorithms, by config name: round-robin (smooth weighted), random
// (weighted), conn-rate, traffic-rate, min-load (load_rating) and ip-hash
// (weighted rendezvous). Policies that read a decaying rate count their own
// pick in it before returning, so concurrent picks see each other: conn-rate
// in stats.Node.ConnRate, traffic-rate in stats.Node.TrafficRate, min-load
// in ConnRate when its rating reads conn_rate. Everything else about a node
// (Active from the start of a dial, Total, Failures, ConnectMS, bytes with
// stats.Node.AddBytes) is the proxy's to record. Ties rotate in conn-rate,
// traffic-rate and min-load.
package balance

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

// Candidate is one filled slot offered to a policy.
type Candidate struct {
	// ID is the node's index in its cluster, stable for the life of the
	// policy; policies may keep per-node state in a slice indexed by it.
	ID int
	// Name is the node's name (ip-hash hashes over names, so twin balancers
	// with the same node names agree).
	Name string
	// Weight is the summed weight of the slots the node fills (> 0).
	Weight int
	// Stats is the node's live record.
	Stats *stats.Node
}

// Policy picks one candidate for a new connection.
//
// Pick is called with at least one candidate and returns an index into
// cands. It must be safe for concurrent use, must not allocate, and must not
// retain cands after it returns.
type Policy interface {
	Pick(client netip.Addr, cands []Candidate) int
}

// Params is what a policy may need from its cluster's configuration.
type Params struct {
	Cluster string
	// Nodes is the number of nodes in the cluster (the bound on Candidate.ID).
	Nodes int
	// NodeNames are the cluster's node names indexed by Candidate.ID.
	// ip-hash requires them (len Nodes) and precomputes each node's hash
	// state from them: NodeNames[c.ID] must be c.Name.
	NodeNames []string
	// HashKey keys ip-hash (config.Cluster.EffectiveHashKey); "" = Cluster.
	HashKey string
	// LoadRating is min-load's expression source, compiled once by New
	// (see CompileLoadRating); "" = DefaultLoadRating.
	LoadRating string
	// RateWindow is the decay window of the node rates read by conn-rate,
	// traffic-rate and min-load; 0 = stats.DefaultRateWindow. Rates read
	// fastest when each node's stats.Node.SetRateWindow got the same value.
	RateWindow time.Duration

	// now is the policies' clock; nil = stats.Now. Tests set it.
	now func() stats.Instant
}

func (p *Params) clock() func() stats.Instant {
	if p.now != nil {
		return p.now
	}
	return stats.Now
}

type factory func(Params) (Policy, error)

// registry maps an algorithm name to its constructor: adding an algorithm is
// one file and one line here.
var registry = map[string]factory{
	"round-robin":  newRoundRobin,
	"random":       newRandom,
	"conn-rate":    newConnRate,
	"traffic-rate": newTrafficRate,
	"min-load":     newMinLoad,
	"ip-hash":      newIPHash,
}

// New builds the policy named by algorithm.
func New(algorithm string, p Params) (Policy, error) {
	f, ok := registry[algorithm]
	if !ok {
		return nil, fmt.Errorf("unknown algorithm %q (want one of %s)", algorithm, strings.Join(Names(), ", "))
	}
	return f(p)
}

// Names lists the known algorithms, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// rotor hands out scan offsets so that ties rotate over the candidates
// instead of always going to the first. It is padded onto its own cache
// line: every pick writes it.
type rotor struct {
	_ [64]byte
	n atomic.Uint64
	_ [56]byte
}

// start returns where the next scan over n candidates begins.
func (r *rotor) start(n int) int {
	if n == 1 {
		return 0
	}
	return int(uint32(r.n.Add(1)) % uint32(n)) // 32-bit division: cheaper
}
