// Package relaytest builds relayed connections on real loopback TCP for
// testing relay.Relay implementations (net.Pipe has no half-close).
//
// A Rig has two listeners: "front", where the test's client connects and
// the relay's client side is accepted, and "back", which plays the node.
// Each Pair is one client ⇄ relay ⇄ node chain with Relay running on its
// own goroutine.
package relaytest

import (
	"net"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/relay"
)

// WaitLimit bounds every wait in this package. It is a hang guard, not a
// timing assertion: reaching it fails the test.
const WaitLimit = 30 * time.Second

// Rig holds the listeners pairs are built from. Its methods must be called
// from one goroutine at a time (the accept order pairs the conns).
type Rig struct {
	front, back *net.TCPListener
}

// NewRig listens on frontIP:0 and backIP:0 (distinct 127.x addresses keep
// one package's tests apart from another's) and closes both at cleanup.
func NewRig(t testing.TB, frontIP, backIP string) *Rig {
	t.Helper()
	listen := func(ip string) *net.TCPListener {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatalf("listen %s: %v", ip, err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l
	}
	return &Rig{front: listen(frontIP), back: listen(backIP)}
}

// Pair is one relayed connection.
type Pair struct {
	Client *net.TCPConn // the test's client end
	Node   *net.TCPConn // the test's node end
	// RelayClient and RelayNode are the conns handed to Relay, for tests
	// that close them from outside.
	RelayClient, RelayNode *net.TCPConn

	done   chan relay.Result
	result *relay.Result
}

// Pair connects a client through r to a node and starts r.Relay with opt.
// At cleanup the test ends are closed and the relay is waited for, so no
// goroutine outlives the test.
func (g *Rig) Pair(t testing.TB, r relay.Relay, opt relay.Options) *Pair {
	t.Helper()
	p := g.Conns(t)
	p.Start(t, r, opt)
	return p
}

// Conns builds the four conns of a Pair without starting a relay, for
// measurements that need the conns alone first; call Start next.
func (g *Rig) Conns(t testing.TB) *Pair {
	t.Helper()
	p := &Pair{done: make(chan relay.Result, 1)}
	p.Client, p.RelayClient = connect(t, g.front)
	p.RelayNode, p.Node = connect(t, g.back)
	return p
}

// Start runs r.Relay on the pair's relay conns, on a goroutine of its own
// (as a proxy would), and registers the cleanup that ends it.
func (p *Pair) Start(t testing.TB, r relay.Relay, opt relay.Options) {
	go func() { p.done <- r.Relay(p.RelayClient, p.RelayNode, opt) }()
	t.Cleanup(func() { p.Close(t) })
}

// Close closes the test's ends and waits for the relay to return.
func (p *Pair) Close(t testing.TB) relay.Result {
	t.Helper()
	_ = p.Client.Close()
	_ = p.Node.Close()
	return p.Wait(t)
}

// connect dials l and accepts, returning (dialled, accepted).
func connect(t testing.TB, l *net.TCPListener) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	d, err := net.DialTCP("tcp", nil, l.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("dial %v: %v", l.Addr(), err)
	}
	a, err := l.AcceptTCP()
	if err != nil {
		t.Fatalf("accept %v: %v", l.Addr(), err)
	}
	return d, a
}

// Wait returns the relay's Result, waiting for it (at most WaitLimit, then
// the test fails). It may be called more than once, from one goroutine at a
// time, as may Ended.
func (p *Pair) Wait(t testing.TB) relay.Result {
	t.Helper()
	if p.result == nil {
		select {
		case r := <-p.done:
			p.result = &r
		case <-time.After(WaitLimit):
			t.Fatalf("relay still running after %v", WaitLimit)
		}
	}
	return *p.result
}

// Ended reports, without waiting, whether the relay has returned.
func (p *Pair) Ended() bool {
	if p.result != nil {
		return true
	}
	select {
	case r := <-p.done:
		p.result = &r
		return true
	default:
		return false
	}
}
