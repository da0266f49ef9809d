//go:build linux && !relay_portable

package relay

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bulkAfter is how many bytes a direction copies through a buffer before it
// switches to splice(2): short exchanges avoid the two extra syscalls per
// batch that a pipe costs, bulk flows avoid the copy to user space.
const bulkAfter = 64 << 10

// op selects what direction.callback does when the runtime calls it.
type op uint8

const (
	opRead  op = iota // read or splice src → buf or pipe, until data or EAGAIN
	opWrite           // write or splice buf or pipe → dst, until empty or EAGAIN
	opWatch           // after EOF: only check src for a pending error
)

// dirSys is the Linux part of a direction. All of it belongs to the
// direction's goroutine; the callback runs on it too (inside RawConn calls).
//
// Invariant: buf and p are never both set; whichever is set holds the
// pending bytes. Both are nil whenever the direction is parked waiting for
// src to become readable.
type dirSys struct {
	rsrc, rdst syscall.RawConn
	cb         func(fd uintptr) bool // direction.callback, bound once
	op         op

	buf      *[bufSize]byte
	p        *pipe
	off      int   // start of the pending bytes in buf
	pending  int   // bytes read from src, not yet written to dst
	written  int   // bytes written by the current opWrite call
	bulk     bool  // moved more than bulkAfter: read with splice
	noSplice bool  // splice refused (EINVAL): buffers only
	eof      bool  // src returned EOF
	err      error // errno of the last failed syscall in the callback
}

func (d *direction) init() error {
	var err error
	if d.rsrc, err = d.src.SyscallConn(); err != nil {
		return err
	}
	if d.rdst, err = d.dst.SyscallConn(); err != nil {
		return err
	}
	d.cb = d.callback
	return nil
}

// copy runs the direction until EOF, an error or the end of the relay.
//
// Each wait is a RawConn call whose callback tries the syscall first and
// returns false only after a real EAGAIN: the netpoller is edge-triggered,
// so a callback that waited without trying could miss the edge and hang.
func (d *direction) copy() {
	defer d.release()
	for {
		d.op = opRead
		if err := d.rsrc.Read(d.cb); err != nil {
			if d.waitFailed(err) {
				continue
			}
			return
		}
		if !d.earlyCheck() {
			return
		}
		switch {
		case d.err != nil:
			d.failed("read", d.err)
			return
		case d.eof:
			d.release()
			if d.s.finish(d) {
				d.watch()
			}
			return
		}
		for d.pending > 0 {
			d.op, d.written = opWrite, 0
			err := d.rdst.Write(d.cb)
			if d.written > 0 {
				d.wrote(d.written)
			}
			if d.err != nil {
				d.failed("write", d.err)
				return
			}
			if err != nil && !d.waitFailed(err) {
				return
			}
		}
		if !d.bulk && !d.noSplice && d.n > bulkAfter {
			d.bulk = true
			d.release() // the buffer is empty; the next read takes a pipe
		}
	}
}

// earlyCheck runs after each read from src, before anything is passed on:
// the first byte or FIN either way commits the relay, and a close by the
// node before that may end it as an early close (Options.EarlyClose). It
// returns false when the direction must stop at once, keeping any client
// bytes in hand for the caller.
func (d *direction) earlyCheck() bool {
	s := d.s
	if s.early.Load() == earlyCommitted {
		return true
	}
	if !d.up && (d.eof || d.err != nil) && s.abortEarly() {
		d.release()
		return false
	}
	if s.commit() {
		return true
	}
	if d.up && d.pending > 0 && d.buf != nil { // never a pipe: splice starts past 64 KiB
		s.pendingUp = append([]byte(nil), d.buf[d.off:d.off+d.pending]...)
	}
	d.pending = 0
	d.release()
	return false
}

// watch parks the finished direction on its source until the relay ends
// (both conns are closed, which wakes it), the conn is closed from outside,
// or the peer resets it. Without it, closing the finished side from outside
// would go unnoticed while the other direction waits on a silent peer.
func (d *direction) watch() {
	for {
		d.op, d.err = opWatch, nil
		err := d.rsrc.Read(d.cb)
		switch {
		case err == nil:
			d.failed("read", d.err)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			_ = d.src.SetReadDeadline(time.Time{})
		default:
			d.s.end(err, nil)
			return
		}
	}
}

// release gives back the buffer or pipe. A pipe with bytes left in it
// (the relay ended mid-write) is closed rather than pooled.
func (d *direction) release() {
	if d.buf != nil {
		putBuf(d.buf)
		d.buf = nil
	}
	if d.p != nil {
		putPipe(d.p, d.pending)
		d.p = nil
	}
}

// callback is the function handed to RawConn.Read and RawConn.Write.
func (d *direction) callback(fd uintptr) bool {
	switch d.op {
	case opRead:
		if d.bulk && d.p == nil && d.buf == nil {
			d.p = getPipe() // nil at the descriptor limit: use a buffer
		}
		if d.p != nil {
			return d.spliceIn(int(fd))
		}
		return d.readIn(int(fd))
	case opWrite:
		return d.writeOut(int(fd))
	default:
		return d.checkError(int(fd))
	}
}

// readIn reads from src into a borrowed buffer. On EAGAIN it returns the
// buffer before the direction parks.
func (d *direction) readIn(fd int) bool {
	if d.buf == nil {
		d.buf = getBuf()
	}
	for {
		n, err := unix.Read(fd, d.buf[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			d.release()
			return false
		case err != nil:
			d.err = err
		case n == 0:
			d.eof = true
		default:
			d.off, d.pending = 0, n
		}
		return true
	}
}

// spliceIn moves bytes from src into the borrowed pipe. The pipe is empty
// on entry (writeOut drained it), so EAGAIN means src has nothing: the pipe
// goes back to the pool before the direction parks.
func (d *direction) spliceIn(fd int) bool {
	for {
		n, err := unix.Splice(fd, nil, d.p.w, nil, maxSplice, spliceFlags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			d.release()
			return false
		case err == unix.EINVAL:
			// Not spliceable (it consumed nothing): buffers from now on.
			d.release()
			d.bulk, d.noSplice = false, true
			return d.readIn(fd)
		case err != nil:
			d.err = err
		case n == 0:
			d.eof = true
		default:
			d.pending = int(n)
		}
		return true
	}
}

// writeOut writes the pending bytes to dst until none are left (true) or
// dst is full (false: wait for writability, keeping buffer or pipe).
func (d *direction) writeOut(fd int) bool {
	for d.pending > 0 {
		var n int
		var err error
		if d.p != nil {
			var n64 int64
			n64, err = unix.Splice(d.p.r, nil, fd, nil, d.pending, spliceFlags)
			n = int(n64)
		} else {
			n, err = unix.Write(fd, d.buf[d.off:d.off+d.pending])
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			d.err = err
			return true
		case n <= 0:
			d.err = io.ErrShortWrite
			return true
		}
		d.off += n
		d.pending -= n
		d.written += n
	}
	return true
}

// checkError is the watch callback: it never consumes anything. It reports
// a pending socket error (a reset after our EOF) and otherwise parks again;
// a wake-up without one (write space on the same socket) costs one
// getsockopt.
func (d *direction) checkError(fd int) bool {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && v != 0 {
		d.err = syscall.Errno(v)
		return true
	}
	return false
}
