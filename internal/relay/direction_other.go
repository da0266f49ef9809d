//go:build !linux || relay_portable

// The relay_portable tag selects this fallback on Linux too, so that the
// package's tests can run against it:
//	go test -tags relay_portable ./internal/relay

package relay

import (
	"errors"
	"io"
	"os"
)

// dirSys is the fallback's part of a direction: its buffer, held for the
// whole relay.
type dirSys struct {
	buf *[bufSize]byte
}

func (d *direction) init() error { return nil }

// copy is the portable fallback: a buffered Read/Write loop with the same
// half-close, timeout and accounting rules as the Linux path. Unlike it,
// the buffer is held for the whole relay (a blocking Read needs one), and
// once this direction has finished, closing its source from outside is
// noticed only when the other direction next touches that conn.
func (d *direction) copy() {
	d.buf = getBuf()
	defer putBuf(d.buf)
	buf := d.buf
	for {
		n, err := d.src.Read(buf[:])
		for off := 0; off < n; {
			m, werr := d.dst.Write(buf[off:n])
			if m > 0 {
				off += m
				d.wrote(m)
			}
			if werr != nil {
				if isReset(werr) {
					d.failed("write", werr)
					return
				}
				if !d.waitFailed(werr) {
					return
				}
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			d.s.finish(d)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !d.waitFailed(err) {
				return
			}
		case isReset(err):
			d.failed("read", err)
			return
		default:
			d.s.end(err, nil)
			return
		}
	}
}
