//go:build linux

package evloop

import "golang.org/x/sys/unix"

// Buffers and pipes are borrowed only while bytes move through them and
// kept on per-loop free lists (no locking: one goroutine per loop).

const (
	bufSize   = 16 << 10
	pipeSize  = 64 << 10 // a pipe's default capacity
	keepBufs  = 64
	keepPipes = 32
)

type buffer [bufSize]byte

type pipe struct{ r, w int }

func (l *Loop) getBuf() *buffer { return l.bufs.Get() }

func (l *Loop) putBuf(b *buffer) { l.bufs.Put(b) }

// getPipe borrows an empty pipe, or returns nil when none can be made
// (descriptor limit): the direction then copies through buffers.
func (l *Loop) getPipe() *pipe {
	if n := len(l.pipes); n > 0 {
		p := l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p
	}
	var fds [2]int
	if unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC) != nil {
		return nil
	}
	return &pipe{r: fds[0], w: fds[1]}
}

// putPipe returns a pipe; one still holding bytes is closed, never reused.
func (l *Loop) putPipe(p *pipe, inPipe int) {
	if inPipe == 0 && len(l.pipes) < keepPipes {
		l.pipes = append(l.pipes, p)
		return
	}
	rawClose(p.r)
	rawClose(p.w)
}

// closePools closes the pooled pipes (the loop is stopping).
func (l *Loop) closePools() {
	for _, p := range l.pipes {
		rawClose(p.r)
		rawClose(p.w)
	}
	l.pipes = nil
	l.bufs.Clear()
	l.ios.Clear()
}

// ioOf returns d's dirIO, borrowing one when it has none.
func (l *Loop) ioOf(d *dir) *dirIO {
	if d.io == nil {
		d.io = l.ios.Get()
	}
	return d.io
}

func (l *Loop) putIO(io *dirIO) {
	*io = dirIO{}
	l.ios.Put(io)
}
