package relay

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Goroutine is the goroutine-per-direction Relay. The zero value is ready
// to use and safe for concurrent use by any number of connections.
//
// On Linux each direction parks in syscall.RawConn.Read holding nothing but
// its socket; a 32 KiB buffer (small flows) or a pipe for splice(2) (a
// direction past 64 KiB) is borrowed from a process-wide pool only while
// bytes are in hand, and given back as soon as the source runs dry. An idle
// relayed connection therefore costs its two sockets, two parked goroutines
// (one of them the caller's, blocked in Relay) and the session, and no
// descriptor beyond the sockets. Elsewhere the portable fallback uses plain
// Read/Write loops and holds a buffer per direction for the whole call.
type Goroutine struct{}

var _ Relay = Goroutine{}

// NewGoroutine returns the goroutine relay; the same as Goroutine{}.
func NewGoroutine() Relay { return Goroutine{} }

// Relay implements Relay. The client→node direction runs on a fresh
// goroutine (copyClientToNode) and node→client on the caller's
// (copyNodeToClient), which Relay blocks anyway. Parked in RawConn.Read
// rather than in a wait, the caller's stack settles at the same size
// (measured: 2 KiB for a fresh caller, 4 KiB for one that first used
// 8 KiB), so running a direction there saves a goroutine per connection.
// The directions arm their own deadlines: the deep timer code runs while
// they are awake, not on a stack that then sits parked at its peak.
func (Goroutine) Relay(client, node *net.TCPConn, opt Options) Result {
	s, err := startSession(client, node, opt)
	if err != nil {
		return Result{Err: err}
	}
	s.copyNodeToClient()
	s.wg.Wait()
	if s.early.Load() == earlyAborted {
		_ = client.SetDeadline(time.Time{})
		return Result{EarlyClose: true, Pending: s.pendingUp}
	}
	s.closeBoth() // already closed on every path; kept for the contract
	return Result{Up: s.up.n, Down: s.down.n, Err: s.err}
}

// startSession sets up the session and starts the client→node direction;
// on error it closes both conns.
func startSession(client, node *net.TCPConn, opt Options) (*session, error) {
	s := &session{client: client, node: node, opt: opt, epoch: time.Now()}
	s.timed = opt.IdleTimeout > 0 || opt.FinTimeout > 0
	if opt.EarlyClose <= 0 {
		s.early.Store(earlyCommitted)
	}
	s.up = direction{s: s, src: client, dst: node, other: &s.down, up: true}
	s.down = direction{s: s, src: node, dst: client, other: &s.up}
	for _, d := range []*direction{&s.up, &s.down} {
		if err := d.init(); err != nil {
			s.closeBoth()
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.copyClientToNode()
	return s, nil
}

// Timeouts here are socket deadlines, that is the runtime's own timers, and
// not an ebtree queue: the runtime keeps one timer heap per P, re-arms a
// deadline without allocating, and wakes exactly the parked goroutine; a
// queue of our own would need a goroutine to run it and a wake-up path into
// the parked directions. The event-loop data path, which has no parked
// goroutines, is where a per-loop ebtree timer queue pays (issue 11).

// session is the shared state of one relayed connection.
type session struct {
	client, node *net.TCPConn
	opt          Options
	epoch        time.Time // monotonic origin of last
	timed        bool      // a timeout is set, so last must be kept
	// last is when a byte was last written, or a FIN last seen, in either
	// direction, in nanoseconds since epoch.
	last atomic.Int64
	wg   sync.WaitGroup // the client→node goroutine

	// mu guards done, ended and err, and serialises deadline arming: a
	// direction re-arming itself must not undo the fin deadline that the
	// other direction sets when it finishes.
	mu    sync.Mutex
	done  int   // directions finished with EOF
	ended bool  // both conns are being closed; later errors are ignored
	err   error // first abnormal end

	up, down direction // client→node, node→client

	// early is the early-close state (see Options.EarlyClose); pendingUp
	// holds client bytes read but not written when it was aborted.
	early     atomic.Int32
	pendingUp []byte
}

// Early-close states: while open, a close by the node before any byte
// moved is a fall-over; the first byte either way commits the relay.
const (
	earlyOpen int32 = iota
	earlyCommitted
	earlyAborted
)

// commit records that a byte is about to move (or a FIN from the client
// arrived); false means the node's early close won the race and the
// caller must not touch the node.
func (s *session) commit() bool {
	for {
		switch v := s.early.Load(); v {
		case earlyCommitted:
			return true
		case earlyAborted:
			return false
		default:
			if s.early.CompareAndSwap(v, earlyCommitted) {
				return true
			}
		}
	}
}

// abortEarly is called when the node closed: if nothing has moved and the
// window is still open, the relay ends as an early close — the node conn
// is closed, and the client direction is woken (by a deadline in the past)
// without closing the client.
func (s *session) abortEarly() bool {
	if s.early.Load() != earlyOpen || time.Since(s.epoch) >= s.opt.EarlyClose {
		return false
	}
	s.mu.Lock()
	if s.ended || !s.early.CompareAndSwap(earlyOpen, earlyAborted) {
		s.mu.Unlock()
		return false
	}
	s.ended = true // later errors are ours, and start() arms nothing
	s.mu.Unlock()
	_ = s.node.Close()
	_ = s.client.SetReadDeadline(time.Unix(1, 0))
	return true
}

func (s *session) copyClientToNode() {
	defer s.wg.Done()
	s.up.start()
	s.up.copy()
}

func (s *session) copyNodeToClient() {
	s.down.start()
	s.down.copy()
}

// start arms d's first deadline (the idle timeout from the session start),
// replacing any deadline the caller left, before d first waits. Under s.mu,
// so that it cannot undo a fin deadline set by a direction that finished
// already.
func (d *direction) start() {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		d.arm(s.deadlineLocked())
	}
}

func (s *session) closeBoth() {
	_ = s.client.Close()
	_ = s.node.Close()
}

// touch records activity now. Called once per write batch and at a FIN, so
// one monotonic clock read per batch is the whole per-byte timeout cost.
func (s *session) touch() {
	if s.timed {
		s.last.Store(int64(time.Since(s.epoch)))
	}
}

// end ends the relay with err unless it has already ended: both conns are
// closed, which wakes the other direction with net.ErrClosed. abort, when
// set, is closed with SO_LINGER 0 so that it sends a reset: the peer of the
// other side reset us and we pass it on.
func (s *session) end(err error, abort *net.TCPConn) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended, s.err = true, err
	s.mu.Unlock()
	if abort != nil {
		_ = abort.SetLinger(0)
	}
	s.closeBoth()
}

// finish handles EOF on d.src: CloseWrite on d.dst, and, when the other
// direction is still running, the switch to the fin timeout. It reports
// whether d should go on watching its source (see direction.copy); when
// both directions are done it closes both conns itself.
func (s *session) finish(d *direction) (watch bool) {
	if err := d.dst.CloseWrite(); err != nil {
		s.end(fmt.Errorf("relay: close write: %w", err), nil)
		return false
	}
	s.touch()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.done++
	if s.done == 2 {
		s.ended = true
		s.closeBoth()
		return false
	}
	_ = d.src.SetReadDeadline(time.Time{})
	d.other.arm(s.deadlineLocked())
	return true
}

// expired is called by d when its read or write wait hit its deadline. When
// a byte moved recently enough it re-arms d from the last activity and
// returns nil; otherwise it returns the timeout that ended the connection.
func (s *session) expired(d *direction) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit, err := s.limitLocked()
	if limit > 0 && time.Since(s.epoch) >= time.Duration(s.last.Load())+limit {
		return err
	}
	d.arm(s.deadlineLocked())
	return nil
}

// limitLocked returns the inactivity limit in force and the error reported
// when it is reached: FinTimeout once a direction has finished (if it is
// the shorter), IdleTimeout otherwise; 0 means none.
func (s *session) limitLocked() (time.Duration, error) {
	idle, fin := s.opt.IdleTimeout, s.opt.FinTimeout
	if s.done > 0 && fin > 0 && (idle <= 0 || fin < idle) {
		return fin, ErrFinTimeout
	}
	if idle > 0 {
		return idle, ErrIdleTimeout
	}
	return 0, nil
}

// deadlineLocked is the instant the limit in force runs out, counted from
// the last activity; zero when there is no limit.
func (s *session) deadlineLocked() time.Time {
	limit, _ := s.limitLocked()
	if limit <= 0 {
		return time.Time{}
	}
	return s.epoch.Add(time.Duration(s.last.Load()) + limit)
}

// direction copies one way, src → dst. n is written only by the direction's
// goroutine and read by Relay after that goroutine has finished.
type direction struct {
	s        *session
	src, dst *net.TCPConn
	other    *direction
	up       bool  // client→node, for Options.Count
	n        int64 // bytes written to dst
	dirSys         // platform part: see direction_linux.go, direction_other.go
}

// arm sets the deadline of both waits of d: reading src and writing dst.
// Callers hold s.mu (or run before the goroutines start).
func (d *direction) arm(t time.Time) {
	_ = d.src.SetReadDeadline(t)
	_ = d.dst.SetWriteDeadline(t)
}

// wrote accounts n bytes written to dst.
func (d *direction) wrote(n int) {
	d.n += int64(n)
	d.s.touch()
	if c := d.s.opt.Count; c != nil {
		if d.up {
			c(int64(n), 0)
		} else {
			c(0, int64(n))
		}
	}
}

// waitFailed handles an error from a wait on src or dst (a RawConn or
// Read/Write call): a deadline is re-checked against the last activity and
// may be re-armed (true: carry on); anything else, typically net.ErrClosed,
// ends the relay.
func (d *direction) waitFailed(err error) (again bool) {
	if d.s.early.Load() == earlyAborted {
		return false // woken on purpose by abortEarly
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if err = d.s.expired(d); err == nil {
			return true
		}
	}
	d.s.end(err, nil)
	return false
}

// failed ends the relay after the syscall op on the src (read) or dst
// (write) side returned err. A reset on one side is passed on to the other.
func (d *direction) failed(op string, err error) {
	var abort *net.TCPConn
	if isReset(err) {
		abort = d.dst
		if op == "write" {
			abort = d.src
		}
	}
	side := "client"
	if (op == "read") != d.up {
		side = "node"
	}
	d.s.end(fmt.Errorf("relay: %s %s: %w", op, side, err), abort)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
