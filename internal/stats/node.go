// Package stats holds the live counters of nodes and listeners that the
// algorithms, the reports and the metrics read. Every method is safe for
// concurrent use and takes no lock on the connection path.
package stats

import (
	"sync/atomic"
	"time"
)

// Node is the live record of one node. The zero value is ready to use.
//
// Who writes what: the proxy writes Active (from the start of a dial to the
// close, so that min-load sees a dial at once), Total, Failures, ConnectMS
// (ConnectMS.Observe on each successful dial) and the byte counters with
// TrafficRate (AddBytes); a balancing policy that reads a rate counts its own
// picks in it (see internal/balance).
type Node struct {
	// Active is the number of open proxied connections through the node.
	Active atomic.Int64
	// Total counts connections that reached the node (dial succeeded).
	Total atomic.Uint64
	// Failures counts failed dials (refused, timed out, closed early).
	Failures atomic.Uint64
	// MarkedDown counts the times the node was marked unavailable after a
	// failed connect or an early close (F6).
	MarkedDown atomic.Uint64
	// FallIns counts connections the node received by fall-over, after a
	// dial to another node failed for them.
	FallIns atomic.Uint64
	// BytesIn counts bytes from clients to the node; BytesOut the reverse.
	BytesIn  atomic.Uint64
	BytesOut atomic.Uint64

	// ConnRate is the recent rate of new connections sent to the node, in
	// picks per second. The conn-rate policy (and min-load when load_rating
	// reads conn_rate) counts each pick here at once, inside Pick, so a burst
	// of concurrent picks spreads; nothing else writes it, so under other
	// algorithms it reads 0 (derive a dashboard rate from Total instead).
	ConnRate Rate
	// TrafficRate is the recent rate of bytes relayed in both directions, in
	// bytes per second: AddBytes feeds it as bytes move, and the
	// traffic-rate policy adds its estimate of a new connection's bytes at
	// the pick (that estimate is not paid back: it acts as a prior
	// proportional to the node's pick rate).
	TrafficRate Rate
	// ConnectMS is the moving average of successful connect times, in
	// milliseconds: the proxy calls ConnectMS.Observe(dial duration).
	ConnectMS EWMA
}

// SetRateWindow sets the decay window of the node's rates (the cluster's
// rate_window); w <= 0 means DefaultRateWindow. The cluster calls it when it
// creates the node and when a reload changes rate_window; policies read
// rates fastest when the node's window equals their Params.RateWindow.
func (n *Node) SetRateWindow(w time.Duration) {
	n.ConnRate.SetWindow(w)
	n.TrafficRate.SetWindow(w)
}

// AddBytes records relayed bytes as they move: in from the client towards
// the node, out from the node towards the client. It feeds BytesIn,
// BytesOut and TrafficRate (one clock read; call it per relayed chunk or
// batch, not per byte).
func (n *Node) AddBytes(in, out uint64) {
	if in != 0 {
		n.BytesIn.Add(in)
	}
	if out != 0 {
		n.BytesOut.Add(out)
	}
	if in+out != 0 {
		n.TrafficRate.Add(float64(in + out))
	}
}

// MeanConnBytes is the mean number of bytes, both directions, per
// connection that reached the node, over its lifetime; ok is false before
// the first connection.
func (n *Node) MeanConnBytes() (mean float64, ok bool) {
	t := n.Total.Load()
	if t == 0 {
		return 0, false
	}
	return float64(n.BytesIn.Load()+n.BytesOut.Load()) / float64(t), true
}

// Listener is the live record of one listener. The zero value is ready to use.
type Listener struct {
	Active   atomic.Int64
	Accepted atomic.Uint64
	// NoNode counts connections closed because no node could take them.
	NoNode atomic.Uint64
	// Refused counts connections refused by a cap (never accepted past it).
	Refused atomic.Uint64
	// NoSourcePort counts connections closed because a dial ran out of
	// local resources (ephemeral ports, descriptors); no node is blamed.
	NoSourcePort atomic.Uint64
	// BadProxyHeader counts connections of an accept_proxy listener closed
	// because their PROXY header was malformed, missing or late.
	BadProxyHeader atomic.Uint64
}
