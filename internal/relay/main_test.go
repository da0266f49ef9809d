package relay_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/protobalance/protobalance/internal/relay"
	"github.com/protobalance/protobalance/internal/relay/relaytest"
)

// TestMain fails the run if any goroutine (a relay direction, a watcher)
// outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newRig uses this package's loopback addresses (127.0.3.x).
func newRig(t testing.TB) *relaytest.Rig {
	return relaytest.NewRig(t, "127.0.3.1", "127.0.3.2")
}

// block is the payload source: senders write it cyclically from an offset.
var block = func() []byte {
	b := make([]byte, 1<<20+13)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}()

// send writes size bytes of block (from offset seed) to w and returns their
// SHA-256.
func send(w io.Writer, size int, seed uint64) ([32]byte, error) {
	h := sha256.New()
	off := int(seed % uint64(len(block)))
	for size > 0 {
		chunk := block[off:min(len(block), off+size)]
		h.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			return [32]byte{}, err
		}
		size -= len(chunk)
		off = 0
	}
	return [32]byte(h.Sum(nil)), nil
}

// recv reads r to EOF and returns the byte count and SHA-256.
func recv(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, [32]byte(h.Sum(nil)), err
}

// sendClose sends like send, then half-closes c.
func sendClose(c *net.TCPConn, size int, seed uint64) ([32]byte, error) {
	sum, err := send(c, size, seed)
	if err == nil {
		err = c.CloseWrite()
	}
	return sum, err
}

// roundTrip sends msg from a to b and checks it arrives whole.
func roundTrip(t *testing.T, a, b *net.TCPConn, msg string) {
	t.Helper()
	if _, err := a.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	readExactly(t, b, msg)
}

// readExactly reads len(want) bytes from c and compares them with want.
func readExactly(t *testing.T, c *net.TCPConn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %q: %v", want, err)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// readEOF checks that c is at EOF (the relay closed or half-closed it)
// with nothing left to read.
func readEOF(t *testing.T, c *net.TCPConn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(relaytest.WaitLimit))
	rest, err := io.ReadAll(c)
	if err != nil || len(rest) > 0 {
		t.Fatalf("want EOF, got %d bytes, err %v", len(rest), err)
	}
}

// checkResult compares a relay's Result with the expected counts and a nil
// error.
func checkResult(t *testing.T, got relay.Result, up, down int64) {
	t.Helper()
	if got.Err != nil || got.Up != up || got.Down != down {
		t.Errorf("Result = {Up:%d Down:%d Err:%v}, want {Up:%d Down:%d Err:nil}",
			got.Up, got.Down, got.Err, up, down)
	}
}

// checkReturned checks that every borrowed buffer and pipe came back. Call
// it when no relay is running.
func checkReturned(t *testing.T) {
	t.Helper()
	if b, p := relay.BuffersOut(), relay.PipesOut(); b != 0 || p != 0 {
		t.Errorf("after the relays ended: %d buffers and %d pipes still borrowed", b, p)
	}
}
