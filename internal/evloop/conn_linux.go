//go:build linux

package evloop

import (
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Owner is the proxy's side of a loop connection: it chooses nodes and
// keeps the books; the Conn moves bytes. Every method is called on the
// connection's loop.
type Owner interface {
	// Prepare sets up a fresh node socket before it connects (keepalive,
	// source address, transparent bind). An error abandons the dial.
	Prepare(fd int) error
	// Connected reports that the node accepted the connection; relaying
	// starts when it returns. The owner may WriteNode a header first.
	Connected(c *Conn)
	// DialFailed reports a failed or timed-out connect; the node socket is
	// closed. The owner dials another node or ends the connection.
	DialFailed(c *Conn, err error)
	// Moved reports bytes written to the node (up) and to the client (down).
	Moved(up, down int)
	// Preface is offered the client's first bytes while the connection
	// awaits a preface (see AwaitPreface): it returns how many bytes the
	// preface took (0: not whole yet) or an error that resets the client.
	// It must not dial or end the connection.
	Preface(c *Conn, b []byte) (int, error)
	// Greeted reports that a whole preface was taken; the bytes after it
	// stay queued for the node. The owner dials from here.
	Greeted(c *Conn)
	// PrefaceFailed reports that the preface failed (Preface's own error,
	// none in time, too long, closed, a read error), before the client is
	// reset and Ended is called: whoever sees the reset finds the failure
	// booked.
	PrefaceFailed(c *Conn, err error)
	// Ended reports the end of the relay. With res.EarlyClose the node
	// socket is closed and the client's is open: the owner dials another
	// node (the client bytes read meanwhile go to it first) or calls Abort.
	// Otherwise both sockets are closed, and c must not be used again.
	Ended(c *Conn, res Result)
}

// Options are a connection's timeouts, in loop-clock nanoseconds (0 = off).
type Options struct {
	Idle  int64 // no byte either way for this long: close
	Fin   int64 // one direction finished and no byte for this long: close
	Early int64 // node closes this soon after connecting, before any byte moved: fall over
}

// Result says how a relay ended.
type Result struct {
	Up, Down   int64
	EarlyClose bool
	Err        error
}

// Errors in Result.Err for the loop's own timeouts.
var (
	ErrIdleTimeout    = errorString("idle timeout")
	ErrFinTimeout     = errorString("fin timeout")
	ErrConnectTimeout = errorString("connect timeout")
	ErrAborted        = errorString("closed by the balancer")
	ErrPrefaceTimeout = errorString("no preface in time")
	ErrPrefaceLong    = errorString("preface too long")
	ErrPrefaceEOF     = errorString("closed before the preface was whole")
)

type errorString string

func (e errorString) Error() string { return string(e) }

// Connection states.
const (
	// stWaiting: the owner is choosing a node (a new connection, a
	// lookup off the loop, after a failed dial or an early close). Client
	// events only mark readiness.
	stWaiting uint8 = iota
	stPreface       // reading the client's preface (a PROXY header)
	stDialing
	stRelaying
	stDone
)

// side indexes per-socket flags.
const (
	client = 0
	node   = 1
)

// Socket readiness as learnt from edge-triggered events: set by an event,
// cleared when a call returns EAGAIN (or a short read proves the socket
// empty).
const (
	fRead  uint8 = 1 << iota // readable
	fWrite                   // writable
	fRDHup                   // peer finished sending: a short read means EOF
)

// Conn is one proxied connection on a loop: the client socket, the node
// socket once dialled, and the two directions between them. An idle Conn
// holds no buffer and no pipe: 152 bytes, meant to be embedded in its
// owner's connection state (one allocation per connection).
type Conn struct {
	loop        *Loop
	owner       Owner
	opt         *Options // shared by the connections of a cluster version
	timer       Timer
	connectedAt int64
	active      int64    // loop clock of the last byte moved
	up, down    dir      // up: client → node
	fd          [2]int32 // client, node; -1 when closed
	flags       [2]uint8
	state       uint8
	moved       bool // a byte was written to either side
}

// dir is one direction of a relay.
type dir struct {
	bytes int64
	io    *dirIO // borrowed while bytes are pending (see Loop.getIO)
	bulk  bool   // moved more than bulkAfter: splice from now on
	eof   bool   // the source finished
	shut  bool   // the destination was shut for writing
}

// dirIO is what a direction holds only while bytes move through it.
type dirIO struct {
	buf *buffer
	off int32 // start of the pending bytes in buf
	n   int32 // pending bytes in buf
	p   *pipe
	inP int32 // pending bytes in p
}

// pending reports whether bytes wait in the direction's buffer or pipe.
func (d *dir) pending() bool { return d.io != nil && (d.io.n > 0 || d.io.inP > 0) }

// bulkAfter is how many bytes a direction copies through a buffer before
// it switches to splice(2): short exchanges save the pipe's extra calls,
// bulk flows the copy to user space.
const bulkAfter = 64 << 10

// turnBudget bounds the bytes one connection moves per loop turn, so a
// bulk flow cannot starve the loop's other connections.
const turnBudget = 256 << 10

// noOptions is the options of a connection whose owner set none.
var noOptions Options

// Attach takes an accepted client socket (non-blocking) into the loop as
// c, which must be zero or ended (c is usually embedded in the owner).
func (l *Loop) Attach(c *Conn, fd int, o Owner) error {
	*c = Conn{loop: l, owner: o, opt: &noOptions, fd: [2]int32{int32(fd), -1}}
	return l.register(fd, c)
}

// Each calls f for every connection of the loop (f may end them). It walks
// the descriptor table: for the rare events that need it (a node turned
// red, shutdown), not for every connection.
func (l *Loop) Each(f func(c *Conn)) {
	for fd := range l.table {
		// A connection is visited through its client socket only.
		if c := l.table[fd].c; c != nil && int(c.fd[client]) == fd {
			f(c)
		}
	}
}

// Done reports whether the connection has ended (both sockets closed).
func (c *Conn) Done() bool { return c.state == stDone }

// Owner is the connection's owner.
func (c *Conn) Owner() Owner { return c.owner }

// ClientFD is the client socket (for getsockname and the like).
func (c *Conn) ClientFD() int { return int(c.fd[client]) }

// SetOptions sets the timeouts (before Dial); opt is shared, not copied,
// and must not change while in use.
func (c *Conn) SetOptions(opt *Options) { c.opt = opt }

// Dial starts connecting to addr; the outcome arrives as Connected or
// DialFailed. A call that fails at once (no descriptor, no local port,
// Prepare) returns its error and changes nothing.
func (c *Conn) Dial(addr netip.AddrPort, timeout int64) error {
	if c.state == stDone || c.fd[node] >= 0 {
		return ErrAborted
	}
	fd, e := rawSocket(addr)
	if e != 0 {
		return e
	}
	if err := c.owner.Prepare(fd); err != nil {
		rawClose(fd)
		return err
	}
	if e := rawConnect(fd, addr); e != 0 && e != unix.EINPROGRESS {
		rawClose(fd)
		return e
	}
	if err := c.loop.register(fd, c); err != nil {
		rawClose(fd)
		return err
	}
	c.fd[node] = int32(fd)
	c.flags[node] = 0
	c.state = stDialing
	c.loop.Arm(&c.timer, c, c.loop.now+timeout)
	return nil
}

// WriteNode writes b to the freshly connected node (a PROXY header) from
// Connected. A fresh socket's buffer takes any header whole; anything
// less is an error.
func (c *Conn) WriteNode(b []byte) error {
	n, e := rawWrite(int(c.fd[node]), b)
	if e != 0 {
		return e
	}
	if n != len(b) {
		return syscall.EAGAIN
	}
	return nil
}

// AwaitPreface makes the connection read the client's first bytes and
// offer them to Owner.Preface until it takes a whole preface, within
// timeout; the client is reset when none comes.
func (c *Conn) AwaitPreface(timeout int64) {
	c.state = stPreface
	c.loop.Arm(&c.timer, c, c.loop.now+timeout)
	if c.flags[client]&fRead != 0 {
		c.readPreface()
	}
}

func (c *Conn) readPreface() {
	d := &c.up
	for c.state == stPreface {
		io := c.loop.ioOf(d)
		if io.buf == nil {
			io.buf = c.loop.getBuf()
			io.off, io.n = 0, 0
		}
		if int(io.n) == len(io.buf) {
			c.prefaceFailed(ErrPrefaceLong)
			return
		}
		r, e := rawRead(int(c.fd[client]), io.buf[io.n:])
		switch {
		case e == unix.EAGAIN:
			c.flags[client] &^= fRead
			return
		case e != 0:
			c.prefaceFailed(e)
			return
		case r == 0:
			c.prefaceFailed(ErrPrefaceEOF)
			return
		}
		io.n += int32(r)
		used, err := c.owner.Preface(c, io.buf[:io.n])
		if err != nil {
			c.prefaceFailed(err)
			return
		}
		if used > 0 {
			// The preface is consumed; the bytes after it stay for the
			// node. Only then is the owner told: it may end (and reuse)
			// the connection from Greeted.
			io.off = int32(used)
			io.n -= int32(used)
			c.releaseDir(d)
			c.loop.Disarm(&c.timer)
			c.state = stWaiting
			c.owner.Greeted(c)
			return
		}
	}
}

func (c *Conn) prefaceFailed(err error) {
	c.owner.PrefaceFailed(c, err)
	c.resetClient(err)
}

// resetClient ends the connection with a reset to the client.
func (c *Conn) resetClient(err error) {
	if fd := c.fd[client]; fd >= 0 {
		setLinger0(int(fd))
	}
	c.end(err)
}

// Event handles the epoll events of either socket.
func (c *Conn) Event(fd int, ev uint32) {
	s := client
	if int32(fd) == c.fd[node] {
		s = node
	}
	if ev&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
		c.flags[s] |= fRead
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		c.flags[s] |= fWrite
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		c.flags[s] |= fRDHup
	}
	switch c.state {
	case stPreface:
		if s == client {
			c.readPreface()
		}
	case stDialing:
		if s == node && ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			c.connectDone(ev)
		}
	case stRelaying:
		c.pump()
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 && c.state == stRelaying {
			c.watch(s)
		}
	}
}

// watch looks for a reset on side s that pump cannot see because it no
// longer reads from s (its EOF came earlier) nor writes to it: a reset
// arriving after a FIN is passed on to the other side all the same.
func (c *Conn) watch(s int) {
	if e := rawSoError(int(c.fd[s])); e != 0 {
		c.fail(e, s)
	}
}

func (c *Conn) connectDone(ev uint32) {
	// Writable without an error or hang-up is a connect that succeeded:
	// SO_ERROR is read only when there is something to read.
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		e := rawSoError(int(c.fd[node]))
		if e == 0 {
			e = unix.ECONNREFUSED
		}
		c.dialFailed(e)
		return
	}
	c.loop.Disarm(&c.timer)
	c.owner.Connected(c)
	if c.state != stDialing { // the owner aborted
		return
	}
	c.state = stRelaying
	c.connectedAt = c.loop.now
	c.active = c.loop.now
	c.rearm()
	c.pump()
}

func (c *Conn) dialFailed(err error) {
	c.loop.Disarm(&c.timer)
	c.loop.Close(int(c.fd[node]))
	c.fd[node] = -1
	c.state = stWaiting
	c.owner.DialFailed(c, err)
}

// Timeout is the connection's timer: connect timeout while dialling, idle
// and fin timeouts while relaying (re-armed lazily: activity only moves
// c.active).
func (c *Conn) Timeout(now int64) {
	switch c.state {
	case stPreface:
		c.prefaceFailed(ErrPrefaceTimeout)
	case stDialing:
		c.dialFailed(ErrConnectTimeout)
	case stRelaying:
		when, err := c.deadline()
		if when > now {
			c.loop.Arm(&c.timer, c, when)
			return
		}
		c.end(err)
	}
}

// deadline is when the relay times out, and which timeout that is.
func (c *Conn) deadline() (int64, error) {
	const never = 1<<63 - 1
	when, err := int64(never), error(nil)
	if c.opt.Idle > 0 {
		when, err = c.active+c.opt.Idle, ErrIdleTimeout
	}
	if c.opt.Fin > 0 && (c.up.shut || c.down.shut) {
		if w := c.active + c.opt.Fin; w < when {
			when, err = w, ErrFinTimeout
		}
	}
	return when, err
}

func (c *Conn) rearm() {
	if when, err := c.deadline(); err != nil {
		c.loop.Arm(&c.timer, c, when)
	} else {
		c.loop.Disarm(&c.timer)
	}
}

// Run continues a relay that stopped at its turn budget.
func (c *Conn) Run() {
	if c.state == stRelaying {
		c.pump()
	}
}

// pump moves bytes both ways until both sockets would block, the budget
// is spent, or the relay ends.
func (c *Conn) pump() {
	budget := turnBudget
	finBefore := c.up.shut || c.down.shut
	for {
		a, at, err := c.move(&c.up, client, node, &budget)
		if err != nil {
			c.fail(err, at)
			return
		}
		b, at, err := c.move(&c.down, node, client, &budget)
		if err != nil {
			c.fail(err, at)
			return
		}
		if c.state != stRelaying {
			return
		}
		if c.up.shut && c.down.shut {
			c.end(nil)
			return
		}
		if !a && !b {
			break
		}
		if budget <= 0 {
			c.loop.Later(c)
			break
		}
	}
	if !finBefore && (c.up.shut || c.down.shut) {
		c.rearm() // the fin timeout may now come first
	}
}

// fail ends the relay on a socket error at side at: a reset (or a write
// to a socket its peer reset) is passed on by closing the other side with
// RST too.
func (c *Conn) fail(err error, at int) {
	if c.earlyClose(at) {
		return
	}
	if err != errEarlyEOF {
		if fd := c.fd[1-at]; fd >= 0 {
			setLinger0(int(fd))
		}
	}
	c.end(err)
}

// errEarlyEOF is move's signal that the node sent EOF in the early window.
var errEarlyEOF = errorString("node closed early")

// earlyClose handles a node that closed (EOF or reset) within the early
// window before any byte moved: only the node socket is closed.
func (c *Conn) earlyClose(from int) bool {
	if from != node || c.moved || c.opt.Early == 0 || c.loop.now-c.connectedAt > c.opt.Early {
		return false
	}
	c.loop.Disarm(&c.timer)
	c.loop.Close(int(c.fd[node]))
	c.fd[node] = -1
	c.dropDir(&c.down)
	c.down = dir{}
	// The next node must see the client's EOF too.
	c.up.shut = false
	c.state = stWaiting
	c.owner.Ended(c, Result{EarlyClose: true})
	return true
}

// move makes progress on one direction: writes what is pending, reads
// more, shuts the destination after the source's EOF. It reports whether
// anything changed, or the error that ends the relay and the side it
// happened at.
func (c *Conn) move(d *dir, src, dst int, budget *int) (progress bool, at int, err error) {
	for *budget > 0 {
		// Flush pending bytes first.
		if d.pending() {
			if c.flags[dst]&fWrite == 0 {
				return progress, 0, nil
			}
			w, e := c.write(d, dst)
			if e == unix.EAGAIN {
				c.flags[dst] &^= fWrite
				return progress, 0, nil
			}
			if e != 0 {
				return progress, dst, e
			}
			if w > 0 {
				progress = true
				c.moved = true
				c.active = c.loop.now
				d.bytes += int64(w)
				*budget -= w
				if src == client {
					c.owner.Moved(w, 0)
				} else {
					c.owner.Moved(0, w)
				}
			}
			if d.pending() {
				continue // partial write: try again (EAGAIN clears fWrite)
			}
			c.releaseDir(d)
		}
		if d.eof {
			if !d.shut {
				// Passing a FIN on commits the relay like a byte: a
				// node that closes after the client finished is
				// answering, not failing (no early close from now on).
				d.shut = true
				progress = true
				c.moved = true
				c.owner.Moved(0, 0)
				// When the other direction is over too, the close that
				// follows sends the FIN: no shutdown call (dst's own
				// EOF came, so it holds no unread byte to turn the close
				// into a reset).
				if o := c.other(d); o.eof && o.shut {
					return progress, 0, nil
				}
				if e := rawShutdown(int(c.fd[dst]), unix.SHUT_WR); e != 0 && e != unix.ENOTCONN {
					return progress, dst, e
				}
			}
			return progress, 0, nil
		}
		if c.flags[src]&fRead == 0 {
			return progress, 0, nil
		}
		r, e := c.read(d, src)
		switch {
		case e == unix.EAGAIN:
			c.flags[src] &^= fRead
			c.releaseDir(d)
			return progress, 0, nil
		case e != 0:
			return progress, src, e
		case r == 0:
			d.eof = true
			progress = true
			if src == node && c.earlyCandidate() {
				return progress, node, errEarlyEOF
			}
		default:
			progress = true
		}
	}
	return progress, 0, nil
}

// other is the direction opposite d.
func (c *Conn) other(d *dir) *dir {
	if d == &c.up {
		return &c.down
	}
	return &c.up
}

// earlyCandidate reports whether a node EOF now is an early close.
func (c *Conn) earlyCandidate() bool {
	return !c.moved && c.opt.Early > 0 && c.loop.now-c.connectedAt <= c.opt.Early
}

// read fills d from src: into a buffer, or a pipe once the direction is
// bulk. d has nothing pending.
func (c *Conn) read(d *dir, src int) (int, syscall.Errno) {
	fd := int(c.fd[src])
	io := c.loop.ioOf(d)
	if d.bulk && io.p == nil {
		io.p = c.loop.getPipe()
	}
	if io.p != nil {
		n, e := rawSplice(fd, io.p.w, pipeSize)
		if e == unix.EINVAL {
			// Not spliceable: buffers from now on.
			c.loop.putPipe(io.p, 0)
			io.p, d.bulk = nil, false
			return c.read(d, src)
		}
		if e != 0 {
			return 0, e
		}
		// No short-read shortcut here: splice stops when the pipe's slots
		// are used up, with data still queued on the socket.
		io.inP += int32(n)
		return n, 0
	}
	if io.buf == nil {
		io.buf = c.loop.getBuf()
		io.off = 0
	}
	n, e := rawRead(fd, io.buf[io.off+io.n:])
	if e != 0 {
		return 0, e
	}
	io.n += int32(n)
	if n > 0 && int(io.off+io.n) < len(io.buf) {
		// A short read drained the socket: no need for the call that
		// would return EAGAIN. With the peer's FIN already seen
		// (EPOLLRDHUP), it also proves the next read would be EOF:
		// the FIN came after every byte it follows.
		c.flags[src] &^= fRead
		if c.flags[src]&fRDHup != 0 {
			d.eof = true
		}
	}
	return n, 0
}

func (c *Conn) write(d *dir, dst int) (int, syscall.Errno) {
	fd := int(c.fd[dst])
	io := d.io
	if io.inP > 0 {
		n, e := rawSplice(io.p.r, fd, int(io.inP))
		if e != 0 {
			return 0, e
		}
		io.inP -= int32(n)
		return n, 0
	}
	n, e := rawWrite(fd, io.buf[io.off:io.off+io.n])
	if e != 0 {
		return 0, e
	}
	io.off += int32(n)
	io.n -= int32(n)
	if io.n == 0 {
		io.off = 0
	}
	if d.bytes+int64(n) > bulkAfter {
		d.bulk = true
	}
	return n, 0
}

// releaseDir gives back an empty direction's buffer, pipe and dirIO.
func (c *Conn) releaseDir(d *dir) {
	io := d.io
	if io == nil {
		return
	}
	if io.buf != nil && io.n == 0 {
		c.loop.putBuf(io.buf)
		io.buf = nil
		io.off = 0
	}
	if io.p != nil && io.inP == 0 {
		c.loop.putPipe(io.p, 0)
		io.p = nil
	}
	if io.buf == nil && io.p == nil {
		c.loop.putIO(io)
		d.io = nil
	}
}

// Abort ends the connection at once from the loop (node red, shutdown,
// the owner giving up): both sockets are closed.
func (c *Conn) Abort(err error) {
	if c.state == stDone {
		return
	}
	c.end(err)
}

// end closes both sockets and reports the result.
func (c *Conn) end(err error) {
	if c.state == stDone {
		return
	}
	c.state = stDone
	l := c.loop
	l.Disarm(&c.timer)
	for s, fd := range c.fd {
		if fd >= 0 {
			l.Close(int(fd))
			c.fd[s] = -1
		}
	}
	c.dropDir(&c.up)
	c.dropDir(&c.down)
	// The sockets are closed before the owner books the end: whoever sees
	// the connection counted as over finds its resets already sent. c may
	// be reused once Ended returns.
	c.owner.Ended(c, Result{Up: c.up.bytes, Down: c.down.bytes, Err: err})
}

// dropDir gives back a direction's buffer and pipe, pending bytes or not.
func (c *Conn) dropDir(d *dir) {
	io := d.io
	if io == nil {
		return
	}
	if io.buf != nil {
		c.loop.putBuf(io.buf)
	}
	if io.p != nil {
		c.loop.putPipe(io.p, int(io.inP))
	}
	c.loop.putIO(io)
	d.io = nil
}
