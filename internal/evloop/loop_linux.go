//go:build linux

package evloop

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Handler receives the epoll events of a descriptor registered with a loop.
type Handler interface {
	// Event is called on the loop with the epoll event bits of fd.
	Event(fd int, events uint32)
}

// Runner is work a loop does again on its next turn (see Loop.Later):
// edge-triggered events do not repeat, so whoever stops short of EAGAIN
// to be fair to others must come back by itself.
type Runner interface {
	Run()
}

// entry is one connection socket of the loop's table (16 bytes: the table
// spans every descriptor number, in each loop). seq tells a current event
// from a stale one for a descriptor number closed and reused meanwhile.
type entry struct {
	c   *Conn
	seq uint32
}

// other is a descriptor that is not a connection's (a listening socket).
type other struct {
	h   Handler
	seq uint32
}

// Loop is one event loop: an epoll set of raw non-blocking sockets, a timer
// wheel and a command queue, driven by one goroutine. Everything registered
// with a loop is touched by that goroutine only; other goroutines talk to
// it through Post.
type Loop struct {
	id   int
	epfd int
	// ep is epfd made non-blocking and nested in Go's netpoller: the loop
	// goroutine parks in RawConn.Read on it like any network goroutine and
	// drains it with epoll_wait(0), so no thread sits blocked in
	// epoll_wait and the runtime schedules the loop like the rest.
	ep    *os.File
	epRaw syscall.RawConn
	evfd  int // eventfd: wakes the loop for posted commands

	table  []entry // connection sockets by descriptor
	others map[int]other
	seq    uint32
	evs    [128]unix.EpollEvent
	n      int // events collected by the last poll

	base  time.Time
	now   int64 // monotonic ns since base, read once per turn
	wheel wheel
	armed int64 // the read deadline set on ep (0 = none)

	later []Runner // work carried to the next turn
	bufs  FreeList[buffer]
	pipes []*pipe
	ios   FreeList[dirIO]

	mu      sync.Mutex // guards cmds, spare, stopped, and writes to evfd
	stopped bool
	started atomic.Bool
	cmds    []func()
	spare   []func()
	waiting atomic.Bool // cmds non-empty and the eventfd written

	quit chan struct{}
	done chan struct{}
}

// New creates a loop; Start runs it.
func New(id int) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &Loop{id: id, epfd: epfd, evfd: evfd, base: time.Now(), quit: make(chan struct{}), done: make(chan struct{})}
	l.table = make([]entry, tableSize())
	l.others = make(map[int]other)
	l.bufs.Max, l.ios.Max = keepBufs, keepBufs
	l.wheel.init(0)
	if e := epollAdd(epfd, evfd, unix.EPOLLIN|unix.EPOLLET, 0); e != 0 {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, e
	}
	l.ep = os.NewFile(uintptr(epfd), "epoll")
	if l.epRaw, err = l.ep.SyscallConn(); err != nil {
		l.ep.Close()
		unix.Close(evfd)
		return nil, err
	}
	return l, nil
}

// tableSize is the descriptor table's length: the soft descriptor limit,
// which no descriptor number can reach.
func tableSize() int {
	var r unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &r) != nil || r.Cur > 1<<20 {
		return 1 << 16
	}
	return int(r.Cur) + 1
}

// Now is the loop's clock, read once per turn: monotonic nanoseconds.
func (l *Loop) Now() int64 { return l.now }

// Time converts a loop clock reading to wall time.
func (l *Loop) Time(ns int64) time.Time { return l.base.Add(time.Duration(ns)) }

func (l *Loop) nextSeq() uint32 {
	l.seq++
	if l.seq == 0 {
		l.seq = 1
	}
	return l.seq
}

// register adds a connection socket, non-blocking, to the loop's epoll set
// for read, write and peer-close events, edge-triggered, once for its
// whole life.
func (l *Loop) register(fd int, c *Conn) error {
	if fd >= len(l.table) {
		return syscall.EMFILE
	}
	seq := l.nextSeq()
	l.table[fd] = entry{c: c, seq: seq}
	if e := epollAdd(l.epfd, fd, sockEvents, seq); e != 0 {
		l.table[fd] = entry{}
		return e
	}
	return nil
}

// RegisterListener adds a listening socket shared with other loops:
// level-triggered and EPOLLEXCLUSIVE, so that a new connection does not
// wake every loop.
func (l *Loop) RegisterListener(fd int, h Handler) error {
	seq := l.nextSeq()
	if e := epollAdd(l.epfd, fd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, seq); e != 0 {
		return e
	}
	l.others[fd] = other{h: h, seq: seq}
	return nil
}

// Close unregisters a connection socket and closes it.
func (l *Loop) Close(fd int) {
	l.table[fd] = entry{}
	rawClose(fd)
}

// Unregister removes a listening socket from the loop without closing it
// (other loops still use it).
func (l *Loop) Unregister(fd int) {
	if _, ok := l.others[fd]; ok {
		delete(l.others, fd)
		epollDel(l.epfd, fd)
	}
}

// Arm queues t, owned by o, to fire at when (loop clock); re-arms it if queued.
func (l *Loop) Arm(t *Timer, o TimerOwner, when int64) {
	t.owner = o
	l.wheel.arm(t, when)
}

// Disarm dequeues t.
func (l *Loop) Disarm(t *Timer) { l.wheel.stop(t) }

// Later runs r on the next turn, before the loop waits again.
func (l *Loop) Later(r Runner) { l.later = append(l.later, r) }

// Post runs f on the loop. It may be called from any goroutine; commands
// run in order. Posting to a stopped loop runs nothing and reports false.
func (l *Loop) Post(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false // (and the eventfd may be closed: never write to it)
	}
	l.cmds = append(l.cmds, f)
	if !l.waiting.Swap(true) {
		l.wake()
	}
	return true
}

func (l *Loop) wake() {
	var one = [8]byte{1}
	rawWrite(l.evfd, one[:])
}

// Start runs the loop on a new goroutine until Stop.
func (l *Loop) Start() {
	l.started.Store(true)
	go l.run()
}

// Stop ends the loop after its current turn, waits for it and closes its
// descriptors. Descriptors still registered are left open: stop their
// owners first. A second call does nothing.
func (l *Loop) Stop() {
	l.mu.Lock()
	first := !l.stopped
	if first {
		l.stopped = true
		close(l.quit)
		l.wake()
	}
	l.mu.Unlock()
	if !first {
		return
	}
	if l.started.Load() {
		<-l.done
	}
	l.closePools()
	l.ep.Close()
	unix.Close(l.evfd)
}

func (l *Loop) run() {
	defer close(l.done)
	poll := func(fd uintptr) bool {
		l.n = epollPoll(l.epfd, l.evs[:])
		return l.n > 0 || len(l.later) > 0
	}
	for {
		err := l.epRaw.Read(poll)
		l.now = int64(time.Since(l.base))
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return // ep closed
		}
		l.dispatch()
		l.runLater()
		l.runCommands()
		l.wheel.expire(l.now)
		select {
		case <-l.quit:
			return
		default:
		}
		l.setDeadline()
	}
}

func (l *Loop) dispatch() {
	for i := 0; i < l.n; i++ {
		ev := &l.evs[i]
		fd := int(ev.Fd)
		if fd == l.evfd {
			var b [8]byte
			rawRead(l.evfd, b[:])
			continue
		}
		if e := l.table[fd]; e.c != nil && e.seq == uint32(ev.Pad) {
			e.c.Event(fd, ev.Events)
			continue
		}
		if o, ok := l.others[fd]; ok && o.seq == uint32(ev.Pad) {
			o.h.Event(fd, ev.Events)
		}
		// Else closed, or closed and reused, earlier this turn.
	}
	l.n = 0
}

func (l *Loop) runLater() {
	if len(l.later) == 0 {
		return
	}
	rs := l.later
	l.later = nil
	for i, r := range rs {
		r.Run()
		rs[i] = nil
	}
	if l.later == nil {
		l.later = rs[:0]
	}
}

func (l *Loop) runCommands() {
	if !l.waiting.Load() {
		return
	}
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = l.spare[:0]
	l.waiting.Store(false)
	l.mu.Unlock()
	for i, f := range cmds {
		f()
		cmds[i] = nil
	}
	l.spare = cmds
}

// setDeadline makes the loop's wait end at its earliest timer.
func (l *Loop) setDeadline() {
	when, ok := l.wheel.next()
	if !ok {
		if l.armed != 0 {
			l.ep.SetReadDeadline(time.Time{})
			l.armed = 0
		}
		return
	}
	if when <= l.now {
		when = l.now + 1
	}
	if when != l.armed {
		l.ep.SetReadDeadline(l.base.Add(time.Duration(when)))
		l.armed = when
	}
}
