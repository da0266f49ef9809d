// Package cluster holds clusters and their nodes at run time: states,
// weights, availability, and the slots and stand-ins (DESIGN.md F6) from
// which a balancing policy chooses.
package cluster

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/internal/affinity"
	"github.com/protobalance/protobalance/internal/balance"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/health"
)

// Cluster is one version of a cluster: its configuration, its nodes in
// configuration order and the policy over them. It is immutable once built
// (the nodes' live state changes, the node set does not); a reload builds a
// new version that carries the unchanged nodes over (see New).
type Cluster struct {
	Name   string
	Config config.Cluster
	Nodes  []*Node
	Policy balance.Policy

	// PortLess is true when any node takes the client's port: such a
	// cluster never falls over and never marks nodes down (F6).
	PortLess bool

	// Affinity is the cluster's view of its client table (F5), nil
	// without affinity. Set by the owner before the version is published.
	Affinity *affinity.View

	// Health is the cluster's active health checker, nil without a check.
	// Versions with an unchanged check share it (see newChecker).
	Health        *health.Checker
	healthTargets []health.Target
	newHealth     bool

	// Per node, by index in Nodes: the node's place in this cluster.
	fallover []int // index of the next node of the chain, or -1
	standby  []bool
	maxConns []int

	scratch sync.Pool // of *Attempt

	// SourceTurn is the rotation counter of source_addresses with
	// source_hash = false (F12), owned by the dialer (internal/proxy).
	SourceTurn atomic.Uint32
}

// New builds a cluster version from its validated configuration. Nodes of
// prev (the version being replaced, or nil) with the same name and address
// are carried over with their live state; for them, weight and state are
// taken from c only where the file changed them since prev.Config, so a
// change made at run time holds until the file changes that same key.
func New(c *config.Cluster, prev *Cluster, log *slog.Logger) (*Cluster, error) {
	cl := &Cluster{Name: c.Name, Config: *c}
	index := make(map[string]int, len(c.Nodes))
	for i, nc := range c.Nodes {
		index[nc.Name] = i
	}
	for _, nc := range c.Nodes {
		n, err := cl.node(&nc, prev)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: node %q: %w", c.Name, nc.Name, err)
		}
		fo := -1
		if nc.Fallover != "" {
			j, ok := index[nc.Fallover]
			if !ok {
				return nil, fmt.Errorf("cluster %q: node %q: fallover to unknown node %q", c.Name, nc.Name, nc.Fallover)
			}
			fo = j
		}
		n.Stats.SetRateWindow(c.RateWindow)
		if nc.Port == 0 {
			cl.PortLess = true
		}
		cl.Nodes = append(cl.Nodes, n)
		cl.fallover = append(cl.fallover, fo)
		cl.standby = append(cl.standby, nc.Standby)
		cl.maxConns = append(cl.maxConns, nc.MaxConns)
	}
	p, err := balance.New(c.Algorithm, balance.Params{
		Cluster:    c.Name,
		Nodes:      len(cl.Nodes),
		NodeNames:  nodeNames(cl.Nodes),
		HashKey:    c.EffectiveHashKey(),
		LoadRating: c.LoadRating,
		RateWindow: c.RateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	cl.Policy = p
	cl.newChecker(prev, log)
	cl.scratch.New = func() any { return cl.newAttempt() }
	return cl, nil
}

// node returns the node for nc: prev's node of the same name and address
// with file changes applied, or a new one.
func (cl *Cluster) node(nc *config.Node, prev *Cluster) (*Node, error) {
	st, err := ParseState(nc.State)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		if old, i := prev.Node(nc.Name); old != nil && old.Host == nc.Host && old.Port == nc.Port {
			was := prev.Config.Nodes[i]
			if was.Weight != nc.Weight {
				old.SetWeight(nc.Weight)
			}
			if was.State != nc.State {
				old.SetState(st)
			}
			return old, nil
		}
	}
	n := &Node{Name: nc.Name, Host: nc.Host, Port: nc.Port}
	if ip, err := netip.ParseAddr(nc.Host); err == nil {
		n.ip = ip.Unmap()
	}
	if nc.Port != 0 {
		n.addr = config.JoinHostPort(nc.Host, nc.Port)
	}
	n.SetWeight(nc.Weight)
	n.state.Store(uint32(st))
	return n, nil
}

func nodeNames(nodes []*Node) []string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return names
}

// Node returns the node with the given name and its index, or nil and -1.
func (c *Cluster) Node(name string) (*Node, int) {
	for i, n := range c.Nodes {
		if n.Name == name {
			return n, i
		}
	}
	return nil, -1
}

// Fallover returns the name of the node's fall-over node in this cluster,
// or "".
func (c *Cluster) Fallover(i int) string {
	if j := c.fallover[i]; j >= 0 {
		return c.Nodes[j].Name
	}
	return ""
}

// Attempt is the state of choosing a node for one connection: which nodes
// were tried, and scratch space so that choosing does not allocate. Get one
// with Begin and hand it back with Done.
type Attempt struct {
	c     *Cluster
	now   int64
	tried []bool
	pos   []int // node index → index in cands, or -1
	cands []balance.Candidate
	last  int // index of the node returned last, or -1
}

func (c *Cluster) newAttempt() *Attempt {
	n := len(c.Nodes)
	return &Attempt{c: c, tried: make([]bool, n), pos: make([]int, n), cands: make([]balance.Candidate, 0, n)}
}

// Begin starts choosing a node for a new connection.
func (c *Cluster) Begin(now time.Time) *Attempt {
	a := c.scratch.Get().(*Attempt)
	a.now = now.UnixNano()
	clear(a.tried)
	a.last = -1
	return a
}

// Exclude keeps n from being offered by this attempt: a node that already
// failed this connection in an earlier attempt. Like a failed dial, it
// makes n's fall-over chain the next choice.
func (a *Attempt) Exclude(n *Node) {
	if _, i := a.c.Node(n.Name); i >= 0 && a.c.Nodes[i] == n {
		a.tried[i] = true
		a.last = i
	}
}

// Done returns the attempt's scratch space; a must not be used afterwards.
func (a *Attempt) Done() { a.c.scratch.Put(a) }

// Next returns the next node to dial for client, or nil when no node can
// take the connection. After a failed dial of the previous node the
// previous node's fall-over chain is tried first, then the remaining slots
// by the policy; each node is offered at most once.
func (a *Attempt) Next(client netip.Addr) *Node {
	if a.last >= 0 {
		for i := a.c.fallover[a.last]; i >= 0 && !a.tried[i]; i = a.c.fallover[i] {
			if a.claim(i) {
				return a.take(i)
			}
		}
	}
	for {
		cands := a.slots()
		if len(cands) == 0 {
			return nil
		}
		i := cands[a.c.Policy.Pick(client, cands)].ID
		if a.claim(i) {
			return a.take(i)
		}
		// Another connection won the probe of this down node; skip it.
		a.tried[i] = true
	}
}

// Recorded offers the node an affinity record names (F5): the node
// itself when it can take the connection, else the first node down its
// fall-over chain that can (its stand-in), else nil, and the caller goes on
// with Next. Standby status does not matter here (affinity beats standby).
// servingYellow lets a yellow recorded node take the client: port-less
// clusters keep serving a draining node's recorded clients (F7), whose
// data connections belong to sessions still open on that node.
func (a *Attempt) Recorded(name string, servingYellow bool) *Node {
	_, i := a.c.Node(name)
	if i < 0 {
		return nil
	}
	if servingYellow && !a.tried[i] && a.c.Nodes[i].State() == Yellow {
		if a.c.Nodes[i].canTake(a.now, a.c.Config.RetryInterval, a.c.maxConns[i], true) {
			return a.take(i)
		}
	}
	for hops := 0; i >= 0 && hops < len(a.c.Nodes); i, hops = a.c.fallover[i], hops+1 {
		if a.claim(i) {
			return a.take(i)
		}
	}
	return nil
}

func (a *Attempt) take(i int) *Node {
	a.tried[i] = true
	a.last = i
	return a.c.Nodes[i]
}

// claim reports whether node i may be dialled now, claiming the single
// probe of a node whose retry time has come.
func (a *Attempt) claim(i int) bool {
	return !a.tried[i] && a.c.Nodes[i].usable(a.now, a.c.Config.RetryInterval, a.c.maxConns[i], true)
}

// slots fills a.cands with the filled slots (F6): each non-standby node
// with weight > 0 is a slot, filled by itself when usable, else by the first
// usable node down its fall-over chain. A node filling several slots is one
// candidate with their summed weight.
func (a *Attempt) slots() []balance.Candidate {
	for i := range a.pos {
		a.pos[i] = -1
	}
	cands := a.cands[:0]
	for i, slot := range a.c.Nodes {
		w := slot.Weight()
		if a.c.standby[i] || w <= 0 {
			continue
		}
		f := a.standIn(i)
		if f < 0 {
			continue
		}
		if p := a.pos[f]; p >= 0 {
			cands[p].Weight += w
			continue
		}
		a.pos[f] = len(cands)
		n := a.c.Nodes[f]
		cands = append(cands, balance.Candidate{ID: f, Name: n.Name, Weight: w, Stats: &n.Stats})
	}
	a.cands = cands
	return cands
}

// standIn is the index of the first node of slot's chain, starting with
// the slot's own node, that can take a new connection, or -1.
func (a *Attempt) standIn(slot int) int {
	for i, hops := slot, 0; i >= 0 && hops < len(a.c.Nodes); i, hops = a.c.fallover[i], hops+1 {
		if !a.tried[i] && a.c.Nodes[i].usable(a.now, a.c.Config.RetryInterval, a.c.maxConns[i], false) {
			return i
		}
	}
	return -1
}
