package proxy

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/guard"
	"github.com/protobalance/protobalance/internal/proxyproto"
	"github.com/protobalance/protobalance/internal/relay"
)

// proxyHeaderTimeout is how long a listener with accept_proxy waits for the
// whole PROXY header from its upstream after accepting: 5 s, ample for a
// balancer that sends it with its first segment, short enough that silent
// or slow connections do not pile up. Tests shorten it.
var proxyHeaderTimeout atomic.Int64

func init() { proxyHeaderTimeout.Store(int64(5 * time.Second)) }

// outcomeBadProxyHeader and outcomeRefused end connections of accept_proxy
// listeners: no valid header in time, or the guard refused the address the
// header named.
const (
	outcomeBadProxyHeader = "bad_proxy_header"
	outcomeRefused        = "refused"
)

// proxyIn is a session's PROXY protocol state.
type proxyIn struct {
	// expect: the listener has accept_proxy, so dispatch reads the header
	// (and admits the client through the guard) before anything else.
	expect bool
	// hdr is the header received, when it named addresses (not LOCAL).
	hdr  proxyproto.Header
	have bool
	// pending holds client bytes read past the header, sent to the node
	// first.
	pending []byte
}

// admitAtAccept is the guard's verdict at accept. A listener with
// accept_proxy sees only its upstream there: its clients are admitted in
// dispatch, on the address the header names (see readProxyHeader).
func admitAtAccept(st *listenerSettings, client netip.Addr, now time.Time) guard.Verdict {
	if st.cfg.AcceptProxy {
		return guard.Verdict{OK: true}
	}
	return st.guard.Admit(client, now)
}

// awaitProxyHeader marks a session of an accept_proxy listener: it holds no
// guard admission until readProxyHeader grants one.
func (ss *session) awaitProxyHeader(on bool) {
	if on {
		ss.pp.expect = true
		ss.guard = nil
	}
}

// readProxyHeader reads the PROXY header (v1 or v2) that starts the
// connection within proxyHeaderTimeout, takes the client address from it,
// and admits that address through the listener's guard. A missing, late or
// malformed header, or a refused client, ends the session with a reset;
// it reports whether the session goes on.
func (ss *session) readProxyHeader() bool {
	c := ss.client
	c.SetReadDeadline(time.Now().Add(time.Duration(proxyHeaderTimeout.Load())))
	var small [256]byte
	buf := small[:0]
	var h proxyproto.Header
	var n int
	var err error
	for {
		if len(buf) == cap(buf) {
			// Parse returns ErrIncomplete only below MaxLen bytes.
			buf = append(make([]byte, 0, proxyproto.MaxLen), buf...)
		}
		m, rerr := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		h, n, err = proxyproto.Parse(buf)
		if err != proxyproto.ErrIncomplete {
			break
		}
		if rerr != nil {
			err = rerr // closed, reset or late before a whole header
			break
		}
	}
	if err != nil {
		ss.mu.Lock()
		closed := ss.closed // shut down meanwhile: not the upstream's fault
		ss.mu.Unlock()
		if !closed {
			ss.l.Stats.BadProxyHeader.Add(1)
		}
		ss.reset(err, outcomeBadProxyHeader)
		return false
	}
	c.SetReadDeadline(time.Time{})
	if n < len(buf) {
		ss.pp.pending = append([]byte(nil), buf[n:]...)
	}
	if !h.Local {
		// A LOCAL header (the upstream's own health check) keeps the
		// peer's address.
		ss.pp.hdr, ss.pp.have = h, true
		ss.clientIP = h.Src.Addr()
	}
	g := ss.l.Guard()
	if v := g.Admit(ss.clientIP, time.Now()); !v.OK {
		ss.reset(nil, outcomeRefused)
		return false
	}
	ss.guard = g
	return true
}

// reset closes the client with an RST and ends the session before any
// node was chosen.
func (ss *session) reset(err error, outcome string) {
	ss.client.SetLinger(0)
	ss.client.Close()
	ss.finish(ss.l.Cluster(), nil, relay.Result{Err: err}, outcome)
}

// takePending returns the client bytes read past an accept_proxy header,
// once: they go to the first node the relay starts with.
func (ss *session) takePending() []byte {
	p := ss.pp.pending
	ss.pp.pending = nil
	return p
}

// proxyHeaderOut is the header sent to nodes: the addresses of the
// upstream's header, else the client's and the one it connected to.
func (ss *session) proxyHeaderOut() proxyproto.Header {
	if ss.pp.have {
		return ss.pp.hdr
	}
	return proxyproto.Header{
		Src: ss.client.RemoteAddr().(*net.TCPAddr).AddrPort(),
		Dst: ss.client.LocalAddr().(*net.TCPAddr).AddrPort(),
	}
}

// sendFirst writes what a freshly dialled node gets before the relay
// starts: the PROXY header when the cluster has proxy_protocol, then the
// client bytes not yet sent (pending), in one write.
func (ss *session) sendFirst(c *cluster.Cluster, conn *net.TCPConn, pending []byte) error {
	cfg := &c.Config
	var room [proxyHeaderRoom]byte
	var b []byte
	if cfg.ProxyProtocol != "" {
		b = appendProxyHeader(room[:0], cfg.ProxyProtocol, ss.proxyHeaderOut())
	}
	switch {
	case len(pending) == 0:
	case len(b) == 0:
		b = pending
	default:
		b = append(append(make([]byte, 0, len(b)+len(pending)), b...), pending...)
	}
	if len(b) == 0 {
		return nil
	}
	conn.SetWriteDeadline(time.Now().Add(cfg.ConnectTimeout))
	_, err := conn.Write(b)
	conn.SetWriteDeadline(time.Time{})
	return err
}

// proxyHeaderRoom holds any header we send: a v1 line is at most 107
// bytes, a v2 header without TLVs 52.
const proxyHeaderRoom = 128

// appendProxyHeader appends the PROXY header of version ("v1" or "v2") for
// h, on either data path.
func appendProxyHeader(b []byte, version string, h proxyproto.Header) []byte {
	if version == "v1" {
		return proxyproto.AppendV1(b, h)
	}
	return proxyproto.AppendV2(b, h)
}
