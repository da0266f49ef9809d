// Package relay moves bytes between a client connection and a node
// connection once the node has been chosen and dialled. It is the seam
// between connection handling (internal/proxy: selection, dialling,
// fall-over) and the data path, so the goroutine relay here can be replaced
// by an event-loop implementation without touching the rest.
package relay

import (
	"fmt"
	"net"
	"os"
	"time"
)

// Options configures one relayed connection.
type Options struct {
	// IdleTimeout closes the connection when no byte has moved in either
	// direction for this long. 0 = never.
	IdleTimeout time.Duration
	// FinTimeout closes a half-closed connection (one direction finished)
	// when the other direction has been silent for this long. 0 = never.
	FinTimeout time.Duration
	// EarlyClose, when > 0, is the early-close window (F6): if the node
	// closes (FIN or reset) within it before any byte has moved either way,
	// Relay closes only the node connection and returns with EarlyClose
	// set, leaving the client connection open for the caller to send to
	// another node. 0 = off: any close is relayed as usual.
	EarlyClose time.Duration
	// Count, when set, is called from the relaying goroutines as bytes are
	// written: up to the node (client→node) and down to the client
	// (node→client). It must be cheap and safe for concurrent use.
	Count func(up, down int64)
}

// Result reports how a relayed connection ended.
type Result struct {
	Up   int64 // bytes client→node
	Down int64 // bytes node→client
	// EarlyClose reports that the node closed within Options.EarlyClose
	// before any byte moved: the node connection is closed, the client
	// connection is open with no deadline set, and Pending holds any bytes
	// already read from the client (never written to the node), which the
	// caller must send first to the next node.
	EarlyClose bool
	Pending    []byte
	// Err is the first error that ended the relay abnormally (a reset, a
	// timeout, a closed connection), or nil when both directions finished
	// with EOF. Timeouts are ErrIdleTimeout or ErrFinTimeout; a connection
	// closed from outside matches net.ErrClosed; resets match
	// syscall.ECONNRESET (or EPIPE). Test with errors.Is.
	Err error
}

// Relay moves bytes both ways between client and node until both
// directions are done or a timeout fires, then closes both connections.
//
// Half-close is propagated: EOF from one side becomes CloseWrite on the
// other while the other direction keeps flowing. Closing either connection
// from outside (a node set red, shutdown) ends the relay promptly. Relay
// blocks until the relay is over; after it returns, neither connection is
// touched again (the client's, after an early close, is the caller's).
//
// The relay owns both connections for the duration of the call: it replaces
// any read or write deadline set before. The only socket option it may
// change is SO_LINGER 0 on one side, to pass on a reset received from the
// other; keepalive and the like are the caller's.
type Relay interface {
	Relay(client, node *net.TCPConn, opt Options) Result
}

// Errors a Relay reports in Result.Err when one of its timeouts closed the
// connection. Both wrap os.ErrDeadlineExceeded, so callers that only care
// about "some timeout" can test for that.
var (
	ErrIdleTimeout = fmt.Errorf("relay: idle timeout: %w", os.ErrDeadlineExceeded)
	ErrFinTimeout  = fmt.Errorf("relay: fin timeout: %w", os.ErrDeadlineExceeded)
)
