package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/relay"
)

// session is one client connection, from accept to close.
type session struct {
	l      *Listener
	client *net.TCPConn
	start  time.Time

	mu     sync.Mutex // guards node and closed
	node   *net.TCPConn
	closed bool
}

// Outcomes of a connection, as logged and counted.
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
	c := ss.l.Cluster()
	client := ss.client.RemoteAddr().(*net.TCPAddr).AddrPort()
	local := ss.client.LocalAddr().(*net.TCPAddr).AddrPort()
	setKeepAlive(ss.client)

	n, conn, tries, err := ss.dial(c, client.Addr(), local.Port())
	if err != nil {
		ss.l.Stats.NoNode.Add(1)
		ss.client.Close()
		ss.finish(c, nil, relay.Result{Err: err}, outcomeNoNode, tries)
		ss.l.s.wg.Done()
		return
	}
	go ss.relayAndFinish(c, n, conn, tries)
}

// dial walks the cluster's candidates until a node accepts the connection,
// each node at most once and all within dispatch_timeout. A failed dial
// marks the node down, except in port-less clusters, which never fall over.
func (ss *session) dial(c *cluster.Cluster, client netip.Addr, localPort uint16) (*cluster.Node, *net.TCPConn, int, error) {
	cfg := &c.Config
	deadline := ss.start.Add(cfg.DispatchTimeout)
	a := c.Begin(ss.start)
	defer a.Done()
	var lastErr error = errNoNode
	for tries := 0; ; tries++ {
		n := a.Next(client)
		if n == nil {
			return nil, nil, tries, lastErr
		}
		now := time.Now()
		timeout := min(cfg.ConnectTimeout, deadline.Sub(now))
		if timeout <= 0 {
			return nil, nil, tries, context.DeadlineExceeded
		}
		// A dial in progress counts as active, so max_conns and the
		// least-loaded policies see it at once.
		n.Stats.Active.Add(1)
		d := net.Dialer{Timeout: timeout, KeepAlive: -1}
		conn, err := d.Dial("tcp", n.Addr(localPort))
		if err == nil {
			n.MarkUp()
			n.Stats.ConnectMS.Observe(time.Since(now))
			tc := conn.(*net.TCPConn)
			setKeepAlive(tc)
			return n, tc, tries + 1, nil
		}
		lastErr = err
		n.Stats.Active.Add(-1)
		n.Stats.Failures.Add(1)
		if c.PortLess {
			return nil, nil, tries + 1, err
		}
		n.MarkDown(time.Now(), cfg.RetryInterval)
		ss.l.s.log.Info("node unavailable", "cluster", c.Name, "node", n.Name, "err", err, "retry_in", cfg.RetryInterval)
	}
}

func (ss *session) relayAndFinish(c *cluster.Cluster, n *cluster.Node, conn *net.TCPConn, tries int) {
	defer ss.l.s.wg.Done()
	ss.mu.Lock()
	ss.node = conn
	closed := ss.closed
	ss.mu.Unlock()
	n.Stats.Total.Add(1)
	var res relay.Result
	if closed || !n.Track(ss) {
		ss.Close()
		res.Err = net.ErrClosed
	} else {
		cfg := &c.Config
		res = ss.l.s.relay.Relay(ss.client, conn, relay.Options{
			IdleTimeout: cfg.IdleTimeout,
			FinTimeout:  cfg.FinTimeout,
			Count:       func(up, down int64) { n.Stats.AddBytes(uint64(up), uint64(down)) },
		})
		n.Untrack(ss)
	}
	n.Stats.Active.Add(-1)
	ss.finish(c, n, res, outcomeRelayed, tries)
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
	ss.l.Stats.Active.Add(-1)
	ss.l.cap.release()
	ss.l.s.global.release()
}

func (ss *session) finish(c *cluster.Cluster, n *cluster.Node, res relay.Result, outcome string, tries int) {
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
		slog.Int("tries", tries),
		slog.Int64("up", res.Up),
		slog.Int64("down", res.Down),
		slog.Duration("duration", time.Since(ss.start)),
		slog.Any("err", res.Err))
}
