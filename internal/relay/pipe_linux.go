//go:build linux && !relay_portable

package relay

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

const (
	// pipeSize is the capacity asked of each splice pipe: 64 KiB is the
	// kernel default, so F_SETPIPE_SZ only matters where the default was
	// lowered; its failure (the per-user pipe page limit) is harmless,
	// splice then moves less per call.
	pipeSize = 64 << 10

	// maxIdlePipes bounds the pool: at most 2*maxIdlePipes descriptors
	// sit idle (256 of a 20,000 limit). Pipes beyond it are closed on
	// return, so a burst of bulk flows does not pin descriptors.
	maxIdlePipes = 128

	// maxSplice is the most one splice(2) from a socket is asked to move.
	// A pipe has 16 slots and loopback or GRO segments can fill a slot
	// with more than a page, so asking for more than pipeSize moves more
	// per call (Go's own splice asks for 1 MiB); the kernel stops when the
	// slots are full.
	maxSplice = 1 << 20

	spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK
)

// pipe is a non-blocking, close-on-exec pipe used as the splice(2) buffer
// between two sockets.
type pipe struct{ r, w int }

var (
	// idlePipes holds empty pipes ready for reuse. A pipe is returned to
	// it only when drained: a pipe still holding bytes is closed.
	idlePipes = make(chan *pipe, maxIdlePipes)
	// pipesOut counts pipes borrowed and not yet returned or closed.
	pipesOut atomic.Int64
)

// getPipe borrows an empty pipe, creating one when the pool is empty. It
// returns nil when no pipe can be made (descriptor limit); the caller then
// copies through a buffer instead.
func getPipe() *pipe {
	select {
	case p := <-idlePipes:
		pipesOut.Add(1)
		return p
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil
	}
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	pipesOut.Add(1)
	return &pipe{r: fds[0], w: fds[1]}
}

// putPipe returns a borrowed pipe. inPipe is the number of bytes still in
// it: a pipe that is not empty is closed, never pooled, so the next user
// cannot receive stale bytes.
func putPipe(p *pipe, inPipe int) {
	pipesOut.Add(-1)
	if inPipe == 0 {
		select {
		case idlePipes <- p:
			return
		default:
		}
	}
	p.close()
}

func (p *pipe) close() {
	_ = unix.Close(p.r)
	_ = unix.Close(p.w)
}

// drainIdlePipes closes every pooled pipe and returns how many it closed.
// For tests that count descriptors.
func drainIdlePipes() int {
	for n := 0; ; n++ {
		select {
		case p := <-idlePipes:
			p.close()
		default:
			return n
		}
	}
}
