package relay

import (
	"sync"
	"sync/atomic"
)

// bufSize is the copy buffer of the buffered path. A direction uses it for
// its first bulkAfter bytes (then, on Linux, it switches to splice), so
// 32 KiB moves a typical request or response in one or two syscalls.
const bufSize = 32 << 10

// bufPool holds idle copy buffers. sync.Pool lets the GC drop buffers
// nobody has borrowed lately, so a burst does not pin memory for ever.
// Pointers to arrays, not slices, so Put does not allocate.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// buffersOut counts buffers borrowed and not yet returned: the buffers
// held by directions that have bytes in hand. Idle connections hold none.
var buffersOut atomic.Int64

func getBuf() *[bufSize]byte {
	buffersOut.Add(1)
	return bufPool.Get().(*[bufSize]byte)
}

func putBuf(b *[bufSize]byte) {
	buffersOut.Add(-1)
	bufPool.Put(b)
}
