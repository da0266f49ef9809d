//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/protobalance/protobalance/internal/affinity"
	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/evloop"
	"github.com/protobalance/protobalance/internal/guard"
	"github.com/protobalance/protobalance/internal/proxyproto"
)

// loopSession is one client connection on a loop: it walks the cluster's
// candidates as the connects complete, then lets its Conn relay. It is
// one allocation with the Conn embedded, about 256 bytes for an idle
// connection, and goes back to its loop's free list when the connection
// ends. What only choosing a node needs lives in a dialState, borrowed
// from the loop until the relay commits (see commit).
type loopSession struct {
	evloop.Conn
	st     *loopState
	l      *Listener
	guard  *guard.Guard // nil until admitted (accept_proxy: after the header)
	c      *cluster.Cluster
	n      *cluster.Node // being dialled or relayed to
	d      *dialState
	client netip.AddrPort
	start  int64 // loop clock at accept
	// gen changes each time the session is reused: work posted back from
	// a goroutine (a Redis lookup, a name resolution) checks it.
	gen      uint32
	relaying bool // counted in a node tracker
	holding  bool // n.Stats.Active counts this connection
	awaiting bool // accept_proxy: the header has not come yet
}

// dialState is what choosing a node takes: kept until the relay commits
// (a byte moved, or no early close can happen any more), then reused.
type dialState struct {
	local    netip.AddrPort // the listening socket's address
	a        *cluster.Attempt
	dialAt   int64 // loop clock
	deadline int64 // loop clock: dispatch_timeout
	recorded string
	failed   []*cluster.Node
	tries    int
	lastErr  error
	src      sourceDial // the local address of each dial (F12), when hasSrc
	hasSrc   bool
	dialAddr netip.AddrPort
	hdr      proxyproto.Header // from accept_proxy, when haveHdr
	haveHdr  bool
	relooked bool // looked at a newer cluster version after finding no node
}

// keepFree bounds each loop's free lists of sessions and dial states.
const keepFree = 1024

func (st *loopState) freeSession(ss *loopSession) {
	gen := ss.gen + 1
	*ss = loopSession{gen: gen}
	st.sessions.Put(ss)
}

func (st *loopState) freeDial(d *dialState) {
	if d.a != nil {
		d.a.Done()
	}
	failed := d.failed[:0]
	clear(d.failed)
	*d = dialState{failed: failed}
	st.dials.Put(d)
}

// options are the loop timeouts of cluster version c, shared by its
// connections on this loop.
func (st *loopState) options(c *cluster.Cluster) *evloop.Options {
	if o := st.opts[c]; o != nil {
		return o
	}
	if len(st.opts) >= 64 {
		clear(st.opts) // old cluster versions; their connections keep theirs
	}
	cfg := &c.Config
	o := &evloop.Options{Idle: int64(cfg.IdleTimeout), Fin: int64(cfg.FinTimeout), Early: int64(cfg.EarlyCloseWindow)}
	if c.PortLess {
		o.Early = 0 // port-less clusters never fall over
	}
	st.opts[c] = o
	return o
}

// accepted admits one client and starts choosing its node.
func (a *acceptor) accepted(fd int, peer netip.AddrPort) {
	l := a.l
	s := l.s
	l.Stats.Accepted.Add(1)
	loop := a.st.loop
	set := l.settings.Load()
	client := peer.Addr().Unmap()
	// An accept_proxy listener's clients are admitted on the address
	// their PROXY header names (Preface).
	if v := admitAtAccept(set, client, loop.Time(loop.Now())); !v.OK {
		evloop.Reset(fd)
		l.cap.release()
		s.global.release()
		return
	}
	l.Stats.Active.Add(1)
	s.wg.Add(1)
	ss := a.st.sessions.Get()
	ss.st, ss.l, ss.client, ss.start = a.st, l, netip.AddrPortFrom(client, peer.Port()), loop.Now()
	ss.d = a.st.dials.Get()
	ss.d.local = a.sock.addr
	if !set.cfg.AcceptProxy {
		ss.guard = set.guard
	}
	if err := loop.Attach(&ss.Conn, fd, ss); err != nil {
		evloop.Reset(fd)
		ss.release()
		a.st.freeDial(ss.d)
		a.st.freeSession(ss)
		s.wg.Done()
		return
	}
	if set.cfg.AcceptProxy {
		ss.awaiting = true
		ss.AwaitPreface(proxyHeaderTimeout.Load())
		return
	}
	ss.begin()
}

// errRefused resets an accept_proxy client the guard refused.
var errRefused = errors.New("refused by the abuse guard")

// Preface parses the PROXY header of an accept_proxy listener's client,
// admits the address it names; Greeted then dials.
func (ss *loopSession) Preface(_ *evloop.Conn, b []byte) (int, error) {
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
		ss.d.hdr, ss.d.haveHdr = h, true
		ss.client = netip.AddrPortFrom(h.Src.Addr().Unmap(), h.Src.Port())
	}
	ss.awaiting = false
	g := ss.l.Guard()
	loop := ss.st.loop
	if v := g.Admit(ss.client.Addr(), loop.Time(loop.Now())); !v.OK {
		return 0, errRefused
	}
	ss.guard = g
	return n, nil
}

// Greeted: the header is taken; choose and dial a node.
func (ss *loopSession) Greeted(*evloop.Conn) { ss.begin() }

// PrefaceFailed: no valid header in time, or the guard refused the
// address it named (counted by the guard).
func (ss *loopSession) PrefaceFailed(_ *evloop.Conn, err error) {
	ss.awaiting = false
	if err != errRefused {
		ss.l.Stats.BadProxyHeader.Add(1)
	}
}

// nodeHeader is the PROXY header sent to nodes: the upstream's header's
// addresses, else the client's and the one it connected to.
func (ss *loopSession) nodeHeader() proxyproto.Header {
	if ss.d.haveHdr {
		return ss.d.hdr
	}
	dst := ss.d.local
	if dst.Addr().IsUnspecified() {
		dst = evloop.LocalAddr(ss.ClientFD())
	}
	return proxyproto.Header{Src: ss.client, Dst: dst}
}

// begin looks up the client's affinity record (locally; a miss in shared
// mode asks Redis on a goroutine) and starts dialling.
func (ss *loopSession) begin() {
	c := ss.l.Cluster()
	ss.c = c
	d := ss.d
	loop := ss.st.loop
	d.deadline = ss.start + int64(c.Config.DispatchTimeout)
	ss.SetOptions(ss.st.options(c))
	now := loop.Time(loop.Now())
	d.a = c.Begin(now)
	d.src, d.hasSrc = makeSourceDial(c, ss.client.Addr())
	if c.Affinity != nil {
		if node, ok := c.Affinity.Lookup(ss.client.Addr(), now); ok {
			d.recorded = node
		} else if aff := ss.l.s.aff; aff != nil && aff.Shared() {
			ss.lookupShared(aff, now)
			return
		}
	}
	ss.next()
}

// lookupShared asks Redis (≤ 10 ms) off the loop and resumes on it.
func (ss *loopSession) lookupShared(aff *affinity.Manager, now time.Time) {
	loop, gen := ss.st.loop, ss.gen
	view, client := ss.c.Affinity, ss.client.Addr()
	go func() {
		node, _ := aff.LookupShared(context.Background(), view, client, now)
		loop.Post(func() {
			if ss.gen != gen || ss.Done() {
				return // ended meanwhile (shutdown)
			}
			ss.d.recorded = node
			ss.next()
		})
	}()
}

// next dials the next candidate, synchronously skipping those that fail
// at once, until a connect is under way or none is left.
func (ss *loopSession) next() {
	c, d := ss.c, ss.d
	for {
		var n *cluster.Node
		if d.recorded != "" {
			n = d.a.Recorded(d.recorded, c.PortLess)
			d.recorded = ""
		}
		if n == nil {
			n = d.a.Next(ss.client.Addr())
		}
		if n == nil && !d.relooked {
			// A reconfiguration may have replaced the cluster version
			// while this connection looked at the old one (a node added
			// as the last usable one drained): look once more at the
			// current version.
			if cur := ss.l.Cluster(); cur != c {
				d.relooked = true
				c = ss.switchCluster(cur)
				continue
			}
		}
		if n == nil {
			if errors.Is(d.lastErr, errSourceFamily) {
				ss.l.noSourcePort(d.lastErr)
				ss.end()
				return
			}
			ss.noNode()
			return
		}
		timeout := min(int64(c.Config.ConnectTimeout), d.deadline-ss.st.loop.Now())
		if timeout <= 0 {
			d.lastErr = context.DeadlineExceeded
			ss.noNode()
			return
		}
		if d.tries++; d.tries > 1 {
			n.Stats.FallIns.Add(1)
		}
		n.Stats.Active.Add(1) // a dial in progress counts as active
		ss.n, ss.holding = n, true
		d.dialAt = ss.st.loop.Now()
		addr, ok := n.AddrPort(d.local.Port())
		if !ok {
			ss.resolve(n, timeout)
			return
		}
		if ss.dial(addr, timeout) || !ss.dialError(n, d.lastErr) {
			return
		}
	}
}

// switchCluster moves a connection that found no node to the listener's
// current cluster version.
func (ss *loopSession) switchCluster(c *cluster.Cluster) *cluster.Cluster {
	d := ss.d
	loop := ss.st.loop
	ss.c = c
	ss.SetOptions(ss.st.options(c))
	d.a.Done()
	d.a = c.Begin(loop.Time(loop.Now()))
	for _, f := range d.failed {
		d.a.Exclude(f)
	}
	d.src, d.hasSrc = makeSourceDial(c, ss.client.Addr())
	return c
}

// dial starts connecting to addr, from the next source address of the
// pool when one runs out of ports at once (rotating pools); it reports
// whether a connect is under way, else the error is in d.lastErr.
func (ss *loopSession) dial(addr netip.AddrPort, timeout int64) bool {
	d := ss.d
	d.dialAddr = addr
	d.src.try = 0
	for {
		err := ss.Dial(addr, timeout)
		if err == nil {
			return true
		}
		d.lastErr = err
		if !d.hasSrc || !d.src.moveOn(err) {
			return false
		}
	}
}

// resolve looks a node's host name up off the loop, then dials.
func (ss *loopSession) resolve(n *cluster.Node, timeout int64) {
	loop, gen := ss.st.loop, ss.gen
	hostport := n.Addr(ss.d.local.Port())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout))
		ap, err := resolveTCP(ctx, hostport)
		cancel()
		loop.Post(func() {
			if ss.gen != gen || ss.Done() {
				return
			}
			if err == nil && ss.dial(ap, max(ss.d.deadline-loop.Now(), 1)) {
				return
			}
			if err == nil {
				err = ss.d.lastErr
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
	ss.d.lastErr = err
	ss.drop()
	if localExhaustion(err) {
		// Our own ports or descriptors ran out: not the node's fault,
		// and another node would fail the same way.
		ss.l.noSourcePort(err)
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

func (ss *loopSession) markDown(n *cluster.Node, err error) { ss.l.s.markDown(ss.c, n, err) }

// Prepare sets keepalive on a fresh node socket and binds it to its source
// address, if the cluster has a pool or is transparent.
func (ss *loopSession) Prepare(fd int) error {
	evloop.SetKeepAlive(fd, keepIdle)
	if d := ss.d; d.hasSrc {
		return d.src.prepare(fd, d.dialAddr.Addr().Is6())
	}
	return nil
}

// Connected: the node took the connection. The affinity record is
// written before the first byte moves.
func (ss *loopSession) Connected(conn *evloop.Conn) {
	n, d, c := ss.n, ss.d, ss.c
	loop := ss.st.loop
	now := loop.Time(loop.Now())
	n.MarkUp()
	n.Stats.ConnectMS.Observe(time.Duration(loop.Now() - d.dialAt))
	if c.Affinity != nil && !c.PortLess {
		c.Affinity.Record(ss.client.Addr(), n.Name, now)
	}
	n.Stats.Total.Add(1)
	if !ss.st.track(n) {
		conn.Abort(evloop.ErrAborted)
		return
	}
	ss.relaying = true
	if v := c.Config.ProxyProtocol; v != "" {
		var room [proxyHeaderRoom]byte
		if err := conn.WriteNode(appendProxyHeader(room[:0], v, ss.nodeHeader())); err != nil {
			conn.Abort(err)
			return
		}
	}
	if ss.st.options(c).Early == 0 {
		ss.commit() // no early close to fall over from
	}
}

// commit gives the dial state back once no fall-over can happen: the
// connection stays with its node.
func (ss *loopSession) commit() {
	if ss.d != nil {
		ss.st.freeDial(ss.d)
		ss.d = nil
	}
}

// DialFailed: the connect was refused or timed out.
func (ss *loopSession) DialFailed(_ *evloop.Conn, err error) {
	if ss.dialError(ss.n, err) {
		ss.next()
	}
}

// Moved counts bytes as they are written; the first commits the relay.
func (ss *loopSession) Moved(up, down int) {
	ss.n.Stats.AddBytes(uint64(up), uint64(down))
	if ss.d != nil {
		ss.commit()
	}
}

// errEarlyCloseLoop is logged when a node closed a fresh connection unused.
var errEarlyCloseLoop = errors.New("closed by the node before any byte moved")

// Ended: the relay is over, or the node closed early and the client goes
// on to the next node with the bytes it already sent.
func (ss *loopSession) Ended(_ *evloop.Conn, res evloop.Result) {
	if ss.awaiting {
		// Aborted while awaiting the header (a shutdown): not the
		// upstream's fault, not counted.
		ss.awaiting = false
		ss.finish(res)
		return
	}
	n := ss.n
	if ss.relaying {
		ss.relaying = false
		ss.st.untrack(n)
	}
	ss.drop()
	if res.EarlyClose && ss.d != nil {
		d := ss.d
		n.Stats.Failures.Add(1)
		ss.markDown(n, errEarlyCloseLoop)
		d.failed = append(d.failed, n)
		d.a.Done()
		d.a = ss.c.Begin(time.Now())
		for _, f := range d.failed {
			d.a.Exclude(f)
		}
		ss.next()
		return
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
	ss.Abort(ss.d.lastErr)
}

func (ss *loopSession) release() {
	if ss.guard != nil {
		ss.guard.Release(ss.client.Addr())
	}
	ss.l.Stats.Active.Add(-1)
	ss.l.cap.release()
	ss.l.s.global.release()
}

// finish books the end of the connection and recycles the session.
func (ss *loopSession) finish(res evloop.Result) {
	ss.release()
	s := ss.l.s
	if log := s.log; log.Enabled(context.Background(), slog.LevelDebug) {
		ss.log(log, res)
	}
	ss.commit()
	ss.st.freeSession(ss)
	s.wg.Done()
}

func (ss *loopSession) log(log *slog.Logger, res evloop.Result) {
	node, outcome, cl, tries := "", outcomeNoNode, "", 0
	if ss.n != nil {
		node, outcome = ss.n.Name, outcomeRelayed
	}
	if ss.c != nil {
		cl = ss.c.Name
	}
	if ss.d != nil {
		tries = ss.d.tries
	}
	loop := ss.st.loop
	log.LogAttrs(context.Background(), slog.LevelDebug, "connection",
		slog.String("listener", ss.l.name),
		slog.String("cluster", cl),
		slog.String("client", ss.client.String()),
		slog.String("node", node),
		slog.String("outcome", outcome),
		slog.Int("tries", tries),
		slog.Int64("up", res.Up),
		slog.Int64("down", res.Down),
		slog.Duration("duration", time.Duration(loop.Now()-ss.start)),
		slog.Any("err", res.Err))
}
