package relay_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/relay"
	"github.com/protobalance/protobalance/internal/relay/relaytest"
)

// TestManyConnections relays hundreds of concurrent connections both ways
// at once, with sizes from empty to several MB, so that both the buffered
// path and the splice path run, and checks every byte by SHA-256 and every
// Result and Count.
func TestManyConnections(t *testing.T) {
	conns, maxSize := 300, 4<<20
	if testing.Short() {
		conns, maxSize = 40, 1<<20
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	size := func() int {
		switch rnd.IntN(3) {
		case 0: // buffered only
			return rnd.IntN(16 << 10)
		case 1: // crosses the splice threshold
			return 16<<10 + rnd.IntN(240<<10)
		default:
			return rnd.IntN(maxSize + 1)
		}
	}

	var counted [2]atomic.Int64
	opt := relay.Options{
		IdleTimeout: time.Minute, // armed, never reached
		FinTimeout:  time.Minute,
		Count: func(up, down int64) {
			counted[0].Add(up)
			counted[1].Add(down)
		},
	}
	rig := newRig(t)
	r := relay.NewGoroutine()
	var wantUp, wantDown int64
	var wg sync.WaitGroup
	for i := range conns {
		p := rig.Pair(t, r, opt)
		up, down := size(), size()
		wantUp += int64(up)
		wantDown += int64(down)
		wg.Add(1)
		go func() {
			defer wg.Done()
			transfer(t, p, up, down, uint64(i))
		}()
	}
	wg.Wait()
	if u, d := counted[0].Load(), counted[1].Load(); u != wantUp || d != wantDown {
		t.Errorf("Count saw up %d down %d, want %d %d", u, d, wantUp, wantDown)
	}
	checkReturned(t)
}

// transfer runs a full-duplex exchange on p: client and node each send
// their bytes then half-close, and each reads the other's to EOF.
func transfer(t *testing.T, p *relaytest.Pair, up, down int, seed uint64) {
	type sent struct {
		sum [32]byte
		err error
	}
	upSent, downSent := make(chan sent, 1), make(chan sent, 1)
	go func() {
		sum, err := sendClose(p.Client, up, seed)
		upSent <- sent{sum, err}
	}()
	go func() {
		sum, err := sendClose(p.Node, down, seed*7+3)
		downSent <- sent{sum, err}
	}()
	type got struct {
		n   int64
		sum [32]byte
		err error
	}
	upGot := make(chan got, 1)
	go func() {
		n, sum, err := recv(p.Node)
		upGot <- got{n, sum, err}
	}()
	dn, dsum, derr := recv(p.Client)
	ug, us, ds := <-upGot, <-upSent, <-downSent
	switch {
	case us.err != nil || ds.err != nil || ug.err != nil || derr != nil:
		t.Errorf("conn %d: send up %v, send down %v, recv up %v, recv down %v",
			seed, us.err, ds.err, ug.err, derr)
	case ug.n != int64(up) || ug.sum != us.sum:
		t.Errorf("conn %d: node got %d bytes (sum match %v), client sent %d",
			seed, ug.n, ug.sum == us.sum, up)
	case dn != int64(down) || dsum != ds.sum:
		t.Errorf("conn %d: client got %d bytes (sum match %v), node sent %d",
			seed, dn, dsum == ds.sum, down)
	}
	checkResult(t, p.Wait(t), int64(up), int64(down))
}

// TestHalfCloseClientFirst: the client sends its request and half-closes;
// the node sees EOF and still gets a large response through.
func TestHalfCloseClientFirst(t *testing.T) {
	p := newRig(t).Pair(t, relay.NewGoroutine(), relay.Options{FinTimeout: time.Minute})
	const req = "GET / HTTP/1.0\r\n\r\n"
	if _, err := p.Client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	if err := p.Client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p.Node)
	if err != nil || string(got) != req {
		t.Fatalf("node read %q, %v; want %q then EOF", got, err, req)
	}
	const size = 4 << 20
	sent := make(chan [32]byte, 1)
	go func() {
		sum, err := sendClose(p.Node, size, 5)
		if err != nil {
			t.Errorf("node send: %v", err)
		}
		sent <- sum
	}()
	n, sum, err := recv(p.Client)
	if err != nil || n != size || sum != <-sent {
		t.Fatalf("client got %d bytes (err %v), want %d matching", n, err, size)
	}
	checkResult(t, p.Wait(t), int64(len(req)), size)
}

// TestHalfCloseServerFirst: a server-first protocol; the node sends its
// banner and half-closes, the client keeps sending afterwards.
func TestHalfCloseServerFirst(t *testing.T) {
	p := newRig(t).Pair(t, relay.NewGoroutine(), relay.Options{})
	const banner = "220 node ready\r\n"
	if _, err := p.Node.Write([]byte(banner)); err != nil {
		t.Fatal(err)
	}
	if err := p.Node.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	readExactly(t, p.Client, banner)
	readEOF(t, p.Client)
	const size = 1 << 20
	sent := make(chan [32]byte, 1)
	go func() {
		sum, err := sendClose(p.Client, size, 9)
		if err != nil {
			t.Errorf("client send: %v", err)
		}
		sent <- sum
	}()
	n, sum, err := recv(p.Node)
	if err != nil || n != size || sum != <-sent {
		t.Fatalf("node got %d bytes (err %v), want %d matching", n, err, size)
	}
	checkResult(t, p.Wait(t), size, int64(len(banner)))
}

// TestReset: a reset from one peer ends the relay and is passed on to the
// other peer as a reset.
func TestReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		from func(*relaytest.Pair) (resetter, other *net.TCPConn)
	}{
		{"client", func(p *relaytest.Pair) (*net.TCPConn, *net.TCPConn) { return p.Client, p.Node }},
		{"node", func(p *relaytest.Pair) (*net.TCPConn, *net.TCPConn) { return p.Node, p.Client }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newRig(t).Pair(t, relay.NewGoroutine(), relay.Options{})
			roundTrip(t, p.Client, p.Node, "hello")
			roundTrip(t, p.Node, p.Client, "hi")
			resetter, other := tc.from(p)
			if err := resetter.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			_ = resetter.Close()
			if _, err := io.ReadAll(other); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("other peer read: %v, want ECONNRESET", err)
			}
			if res := p.Wait(t); !errors.Is(res.Err, syscall.ECONNRESET) {
				t.Errorf("Result.Err = %v, want ECONNRESET", res.Err)
			}
		})
	}
}

// TestExternalClose: closing either relay conn from another goroutine ends
// the relay promptly, in full duplex and after a half-close (when only the
// watch of the finished side can notice).
func TestExternalClose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		halfClose bool
		close     func(*relaytest.Pair) *net.TCPConn
	}{
		{"client", false, func(p *relaytest.Pair) *net.TCPConn { return p.RelayClient }},
		{"node", false, func(p *relaytest.Pair) *net.TCPConn { return p.RelayNode }},
		{"half-closed/finished side", true, func(p *relaytest.Pair) *net.TCPConn { return p.RelayClient }},
		{"half-closed/open side", true, func(p *relaytest.Pair) *net.TCPConn { return p.RelayNode }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "half-closed/finished side" && !relay.WatchesFinished {
				t.Skip("this build does not watch a finished direction")
			}
			p := newRig(t).Pair(t, relay.NewGoroutine(), relay.Options{})
			roundTrip(t, p.Client, p.Node, "ping")
			roundTrip(t, p.Node, p.Client, "pong")
			if tc.halfClose {
				if err := p.Client.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				readEOF(t, p.Node)
			}
			_ = tc.close(p).Close()
			res := p.Wait(t)
			if !errors.Is(res.Err, net.ErrClosed) {
				t.Errorf("Result.Err = %v, want net.ErrClosed", res.Err)
			}
			if res.Up != 4 || res.Down != 4 {
				t.Errorf("Result = %+v, want Up 4 Down 4", res)
			}
			readEOF(t, p.Client)
			if !tc.halfClose {
				readEOF(t, p.Node)
			}
			checkReturned(t)
		})
	}
}
