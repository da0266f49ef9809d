//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/protobalance/protobalance/internal/affinity"
	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/evloop"
	"github.com/protobalance/protobalance/internal/guard"
	"github.com/protobalance/protobalance/internal/proxyproto"
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
		ls.all = append(ls.all, &loopState{ls: ls, loop: l, trackers: map[*cluster.Node]*nodeTracker{}})
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
		st.loop.Post(func() { f(st); wg.Done() })
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
		a.register()
		if a.registered {
			a.acceptSome()
		}
	}
}

// closeConns aborts the loops' connections that match (shutdown, a red
// node, a removed listener).
func (ls *loops) closeConns(match func(*loopSession) bool) {
	ls.onAll(func(st *loopState) {
		st.loop.Each(func(c *evloop.Conn) {
			if ss, ok := c.Owner().(*loopSession); ok && match(ss) {
				c.Abort(evloop.ErrAborted)
			}
		})
	})
}

// nodeTracker is one loop's registration with a node: turning the node red
// closes the loop's connections through it.
type nodeTracker struct {
	st *loopState
	n  *cluster.Node
	// conns counts the loop's relays through n; the tracker is dropped at 0.
	conns int
}

// Close is called by the node when it turns red, from any goroutine.
func (t *nodeTracker) Close() error {
	t.st.loop.Post(func() {
		t.st.loop.Each(func(c *evloop.Conn) {
			if ss, ok := c.Owner().(*loopSession); ok && ss.n == t.n && ss.relaying {
				c.Abort(evloop.ErrAborted)
			}
		})
	})
	return nil
}

// track counts a relay through n; false when n is red.
func (st *loopState) track(n *cluster.Node) bool {
	t := st.trackers[n]
	if t == nil {
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

func (st *loopState) untrack(n *cluster.Node) {
	t := st.trackers[n]
	if t == nil {
		return
	}
	if t.conns--; t.conns == 0 {
		n.Untrack(t)
		delete(st.trackers, n)
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
	for _, ln := range l.socks {
		rc, err := ln.SyscallConn()
		if err != nil {
			return err
		}
		fd := -1
		var derr error
		rc.Control(func(s uintptr) {
			fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
		})
		if derr != nil {
			return derr
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
	if len(l.raws) == 0 || l.rawClosed {
		return
	}
	l.rawClosed = true
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
	a.starved = false
	l := a.l
	s := l.s
	for i := 0; i < acceptBatch && !a.closed; i++ {
		if l.stopped.Load() {
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
			case unix.EAGAIN, unix.ECONNABORTED, unix.EINTR:
				if e == unix.EAGAIN {
					return
				}
				continue
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

// accepted admits one client and starts choosing its node.
func (a *acceptor) accepted(fd int, peer netip.AddrPort) {
	l := a.l
	s := l.s
	l.Stats.Accepted.Add(1)
	now := time.Now()
	set := l.settings.Load()
	client := peer.Addr().Unmap()
	// An accept_proxy listener sees only its upstream here: its clients
	// are admitted on the address their PROXY header names (Preface).
	if v := admitAtAccept(set, client, now); !v.OK {
		evloop.Reset(fd)
		l.cap.release()
		s.global.release()
		return
	}
	l.Stats.Active.Add(1)
	s.wg.Add(1)
	ss := &loopSession{st: a.st, l: l, client: netip.AddrPortFrom(client, peer.Port()),
		local: a.sock.addr, start: now}
	if !set.cfg.AcceptProxy {
		ss.guard = set.guard
	}
	conn, err := a.st.loop.Accept(fd, ss, evloop.Options{})
	if err != nil {
		evloop.Reset(fd)
		ss.release()
		s.wg.Done()
		return
	}
	ss.conn = conn
	if set.cfg.AcceptProxy {
		ss.awaiting = true
		conn.AwaitPreface(proxyHeaderTimeout.Load())
		return
	}
	ss.begin()
}

// errRefused resets an accept_proxy client the guard refused.
var errRefused = errors.New("refused by the abuse guard")

// Preface parses the PROXY header of an accept_proxy listener's client,
// admits the address it names and starts dialling.
func (ss *loopSession) Preface(conn *evloop.Conn, b []byte) (int, error) {
	h, n, err := proxyproto.Parse(b)
	if err == proxyproto.ErrIncomplete {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !h.Local {
		// A LOCAL header (the upstream's own health check) keeps the
		// peer's address.
		ss.hdr, ss.haveHdr = h, true
		ss.client = netip.AddrPortFrom(h.Src.Addr().Unmap(), h.Src.Port())
	}
	g := ss.l.Guard()
	if v := g.Admit(ss.client.Addr(), time.Now()); !v.OK {
		ss.awaiting = false
		return 0, errRefused
	}
	ss.guard = g
	ss.awaiting = false
	conn.PrefaceTaken()
	ss.begin()
	return n, nil
}

// nodeHeader is the PROXY header sent to nodes: the upstream's header's
// addresses, else the client's and the one it connected to.
func (ss *loopSession) nodeHeader() proxyproto.Header {
	if ss.haveHdr {
		return ss.hdr
	}
	dst := ss.local
	if dst.Addr().IsUnspecified() {
		dst = evloop.LocalAddr(ss.conn.ClientFD())
	}
	return proxyproto.Header{Src: ss.client, Dst: dst}
}

// loopSession is one client connection on a loop: it walks the cluster's
// candidates as the connects complete, then lets the Conn relay.
type loopSession struct {
	st     *loopState
	l      *Listener
	conn   *evloop.Conn
	guard  *guard.Guard
	client netip.AddrPort
	local  netip.AddrPort // the listening socket's address
	start  time.Time
	// accept_proxy: awaiting the header; hdr is the one received when it
	// named addresses.
	awaiting bool
	hdr      proxyproto.Header
	haveHdr  bool

	c        *cluster.Cluster
	a        *cluster.Attempt // while choosing
	n        *cluster.Node    // being dialled or relayed to
	dialAt   time.Time
	deadline int64 // loop clock: dispatch_timeout
	recorded string
	failed   []*cluster.Node
	tries    int
	lastErr  error
	relaying bool
	// src chooses the local address of each dial (F12) when hasSrc.
	src      sourceDial
	hasSrc   bool
	dialAddr netip.AddrPort
	holding  bool // n.Stats.Active counts this connection
}

// begin looks up the client's affinity record (locally; a miss in shared
// mode asks Redis on a goroutine) and starts dialling.
func (ss *loopSession) begin() {
	c := ss.l.Cluster()
	ss.c = c
	cfg := &c.Config
	ss.deadline = ss.st.loop.Now() + int64(cfg.DispatchTimeout)
	early := int64(cfg.EarlyCloseWindow)
	if c.PortLess {
		early = 0
	}
	ss.conn.SetOptions(evloop.Options{Idle: int64(cfg.IdleTimeout), Fin: int64(cfg.FinTimeout), Early: early})
	ss.a = c.Begin(ss.start)
	ss.src, ss.hasSrc = makeSourceDial(c, ss.client.Addr())
	if c.Affinity != nil {
		if node, ok := c.Affinity.Lookup(ss.client.Addr(), ss.start); ok {
			ss.recorded = node
		} else if aff := ss.l.s.aff; aff != nil && aff.Shared() {
			ss.lookupShared(aff)
			return
		}
	}
	ss.next()
}

// lookupShared asks Redis (≤ 10 ms) off the loop and resumes on it.
func (ss *loopSession) lookupShared(aff *affinity.Manager) {
	loop := ss.st.loop
	view := ss.c.Affinity
	go func() {
		node, _ := aff.LookupShared(context.Background(), view, ss.client.Addr(), ss.start)
		loop.Post(func() {
			if ss.conn.Done() {
				return // aborted meanwhile (shutdown)
			}
			ss.recorded = node
			ss.next()
		})
	}()
}

// next dials the next candidate, synchronously skipping those that fail
// at once, until a connect is under way or none is left.
func (ss *loopSession) next() {
	c := ss.c
	cfg := &c.Config
	for {
		var n *cluster.Node
		if ss.recorded != "" {
			n = ss.a.Recorded(ss.recorded, c.PortLess)
			ss.recorded = ""
		}
		if n == nil {
			n = ss.a.Next(ss.client.Addr())
		}
		if n == nil {
			if errors.Is(ss.lastErr, errSourceFamily) {
				ss.l.Stats.NoSourcePort.Add(1)
				ss.end()
				return
			}
			ss.noNode()
			return
		}
		now := ss.st.loop.Now()
		timeout := min(int64(cfg.ConnectTimeout), ss.deadline-now)
		if timeout <= 0 {
			ss.lastErr = context.DeadlineExceeded
			ss.noNode()
			return
		}
		if ss.tries++; ss.tries > 1 {
			n.Stats.FallIns.Add(1)
		}
		n.Stats.Active.Add(1) // a dial in progress counts as active
		ss.n, ss.holding = n, true
		ss.dialAt = time.Now()
		addr, ok := n.AddrPort(ss.local.Port())
		if !ok {
			ss.resolve(n, timeout)
			return
		}
		if ss.dial(addr, timeout) || !ss.dialError(n, ss.lastErr) {
			return
		}
	}
}

// dial starts connecting to addr, from the next source address of the
// pool when one runs out of ports at once (rotating pools); it reports
// whether a connect is under way, else the error is in ss.lastErr.
func (ss *loopSession) dial(addr netip.AddrPort, timeout int64) bool {
	ss.dialAddr = addr
	ss.src.try = 0
	for {
		err := ss.conn.Dial(addr, timeout)
		if err == nil {
			return true
		}
		ss.lastErr = err
		if !ss.hasSrc || !ss.src.moveOn(err) {
			return false
		}
	}
}

// resolve looks a node's host name up off the loop, then dials.
func (ss *loopSession) resolve(n *cluster.Node, timeout int64) {
	loop := ss.st.loop
	hostport := n.Addr(ss.local.Port())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout))
		ap, err := resolveTCP(ctx, hostport)
		cancel()
		loop.Post(func() {
			if ss.conn.Done() {
				return
			}
			if err == nil && ss.dial(ap, max(ss.deadline-loop.Now(), 1)) {
				return
			}
			if err == nil {
				err = ss.lastErr
			}
			if ss.dialError(n, err) {
				ss.next()
			}
		})
	}()
}

func resolveTCP(ctx context.Context, hostport string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "tcp", port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%s: no address", host)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}

// dialError books a failed dial of n and reports whether to try another
// node (false: the connection has been ended).
func (ss *loopSession) dialError(n *cluster.Node, err error) bool {
	ss.lastErr = err
	ss.drop()
	if localExhaustion(err) {
		// Our own ports or descriptors ran out: not the node's fault,
		// and another node would fail the same way.
		ss.l.Stats.NoSourcePort.Add(1)
		ss.end()
		return false
	}
	if errors.Is(err, errSourceFamily) {
		return true // no source address of the node's family: skip it
	}
	n.Stats.Failures.Add(1)
	if ss.c.PortLess {
		ss.noNode()
		return false
	}
	ss.markDown(n, err)
	return true
}

func (ss *loopSession) markDown(n *cluster.Node, err error) {
	c := ss.c
	n.MarkDown(time.Now(), c.Config.RetryInterval)
	n.Stats.MarkedDown.Add(1)
	ss.l.s.log.Info("node unavailable", "cluster", c.Name, "node", n.Name, "err", err, "retry_in", c.Config.RetryInterval)
}

// Prepare sets keepalive on a fresh node socket and binds it to its source
// address, if the cluster has a pool or is transparent.
func (ss *loopSession) Prepare(fd int) error {
	evloop.SetKeepAlive(fd, keepIdle)
	if ss.hasSrc {
		return ss.src.prepare(fd, ss.dialAddr.Addr().Is6())
	}
	return nil
}

// Connected: the node took the connection. The affinity record is
// written before the first byte moves.
func (ss *loopSession) Connected(conn *evloop.Conn) {
	n := ss.n
	now := time.Now()
	n.MarkUp()
	n.Stats.ConnectMS.Observe(now.Sub(ss.dialAt))
	c := ss.c
	if c.Affinity != nil && !c.PortLess {
		c.Affinity.Record(ss.client.Addr(), n.Name, now)
	}
	ss.a.Done()
	ss.a = nil
	n.Stats.Total.Add(1)
	if !ss.st.track(n) {
		conn.Abort(evloop.ErrAborted)
		return
	}
	ss.relaying = true
	if v := c.Config.ProxyProtocol; v != "" {
		var room [128]byte // a v1 line is at most 107 bytes, a v2 header 52
		b := room[:0]
		if v == "v1" {
			b = proxyproto.AppendV1(b, ss.nodeHeader())
		} else {
			b = proxyproto.AppendV2(b, ss.nodeHeader())
		}
		if err := conn.WriteNode(b); err != nil {
			conn.Abort(err)
		}
	}
}

// DialFailed: the connect was refused or timed out.
func (ss *loopSession) DialFailed(_ *evloop.Conn, err error) {
	if ss.dialError(ss.n, err) {
		ss.next()
	}
}

// Moved counts bytes as they are written.
func (ss *loopSession) Moved(up, down int) {
	ss.n.Stats.AddBytes(uint64(up), uint64(down))
}

// errEarlyCloseLoop is logged when a node closed a fresh connection unused.
var errEarlyCloseLoop = errors.New("closed by the node before any byte moved")

// Ended: the relay is over, or the node closed early and the client goes
// on to the next node with the bytes it already sent.
func (ss *loopSession) Ended(conn *evloop.Conn, res evloop.Result) {
	if ss.awaiting {
		// No valid header in time (a shutdown meanwhile is not the
		// upstream's fault).
		ss.awaiting = false
		if res.Err != evloop.ErrAborted {
			ss.l.Stats.BadProxyHeader.Add(1)
		}
		ss.finish(res)
		return
	}
	n := ss.n
	if ss.relaying {
		ss.relaying = false
		ss.st.untrack(n)
	}
	ss.drop()
	if res.EarlyClose {
		n.Stats.Failures.Add(1)
		ss.markDown(n, errEarlyCloseLoop)
		ss.failed = append(ss.failed, n)
		ss.a = ss.c.Begin(time.Now())
		for _, f := range ss.failed {
			ss.a.Exclude(f)
		}
		ss.next()
		return
	}
	if ss.a != nil {
		// Ended while choosing (aborted by shutdown, or noNode).
		ss.a.Done()
		ss.a = nil
	}
	if ss.c == nil {
		ss.c = ss.l.Cluster() // refused before choosing: for the log
	}
	ss.finish(res)
}

// drop gives back the node's Active count taken when its dial started.
func (ss *loopSession) drop() {
	if ss.holding {
		ss.holding = false
		ss.n.Stats.Active.Add(-1)
	}
}

// noNode ends a connection no node could take.
func (ss *loopSession) noNode() {
	ss.l.Stats.NoNode.Add(1)
	ss.end()
}

// end closes a connection that no node took.
func (ss *loopSession) end() {
	ss.n = nil
	ss.conn.Abort(ss.lastErr)
}

func (ss *loopSession) release() {
	ss.guard.Release(ss.client.Addr())
	ss.l.Stats.Active.Add(-1)
	ss.l.cap.release()
	ss.l.s.global.release()
}

func (ss *loopSession) finish(res evloop.Result) {
	ss.release()
	s := ss.l.s
	defer s.wg.Done()
	log := s.log
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	node, outcome := "", outcomeNoNode
	if ss.n != nil {
		node, outcome = ss.n.Name, outcomeRelayed
	}
	log.LogAttrs(context.Background(), slog.LevelDebug, "connection",
		slog.String("listener", ss.l.name),
		slog.String("cluster", ss.c.Name),
		slog.String("client", ss.client.String()),
		slog.String("node", node),
		slog.String("outcome", outcome),
		slog.Int("tries", ss.tries),
		slog.Int64("up", res.Up),
		slog.Int64("down", res.Down),
		slog.Duration("duration", time.Since(ss.start)),
		slog.Any("err", res.Err))
}
