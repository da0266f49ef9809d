// Package cluster holds clusters and their nodes at run time: states,
// weights, availability, and the slots and stand-ins (DESIGN.md F6) from
// which a balancing policy chooses.
package cluster

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/protobalance/protobalance/internal/balance"
	"github.com/protobalance/protobalance/internal/config"
)

// Cluster is a group of nodes and the policy that balances over them. The
// node set is fixed for the life of a Cluster value; a reload that changes
// it builds a new one.
type Cluster struct {
	Name   string
	Config config.Cluster
	Nodes  []*Node
	Policy balance.Policy

	// PortLess is true when any node takes the client's port: such a
	// cluster never falls over and never marks nodes down (F6).
	PortLess bool

	scratch sync.Pool // of *Attempt
}

// New builds a cluster from its validated configuration.
func New(c *config.Cluster) (*Cluster, error) {
	cl := &Cluster{Name: c.Name, Config: *c}
	index := make(map[string]int, len(c.Nodes))
	for i, nc := range c.Nodes {
		index[nc.Name] = i
	}
	for i, nc := range c.Nodes {
		st, err := ParseState(nc.State)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: node %q: %w", c.Name, nc.Name, err)
		}
		n := &Node{ID: i, Name: nc.Name, Host: nc.Host, Port: nc.Port,
			Standby: nc.Standby, MaxConns: nc.MaxConns, Fallover: -1}
		if nc.Fallover != "" {
			j, ok := index[nc.Fallover]
			if !ok {
				return nil, fmt.Errorf("cluster %q: node %q: fallover to unknown node %q", c.Name, nc.Name, nc.Fallover)
			}
			n.Fallover = j
		}
		n.SetWeight(nc.Weight)
		n.state.Store(uint32(st))
		if nc.Port == 0 {
			cl.PortLess = true
		}
		cl.Nodes = append(cl.Nodes, n)
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
	cl.scratch.New = func() any { return cl.newAttempt() }
	return cl, nil
}

func nodeNames(nodes []*Node) []string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return names
}

// Node returns the node with the given name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Attempt is the state of choosing a node for one connection: which nodes
// were tried, and scratch space so that choosing does not allocate. Get one
// with Begin and hand it back with Done.
type Attempt struct {
	c     *Cluster
	now   int64
	tried []bool
	pos   []int // node ID → index in cands, or -1
	cands []balance.Candidate
	last  *Node
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
	a.last = nil
	return a
}

// Done returns the attempt's scratch space; a must not be used afterwards.
func (a *Attempt) Done() { a.c.scratch.Put(a) }

// Next returns the next node to dial for client, or nil when no node can
// take the connection. After a failed dial of the previous node the
// previous node's fall-over chain is tried first, then the remaining slots
// by the policy; each node is offered at most once.
func (a *Attempt) Next(client netip.Addr) *Node {
	if prev := a.last; prev != nil {
		for id := prev.Fallover; id >= 0; id = a.c.Nodes[id].Fallover {
			if a.tried[id] {
				break // a loop is a config error; stop at a revisit anyway
			}
			if n := a.c.Nodes[id]; a.claim(n) {
				return a.take(n)
			}
		}
	}
	for {
		cands := a.slots()
		if len(cands) == 0 {
			return nil
		}
		n := a.c.Nodes[cands[a.c.Policy.Pick(client, cands)].ID]
		if a.claim(n) {
			return a.take(n)
		}
		// Another connection won the probe of this down node; skip it.
		a.tried[n.ID] = true
	}
}

func (a *Attempt) take(n *Node) *Node {
	a.tried[n.ID] = true
	a.last = n
	return n
}

// claim reports whether n may be dialled now, claiming the single probe of
// a node whose retry time has come.
func (a *Attempt) claim(n *Node) bool {
	return !a.tried[n.ID] && n.usable(a.now, a.c.Config.RetryInterval, true)
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
	for _, slot := range a.c.Nodes {
		w := slot.Weight()
		if slot.Standby || w <= 0 {
			continue
		}
		filler := a.standIn(slot)
		if filler == nil {
			continue
		}
		if p := a.pos[filler.ID]; p >= 0 {
			cands[p].Weight += w
			continue
		}
		a.pos[filler.ID] = len(cands)
		cands = append(cands, balance.Candidate{ID: filler.ID, Name: filler.Name, Weight: w, Stats: &filler.Stats})
	}
	a.cands = cands
	return cands
}

// standIn is the first node of slot's chain, starting with slot itself,
// that can take a new connection.
func (a *Attempt) standIn(slot *Node) *Node {
	for id, hops := slot.ID, 0; id >= 0 && hops < len(a.c.Nodes); id, hops = a.c.Nodes[id].Fallover, hops+1 {
		n := a.c.Nodes[id]
		if !a.tried[id] && n.usable(a.now, a.c.Config.RetryInterval, false) {
			return n
		}
	}
	return nil
}
