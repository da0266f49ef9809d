package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

// State is a node's administrative state (seed 001 §8).
type State uint32

const (
	// Green nodes take new connections normally.
	Green State = iota
	// Yellow nodes take no new clients; existing connections continue.
	Yellow
	// Red nodes are offline: their connections are closed at once.
	Red
)

func (s State) String() string {
	switch s {
	case Green:
		return "green"
	case Yellow:
		return "yellow"
	case Red:
		return "red"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ParseState parses "green", "yellow" or "red".
func ParseState(s string) (State, error) {
	switch s {
	case "green":
		return Green, nil
	case "yellow":
		return Yellow, nil
	case "red":
		return Red, nil
	}
	return 0, fmt.Errorf("unknown state %q (want green, yellow or red)", s)
}

// Node is one server at run time: its identity (name and address) and its
// live state — weight, administrative state, availability, statistics and
// open connections. A reload that keeps a node's name and address carries
// the same *Node into the new Cluster, so nothing live is lost; everything
// else about the node's place in a cluster (fall-over, standby, max_conns)
// belongs to the Cluster.
type Node struct {
	Name string
	// Host and Port are the dial target; Port 0 means the port the client
	// connected to (a port-less node).
	Host string
	Port uint16
	// addr is "host:port" for nodes with a port, built once.
	addr string
	// ip is Host parsed when it is an IP literal (invalid for a host name).
	ip netip.Addr

	weight atomic.Int32
	state  atomic.Uint32
	// downUntil is 0 while the node is available; otherwise the unix-nano
	// time from which one connection may probe it again (see usable).
	downUntil atomic.Int64
	// checkDown is set while the cluster's health check holds the node down.
	checkDown atomic.Bool

	Stats stats.Node

	mu    sync.Mutex // guards conns
	conns map[Conn]struct{}
}

// Conn is a proxied connection through a node, closed when the node turns red.
type Conn interface{ Close() error }

// Weight is the node's current load factor (0 = no new connections).
func (n *Node) Weight() int { return int(n.weight.Load()) }

// SetWeight changes the load factor for the next connection.
func (n *Node) SetWeight(w int) { n.weight.Store(int32(w)) }

// State is the node's administrative state.
func (n *Node) State() State { return State(n.state.Load()) }

// SetState changes the node's state; the next connection sees it. Turning a
// node red closes every connection through it.
func (n *Node) SetState(s State) {
	n.state.Store(uint32(s))
	if s == Red {
		n.closeAll()
	}
}

// Available reports whether the node is neither marked unavailable by a
// failed connect nor held down by its health check.
func (n *Node) Available() bool { return n.downUntil.Load() == 0 && !n.checkDown.Load() }

// MarkDown records a failed connect: the node is skipped until retry has
// passed.
func (n *Node) MarkDown(now time.Time, retry time.Duration) {
	n.downUntil.Store(now.Add(retry).UnixNano())
}

// MarkUp records a successful connect.
func (n *Node) MarkUp() {
	if n.downUntil.Load() != 0 {
		n.downUntil.Store(0)
	}
}

// usable reports whether the node can take a new connection now. A node
// marked down becomes usable for exactly one probing connection once its
// retry time has passed: the caller that wins the race pushes the retry time
// forward, so the others keep skipping it until the probe's outcome is known.
func (n *Node) usable(now int64, retry time.Duration, maxConns int, claimProbe bool) bool {
	return n.State() == Green && n.canTake(now, retry, maxConns, claimProbe)
}

// canTake is usable without the administrative state, for callers that
// have accepted the state already (a yellow node serving its recorded
// clients in a port-less cluster).
func (n *Node) canTake(now int64, retry time.Duration, maxConns int, claimProbe bool) bool {
	if n.checkDown.Load() {
		return false
	}
	if maxConns > 0 && n.Stats.Active.Load() >= int64(maxConns) {
		return false
	}
	until := n.downUntil.Load()
	if until == 0 {
		return true
	}
	if now < until {
		return false
	}
	if !claimProbe {
		return true
	}
	return n.downUntil.CompareAndSwap(until, now+int64(retry))
}

// Addr is the dial address for a client that connected to localPort.
func (n *Node) Addr(localPort uint16) string {
	if n.addr != "" {
		return n.addr
	}
	p := n.Port
	if p == 0 {
		p = localPort
	}
	return net.JoinHostPort(n.Host, strconv.Itoa(int(p)))
}

// AddrPort is the dial address for a client that connected to localPort,
// and false when the node is named by a host name (to be resolved).
func (n *Node) AddrPort(localPort uint16) (netip.AddrPort, bool) {
	if !n.ip.IsValid() {
		return netip.AddrPort{}, false
	}
	p := n.Port
	if p == 0 {
		p = localPort
	}
	return netip.AddrPortFrom(n.ip, p), true
}

// Track registers c so that turning the node red closes it. It returns
// false, without registering, when the node is already red.
func (n *Node) Track(c Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.State() == Red {
		return false
	}
	if n.conns == nil {
		n.conns = make(map[Conn]struct{})
	}
	n.conns[c] = struct{}{}
	return true
}

// Untrack forgets c.
func (n *Node) Untrack(c Conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

func (n *Node) closeAll() {
	n.mu.Lock()
	conns := make([]Conn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
