package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/guard"
	"github.com/protobalance/protobalance/internal/stats"
)

// Listener accepts clients on one address or port range and sends them to
// its cluster, which can be switched at run time. Its sockets live as long
// as its bind is unchanged; a reload swaps its settings in place.
type Listener struct {
	s        *Server
	name     string
	settings atomic.Pointer[listenerSettings]
	cluster  atomic.Pointer[cluster.Cluster]
	cap      *gate // the listener's own max_conns (0 = only the global cap)
	Stats    stats.Listener

	socks []*net.TCPListener
	// raws replace socks on the event-loop data path (see detachSockets);
	// acceptors are their registrations with the loops.
	raws      []rawSock
	acceptors []*acceptor
	rawClosed atomic.Bool // closeRaw may be reached from a reload and a shutdown
	stopped   atomic.Bool
	stop      chan struct{} // closed when the listener stops accepting

	mu       sync.Mutex // guards sessions
	sessions map[*session]struct{}
}

// listenerSettings is the part of a listener's configuration that a reload
// may change without rebinding.
type listenerSettings struct {
	cfg config.Listener
	// guard admits or refuses each accepted client (F13); nil = no rule.
	guard *guard.Guard
}

func newListener(s *Server, cfg *config.Listener, g *guard.Guard, c *cluster.Cluster) *Listener {
	l := &Listener{s: s, name: cfg.Name, stop: make(chan struct{}), sessions: make(map[*session]struct{})}
	l.settings.Store(&listenerSettings{cfg: *cfg, guard: g})
	l.cluster.Store(c)
	l.cap = newGate(cfg.MaxConns)
	if s.loops != nil {
		l.cap.onFree = s.loops.resume
	}
	return l
}

// Name is the listener's configured name.
func (l *Listener) Name() string { return l.name }

// Bind is the listener's configured address or port range.
func (l *Listener) Bind() config.Bind { return l.settings.Load().cfg.Bind }

// Guard is the listener's abuse guard, nil when it has no rule.
func (l *Listener) Guard() *guard.Guard { return l.settings.Load().guard }

// Cluster is the cluster new connections go to.
func (l *Listener) Cluster() *cluster.Cluster { return l.cluster.Load() }

// Addrs are the bound addresses (resolving port 0), one per port.
func (l *Listener) Addrs() []netip.AddrPort {
	if len(l.raws) > 0 {
		out := make([]netip.AddrPort, 0, len(l.raws))
		for _, r := range l.raws {
			out = append(out, r.addr)
		}
		return out
	}
	out := make([]netip.AddrPort, 0, len(l.socks))
	for _, s := range l.socks {
		out = append(out, s.Addr().(*net.TCPAddr).AddrPort())
	}
	return out
}

// sameBind reports whether b names the sockets the listener has, counting
// a bind to port 0 as the port the kernel chose.
func (l *Listener) sameBind(b config.Bind) bool {
	have := l.Bind()
	if have == b {
		return true
	}
	addrs := l.Addrs()
	if have.IsRange() || b.IsRange() || have.FirstPort != 0 || len(addrs) != 1 {
		return false
	}
	return addrs[0] == netip.AddrPortFrom(b.Addr, b.FirstPort)
}

// ListenConfig is how listening sockets are opened without an
// Options.Listen hook. KeepAlive -1: Go's default would spend four
// setsockopts on every accepted socket; setKeepAlive does what we need
// with two. Give a hook the same settings (tableflip.Options.ListenConfig).
func ListenConfig() *net.ListenConfig {
	lc := &net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	return lc
}

// open binds every port of the listener; all or nothing.
func (l *Listener) open() error {
	b := l.Bind()
	listen := l.s.listen
	if listen == nil {
		lc := ListenConfig()
		listen = func(network, addr string) (net.Listener, error) {
			return lc.Listen(context.Background(), network, addr)
		}
	}
	for p := int(b.FirstPort); p <= int(b.LastPort); p++ {
		addr := net.JoinHostPort(b.Addr.String(), strconv.Itoa(p))
		ln, err := listen("tcp", addr)
		if err == nil {
			tl, ok := ln.(*net.TCPListener)
			if !ok {
				ln.Close()
				err = fmt.Errorf("listen %s: got a %T, want a *net.TCPListener", addr, ln)
			} else {
				l.socks = append(l.socks, tl)
				continue
			}
		}
		l.releaseSockets()
		l.socks = nil
		return err
	}
	if l.s.loops != nil {
		if err := l.detachSockets(); err != nil {
			l.releaseSockets()
			return err
		}
	}
	return nil
}

// releaseSockets closes the listener's sockets for good (a reload removed
// or rebound it, or opening failed): with an Options.Listen hook, which may
// hold copies of them, each is shut down first so that no copy keeps
// listening (clients would queue unanswered) or holds the address. Never
// at Shutdown: after a binary upgrade the new process shares the sockets.
func (l *Listener) releaseSockets() {
	if l.s.listen != nil {
		for _, ln := range l.socks {
			stopListening(ln)
		}
		l.shutdownRaw()
	}
	l.closeSockets()
}

// serve starts accepting: on the event loops, every port of a range is
// one more descriptor in each loop's epoll set; on the goroutine data path,
// each port has its own accept goroutine (parked in the netpoller: about
// 8 KB per port).
func (l *Listener) serve() {
	if l.s.loops != nil {
		l.serveLoops(l.s.loops)
		return
	}
	for _, ln := range l.socks {
		l.s.wg.Add(1)
		go l.acceptLoop(ln)
	}
}

// closeSockets stops accepting; open sessions continue.
func (l *Listener) closeSockets() {
	l.mu.Lock()
	if !l.stopped.Swap(true) {
		close(l.stop)
	}
	l.mu.Unlock()
	l.cap.wake()
	l.s.global.wake()
	for _, ln := range l.socks {
		ln.Close()
	}
	if l.s.loops != nil {
		l.closeRaw(l.s.loops)
	}
}

func (l *Listener) closeSessions() {
	if l.s.loops != nil {
		l.s.loops.closeConns(func(ss *loopSession) bool { return ss.l == l })
	}
	l.mu.Lock()
	all := make([]*session, 0, len(l.sessions))
	for ss := range l.sessions {
		all = append(all, ss)
	}
	l.mu.Unlock()
	for _, ss := range all {
		ss.Close()
	}
}

// acceptLoop takes a slot of both caps before each accept, so at a cap the
// kernel's backlog queues new clients instead of us accepting and dropping.
func (l *Listener) acceptLoop(ln *net.TCPListener) {
	defer l.s.wg.Done()
	var bo backoff
	for {
		if d := l.s.fdPause.left(); d > 0 {
			select {
			case <-time.After(d):
			case <-l.stop:
				return
			}
			continue
		}
		if !l.s.global.acquire(l.stopped.Load) {
			return
		}
		if !l.cap.acquire(l.stopped.Load) {
			l.s.global.release()
			return
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			l.cap.release()
			l.s.global.release()
			if isClosed(err) {
				return
			}
			d := bo.next()
			l.s.log.Warn("accept failed; backing off", "listener", l.name, "err", err, "pause", d)
			select {
			case <-time.After(d):
			case <-l.stop:
				return
			}
			continue
		}
		bo.reset()
		l.Stats.Accepted.Add(1)
		now := time.Now()
		st := l.settings.Load()
		g := st.guard
		client := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		if v := admitAtAccept(st, client, now); !v.OK {
			// Refused at accept: closed before a byte is read or a node
			// dialled; counted by reason in the guard.
			c.SetLinger(0)
			c.Close()
			l.cap.release()
			l.s.global.release()
			continue
		}
		l.Stats.Active.Add(1)
		ss := &session{l: l, client: c, start: now, guard: g, clientIP: client}
		ss.awaitProxyHeader(st.cfg.AcceptProxy)
		if !l.track(ss) {
			ss.release()
			c.Close()
			return
		}
		l.s.wg.Add(1)
		l.s.dispatch.run(ss)
	}
}

// track registers a session so shutdown can close it; false once stopping.
func (l *Listener) track(ss *session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped.Load() {
		return false
	}
	l.sessions[ss] = struct{}{}
	return true
}

func (l *Listener) untrack(ss *session) {
	l.mu.Lock()
	delete(l.sessions, ss)
	l.mu.Unlock()
}
