//go:build linux

package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/evloop"
)

// loopsAvailable reports whether this platform has the event-loop data path.
const loopsAvailable = true

// loops is the event-loop data path: one loop per CPU, each accepting on
// every listening socket (EPOLLEXCLUSIVE), dialling and relaying its own
// connections from start to end. Nothing on the way of a connection waits:
// a dial is a non-blocking connect finished by an event, a Redis lookup or
// a host-name resolution runs on a goroutine and resumes the connection by
// a posted command.
type loops struct {
	s   *Server
	all []*loopState
}

// loopState is what the proxy keeps per loop. It is touched by its loop's
// goroutine only.
type loopState struct {
	ls   *loops
	loop *evloop.Loop
	// trackers stand for the loop's connections to each node in the
	// node's red-close registry: one entry per node in use, not one per
	// connection.
	trackers map[*cluster.Node]*nodeTracker
	// starved are acceptors taken out of the epoll set while a connection
	// cap is full; a release puts them back.
	starved []*acceptor
	// Free lists (see loopSession) and the timeouts of each cluster version.
	sessions evloop.FreeList[loopSession]
	dials    evloop.FreeList[dialState]
	opts     map[*cluster.Cluster]*evloop.Options
}

func newLoops(s *Server, n int) (*loops, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	ls := &loops{s: s}
	for i := 0; i < n; i++ {
		l, err := evloop.New(i)
		if err != nil {
			for _, st := range ls.all {
				st.loop.Stop()
			}
			return nil, fmt.Errorf("event loop: %w", err)
		}
		ls.all = append(ls.all, &loopState{ls: ls, loop: l, trackers: map[*cluster.Node]*nodeTracker{},
			opts: map[*cluster.Cluster]*evloop.Options{}, sessions: evloop.FreeList[loopSession]{Max: keepFree},
			dials: evloop.FreeList[dialState]{Max: keepFree}})
	}
	for _, st := range ls.all {
		st.loop.Start()
	}
	return ls, nil
}

// stop ends the loops; their connections must be over.
func (ls *loops) stop() {
	for _, st := range ls.all {
		st.loop.Stop()
	}
}

// onAll runs f on every loop and waits until all have.
func (ls *loops) onAll(f func(st *loopState)) {
	var wg sync.WaitGroup
	for _, st := range ls.all {
		wg.Add(1)
		if !st.loop.Post(func() { f(st); wg.Done() }) {
			wg.Done() // stopped: nothing of its left to act on
		}
	}
	wg.Wait()
}

// resume puts starved acceptors back (a connection slot was freed). It
// does not wait: gate.release calls it from loops too.
func (ls *loops) resume() {
	for _, st := range ls.all {
		st.loop.Post(st.resumeAccepting)
	}
}

func (st *loopState) resumeAccepting() {
	starved := st.starved
	st.starved = nil
	for _, a := range starved {
		a.starved = false // starve puts it back on the list if need be
		a.register()
		if a.registered {
			a.acceptSome()
		}
	}
}

// closeConns aborts the loops' connections that match (shutdown, a red
// node, a removed listener).
func (ls *loops) closeConns(match func(*loopSession) bool) {
	ls.onAll(func(st *loopState) { st.abortWhere(match) })
}

// abortWhere aborts the loop's connections that match, on the loop.
func (st *loopState) abortWhere(match func(*loopSession) bool) {
	st.loop.Each(func(c *evloop.Conn) {
		if ss, ok := c.Owner().(*loopSession); ok && match(ss) {
			c.Abort(evloop.ErrAborted)
		}
	})
}

// nodeTracker is one loop's registration with a node: turning the node red
// closes the loop's connections through it.
type nodeTracker struct {
	st *loopState
	n  *cluster.Node
	// conns counts the loop's relays through n.
	conns int
}

// Close is called by the node when it turns red, from any goroutine.
func (t *nodeTracker) Close() error {
	t.st.loop.Post(func() {
		t.st.abortWhere(func(ss *loopSession) bool { return ss.n == t.n && ss.relaying })
	})
	return nil
}

// track counts a relay through n; false when n is red. A tracker stays
// registered when its count drops to zero (short connections would
// otherwise register and unregister one each, under the node's lock);
// idle trackers are swept once there are more than keepTrackers, so
// nodes removed by reloads are not held for ever.
func (st *loopState) track(n *cluster.Node) bool {
	t := st.trackers[n]
	if t == nil {
		if len(st.trackers) >= keepTrackers {
			st.sweepTrackers()
		}
		t = &nodeTracker{st: st, n: n}
		if !n.Track(t) {
			return false
		}
		st.trackers[n] = t
	} else if n.State() == cluster.Red {
		return false
	}
	t.conns++
	return true
}

const keepTrackers = 256

func (st *loopState) untrack(n *cluster.Node) {
	if t := st.trackers[n]; t != nil {
		t.conns--
	}
}

func (st *loopState) sweepTrackers() {
	for n, t := range st.trackers {
		if t.conns == 0 {
			n.Untrack(t)
			delete(st.trackers, n)
		}
	}
}

// rawSock is a listening socket the loops accept on, taken out of Go's
// netpoller (a duplicate descriptor; the net.Listener is closed).
type rawSock struct {
	fd   int
	addr netip.AddrPort
}

// detachSockets turns the listener's net.Listeners into raw sockets for
// the loops. Accepted sockets inherit keepalive from the listening socket,
// which saves two setsockopts per connection.
func (l *Listener) detachSockets() error {
	fail := func(err error) error {
		for _, r := range l.raws {
			unix.Close(r.fd)
		}
		l.raws = nil
		return err
	}
	for _, ln := range l.socks {
		rc, err := ln.SyscallConn()
		if err != nil {
			return fail(err)
		}
		fd := -1
		var derr error
		rc.Control(func(s uintptr) {
			fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
		})
		if derr != nil {
			return fail(derr)
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepIdle)
		l.raws = append(l.raws, rawSock{fd: fd, addr: ln.Addr().(*net.TCPAddr).AddrPort()})
	}
	for _, ln := range l.socks {
		ln.Close()
	}
	l.socks = nil
	return nil
}

// serveLoops registers every socket of the listener with every loop.
func (l *Listener) serveLoops(ls *loops) {
	for _, st := range ls.all {
		for i := range l.raws {
			l.acceptors = append(l.acceptors, &acceptor{st: st, l: l, sock: &l.raws[i]})
		}
	}
	ls.onAll(func(st *loopState) {
		for _, a := range l.acceptors {
			if a.st == st {
				a.register()
			}
		}
	})
}

// shutdownRaw takes the raw sockets out of the listening state for every
// copy of their descriptors (see releaseSockets).
func (l *Listener) shutdownRaw() {
	for _, r := range l.raws {
		unix.Shutdown(r.fd, unix.SHUT_RD)
	}
}

// closeRaw takes the raw sockets out of every loop and closes them.
func (l *Listener) closeRaw(ls *loops) {
	if len(l.raws) == 0 || l.rawClosed.Swap(true) {
		return
	}
	ls.onAll(func(st *loopState) {
		for _, a := range l.acceptors {
			if a.st == st {
				a.unregister()
				a.closed = true
			}
		}
	})
	for _, r := range l.raws {
		unix.Close(r.fd)
	}
}

// acceptor accepts on one listening socket for one loop.
type acceptor struct {
	st         *loopState
	l          *Listener
	sock       *rawSock
	registered bool
	closed     bool
	starved    bool
	bo         backoff
	retry      evloop.Timer
}

func (a *acceptor) register() {
	if a.registered || a.closed {
		return
	}
	if err := a.st.loop.RegisterListener(a.sock.fd, a); err != nil {
		a.l.s.log.Error("event loop cannot watch a listening socket", "listener", a.l.name, "err", err)
		return
	}
	a.registered = true
}

func (a *acceptor) unregister() {
	if a.registered {
		a.st.loop.Unregister(a.sock.fd)
		a.registered = false
	}
	a.st.loop.Disarm(&a.retry)
}

// starve takes the acceptor out until a slot frees up.
func (a *acceptor) starve() {
	a.unregister()
	if !a.starved {
		a.starved = true
		a.st.starved = append(a.st.starved, a)
	}
}

// Event: the listening socket has clients queued (level-triggered).
func (a *acceptor) Event(int, uint32) { a.acceptSome() }

// Timeout ends an accept back-off.
func (a *acceptor) Timeout(int64) {
	a.register()
	if a.registered {
		a.acceptSome()
	}
}

// acceptBatch bounds the accepts of one event so that relays on the same
// loop keep moving; the level-triggered listener comes back next turn.
const acceptBatch = 32

func (a *acceptor) acceptSome() {
	l := a.l
	s := l.s
	for i := 0; i < acceptBatch && !a.closed; i++ {
		if l.stopped.Load() {
			return
		}
		if d := s.fdPause.left(); d > 0 {
			a.unregister()
			a.st.loop.Arm(&a.retry, a, a.st.loop.Now()+int64(d))
			return
		}
		if !s.global.tryAcquire() {
			a.starve()
			return
		}
		if !l.cap.tryAcquire() {
			s.global.release()
			a.starve()
			return
		}
		fd, peer, e := evloop.Accept(a.sock.fd)
		if e != 0 {
			l.cap.release()
			s.global.release()
			switch e {
			case unix.EAGAIN:
				return
			case unix.ECONNABORTED, unix.EINTR:
				continue // that client is gone; the next may be there
			}
			d := a.bo.next()
			s.log.Warn("accept failed; backing off", "listener", l.name, "err", e, "pause", d)
			a.unregister()
			a.st.loop.Arm(&a.retry, a, a.st.loop.Now()+int64(d))
			return
		}
		a.bo.reset()
		a.accepted(fd, peer)
	}
}
