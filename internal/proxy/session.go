package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/guard"
	"github.com/protobalance/protobalance/internal/relay"
)

// session is one client connection, from accept to close.
type session struct {
	l      *Listener
	client *net.TCPConn
	start  time.Time
	// guard admitted the client and is told when the connection ends;
	// clientIP is the client's address, read once at accept.
	guard    *guard.Guard
	clientIP netip.Addr

	mu     sync.Mutex // guards node and closed
	node   *net.TCPConn
	closed bool

	// failed lists nodes that closed early on this connection; they are
	// not offered again to it (nil unless an early close happened).
	failed []*cluster.Node
	tries  int // dials made

	pp proxyIn // PROXY protocol state (proxyheader.go)
}

// Outcomes of a connection, as logged.
const (
	outcomeRelayed = "relayed"
	outcomeNoNode  = "no_node"
)

// errNoNode ends a connection that no node could take.
var errNoNode = errors.New("no node could take the connection")

// dispatch chooses and dials a node, then hands the pair to the relay on a
// fresh goroutine: this one has grown its stack dialling, and an idle
// connection should not keep that stack alive.
func (ss *session) dispatch() {
	if ss.pp.expect && !ss.readProxyHeader() {
		ss.l.s.wg.Done()
		return
	}
	c := ss.l.Cluster()
	setKeepAlive(ss.client)
	n, conn, err := ss.dial(c)
	if errors.Is(err, errNoNode) {
		// A reconfiguration may have replaced the cluster version while
		// this connection looked at the old one (a node added as the last
		// usable one drained): look once more at the current version.
		if cur := ss.l.Cluster(); cur != c {
			c = cur
			n, conn, err = ss.dial(c)
		}
	}
	if err != nil {
		ss.noNode(c, err)
		ss.l.s.wg.Done()
		return
	}
	go ss.relayAndFinish(c, n, conn)
}

func (ss *session) noNode(c *cluster.Cluster, err error) {
	ss.l.Stats.NoNode.Add(1)
	ss.client.Close()
	ss.finish(c, nil, relay.Result{Err: err}, outcomeNoNode)
}

// dial walks the cluster's candidates until a node accepts the connection,
// each node at most once and all within dispatch_timeout of the accept. A
// failed dial marks the node down, except in port-less clusters, which
// never fall over.
func (ss *session) dial(c *cluster.Cluster) (*cluster.Node, *net.TCPConn, error) {
	cfg := &c.Config
	client := ss.clientIP
	localPort := ss.client.LocalAddr().(*net.TCPAddr).AddrPort().Port()
	deadline := ss.start.Add(cfg.DispatchTimeout)
	a := c.Begin(time.Now())
	defer a.Done()
	for _, n := range ss.failed {
		a.Exclude(n)
	}
	recorded := ss.l.s.lookupAffinity(c, client, ss.start)
	// src chooses the local address of each dial (F12); nil = the kernel's.
	src := newSourceDial(c, client)
	var lastErr error = errNoNode
	for {
		var n *cluster.Node
		if recorded != "" {
			n = a.Recorded(recorded, c.PortLess)
			recorded = "" // a failed dial goes on by the chain and the policy
		}
		if n == nil {
			n = a.Next(client)
		}
		if n == nil {
			if errors.Is(lastErr, errSourceFamily) {
				ss.l.noSourcePort(lastErr)
			}
			return nil, nil, lastErr
		}
		now := time.Now()
		timeout := min(cfg.ConnectTimeout, deadline.Sub(now))
		if timeout <= 0 {
			return nil, nil, context.DeadlineExceeded
		}
		if ss.tries++; ss.tries > 1 {
			n.Stats.FallIns.Add(1)
		}
		// A dial in progress counts as active, so max_conns and the
		// least-loaded policies see it at once.
		n.Stats.Active.Add(1)
		tc, err := dialNode(n, localPort, timeout, src)
		if err == nil {
			n.MarkUp()
			n.Stats.ConnectMS.Observe(time.Since(now))
			setKeepAlive(tc)
			// The record names the node that served the client, written
			// before the first byte is relayed. Port-less clusters (FTP
			// data) only read records.
			if c.Affinity != nil && !c.PortLess {
				c.Affinity.Record(client, n.Name, now)
			}
			return n, tc, nil
		}
		lastErr = err
		n.Stats.Active.Add(-1)
		if localExhaustion(err) {
			// Our own ephemeral ports or descriptors ran out: the node is
			// not at fault, and another node would fail the same way.
			ss.l.noSourcePort(err)
			return nil, nil, err
		}
		if errors.Is(err, errSourceFamily) {
			// No source address of this node's family: skip the node,
			// which is not at fault, and go on with the others.
			continue
		}
		n.Stats.Failures.Add(1)
		if c.PortLess {
			return nil, nil, err
		}
		ss.markDown(c, n, err)
	}
}

// dialNode connects to n without Go's default keepalive (setKeepAlive does
// it more cheaply). Not Dialer.DialTCP: given no local address it binds
// one explicitly, which reserves an ephemeral port per connection instead
// of per destination and runs out under load (EADDRINUSE).
//
// With src (source_addresses or transparent), the socket is bound by
// src.control to a source address with port 0 and IP_BIND_ADDRESS_NO_PORT
// (LocalAddr stays nil: Go binds nothing). When rotating, an address out of
// ports moves the dial on to the next, all within timeout; the error of
// the last address tried is returned.
func dialNode(n *cluster.Node, localPort uint16, timeout time.Duration, src *sourceDial) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	addr := n.Addr(localPort)
	if src == nil {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	d.Deadline = time.Now().Add(timeout)
	d.Control = src.control
	for src.try = 0; ; {
		c, err := d.Dial("tcp", addr)
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		if !src.moveOn(err) {
			return nil, err
		}
	}
}

// localExhaustion reports whether a dial failed for want of a local
// resource (an ephemeral port of its source address, a descriptor) rather
// than because of the node: the node is not marked down, and the
// connection ends as no_source_port.
func localExhaustion(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EADDRINUSE) || outOfDescriptors(err)
}

func (ss *session) markDown(c *cluster.Cluster, n *cluster.Node, err error) {
	ss.l.s.markDown(c, n, err)
}

// markDown makes n unavailable until retry_interval after a failed dial
// or an early close, on either data path.
func (s *Server) markDown(c *cluster.Cluster, n *cluster.Node, err error) {
	n.MarkDown(time.Now(), c.Config.RetryInterval)
	n.Stats.MarkedDown.Add(1)
	s.log.Info("node unavailable", "cluster", c.Name, "node", n.Name, "err", err, "retry_in", c.Config.RetryInterval)
}

// errEarlyClose is logged when a node closed a fresh connection unused.
var errEarlyClose = errors.New("closed by the node before any byte moved")

// relayAndFinish relays until the connection ends. A node that closes the
// connection within early_close_window before any byte moved is marked
// down and the client, which has lost nothing, goes on to the next node.
func (ss *session) relayAndFinish(c *cluster.Cluster, n *cluster.Node, conn *net.TCPConn) {
	defer ss.l.s.wg.Done()
	var pending []byte
	for {
		res := ss.relay(c, n, conn, pending)
		n.Stats.Active.Add(-1)
		if !res.EarlyClose {
			ss.finish(c, n, res, outcomeRelayed)
			return
		}
		n.Stats.Failures.Add(1)
		ss.markDown(c, n, errEarlyClose)
		ss.failed = append(ss.failed, n)
		pending = res.Pending
		var err error
		if n, conn, err = ss.dial(c); err != nil {
			ss.noNode(c, err)
			return
		}
	}
}

// relay runs one relay of the client with conn (after an early close, the
// client bytes read but not yet sent go first), registered with the node so
// that turning it red closes the connection.
func (ss *session) relay(c *cluster.Cluster, n *cluster.Node, conn *net.TCPConn, pending []byte) relay.Result {
	ss.mu.Lock()
	ss.node = conn
	closed := ss.closed
	ss.mu.Unlock()
	n.Stats.Total.Add(1)
	if closed || !n.Track(ss) {
		ss.Close()
		return relay.Result{Err: net.ErrClosed}
	}
	defer n.Untrack(ss)
	cfg := &c.Config
	early := cfg.EarlyCloseWindow
	if c.PortLess {
		early = 0
	}
	if pending == nil {
		pending = ss.takePending() // read past an accept_proxy header
	}
	// Our PROXY header, then any pending client bytes.
	if err := ss.sendFirst(c, conn, pending); err != nil {
		if len(pending) == 0 && early > 0 {
			// Only our header was refused: the client has lost
			// nothing, so this is an early close (fall over).
			conn.Close()
			return relay.Result{EarlyClose: true}
		}
		ss.Close()
		return relay.Result{Err: err}
	}
	if len(pending) > 0 {
		n.Stats.AddBytes(uint64(len(pending)), 0)
		early = 0 // bytes went to this node: no more fall-over
	}
	res := ss.l.s.relay.Relay(ss.client, conn, relay.Options{
		IdleTimeout: cfg.IdleTimeout,
		FinTimeout:  cfg.FinTimeout,
		EarlyClose:  early,
		Count:       func(up, down int64) { n.Stats.AddBytes(uint64(up), uint64(down)) },
	})
	res.Up += int64(len(pending))
	return res
}

// Close ends the session from outside (node red, shutdown): both sockets
// are closed, which ends the relay.
func (ss *session) Close() error {
	ss.mu.Lock()
	ss.closed = true
	node := ss.node
	ss.mu.Unlock()
	if node != nil {
		node.Close()
	}
	return ss.client.Close()
}

// release gives back the caps and counts taken at accept.
func (ss *session) release() {
	ss.guard.Release(ss.clientIP)
	ss.l.Stats.Active.Add(-1)
	ss.l.cap.release()
	ss.l.s.global.release()
}

func (ss *session) finish(c *cluster.Cluster, n *cluster.Node, res relay.Result, outcome string) {
	ss.l.untrack(ss)
	ss.release()
	log := ss.l.s.log
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	node := ""
	if n != nil {
		node = n.Name
	}
	log.LogAttrs(context.Background(), slog.LevelDebug, "connection",
		slog.String("listener", ss.l.name),
		slog.String("cluster", c.Name),
		slog.String("client", ss.client.RemoteAddr().String()),
		slog.String("node", node),
		slog.String("outcome", outcome),
		slog.Int("tries", ss.tries),
		slog.Int64("up", res.Up),
		slog.Int64("down", res.Down),
		slog.Duration("duration", time.Since(ss.start)),
		slog.Any("err", res.Err))
}
