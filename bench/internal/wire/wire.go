// Package wire is the tiny protocol spoken between loadgen and benchnode.
//
// A connection's mode is chosen by its first line, sent by the client:
//
//	R <size> <padding>\n   request/response: the node answers exactly <size> bytes
//	                       beginning with its name and a space and ending in '\n';
//	                       further request lines on the same connection repeat
//	                       this (keep-alive); client EOF closes the connection.
//	E\n                    echo: every later byte is sent back until client EOF.
//	B <up> <down> <sum>\n  bulk: the client sends <up> bytes and then half-closes;
//	                       meanwhile the node sends <down> payload bytes followed by
//	                       "<hex sum of what it sent>\n"; after reading the client's
//	                       EOF it sends "<count> <hex sum of what it received>\n"
//	                       and closes. <sum> is "crc32c" or "sha256".
//
// Every line is at most MaxLine bytes. Payload bytes come from Payload, so
// both ends can produce them without allocating.
package wire

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
)

// MaxLine bounds a header or request line.
const MaxLine = 4096

// DefaultResponse is the request/response answer size.
const DefaultResponse = 1024

// payloadSize is the length of the repeating payload block: a prime so that
// chunk boundaries drift across it.
const payloadSize = 1<<20 + 7

// payload is built on first use, so that commands that never send bulk
// (the launch probe above all) start fast.
var payload = sync.OnceValue(func() []byte {
	r := rand.New(rand.NewChaCha8([32]byte{'p', 'b', 'e', 'n', 'c', 'h'}))
	b := make([]byte, payloadSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
})

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// NewSum returns the hash named by a bulk header, or an error for an unknown name.
func NewSum(name string) (hash.Hash, error) {
	switch name {
	case "crc32c":
		return crc32.New(castagnoli), nil
	case "sha256":
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("unknown checksum %q (want crc32c or sha256)", name)
}

// Request returns a request line of exactly size bytes (at least 8) asking
// for a response of resp bytes.
func Request(size, resp int) []byte {
	head := fmt.Sprintf("R %d ", resp)
	if size < len(head)+1 {
		size = len(head) + 1
	}
	return []byte(head + strings.Repeat("x", size-len(head)-1) + "\n")
}

// Response returns a response of exactly size bytes naming node.
func Response(node string, size int) []byte {
	head := node + " "
	if size < len(head)+1 {
		size = len(head) + 1
	}
	return []byte(head + strings.Repeat("y", size-len(head)-1) + "\n")
}

// WritePayload writes n payload bytes starting at offset seed into w, adding
// them to sum (which may be nil), in writes of at most chunk bytes (0 = 64 KiB).
// It returns the number of bytes written.
func WritePayload(w io.Writer, sum hash.Hash, n int64, seed int64, chunk int) (int64, error) {
	if chunk <= 0 {
		chunk = 64 << 10
	}
	pl := payload()
	off := int(seed % payloadSize)
	var done int64
	for done < n {
		c := chunk
		if rem := n - done; rem < int64(c) {
			c = int(rem)
		}
		if off+c > payloadSize {
			c = payloadSize - off
		}
		p := pl[off : off+c]
		if sum != nil {
			sum.Write(p)
		}
		m, err := w.Write(p)
		done += int64(m)
		if err != nil {
			return done, err
		}
		off = (off + c) % payloadSize
	}
	return done, nil
}
