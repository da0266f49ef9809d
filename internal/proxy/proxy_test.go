package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/protobalance/protobalance/internal/proxy"
)

// TestMain runs the whole suite on each data path: the event loops (the
// default on Linux) and the goroutine relay, the portable fallback and the
// loops' oracle. PB_DATA_PATH=loop or =goroutine runs one.
func TestMain(m *testing.M) {
	paths := []string{"loop", "goroutine"}
	if p := os.Getenv("PB_DATA_PATH"); p != "" {
		paths = []string{p}
	} else if runtime.GOOS != "linux" {
		paths = []string{"goroutine"}
	}
	code := 0
	for _, p := range paths {
		os.Setenv("PB_DATA_PATH", p)
		fmt.Fprintf(os.Stderr, "=== data path %s\n", p)
		if c := m.Run(); c != 0 {
			code = c
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func shutdownNow(srv *proxy.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	srv.Shutdown(ctx)
}

func oneNode(addr string) string { return testConfig("", "", tnode{"n1", addr, ""}) }

// Hundreds of concurrent connections of random sizes, every byte checked
// both ways; sizes cross the relay's switch from buffers to splice.
func TestConcurrentChecksummed(t *testing.T) {
	node := startServer(t, "n1", echo)
	_, addr := balancer(t, oneNode(node.addr()))
	conns, maxSize := 300, 4<<20
	if testing.Short() {
		conns, maxSize = 60, 1<<20
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, conns)
	for i := range sizes {
		switch i % 3 {
		case 0:
			sizes[i] = rng.IntN(4096)
		case 1:
			sizes[i] = 64<<10 + rng.IntN(256<<10)
		default:
			sizes[i] = rng.IntN(maxSize)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, size := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, size)
			rand.NewChaCha8([32]byte{byte(i), byte(i >> 8)}).Read(payload)
			if err := roundTrip(addr, payload); err != nil {
				errs <- fmt.Errorf("conn %d (%d bytes): %w", i, size, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A server-first protocol: the node speaks first (a banner), then closes
// its write side; the client keeps sending, and the node's final answer
// (the byte count it received) still arrives.
func TestServerFirstHalfClose(t *testing.T) {
	banner := strings.Repeat("220 ready\r\n", 100_000) // ~1.1 MB
	node := startServer(t, "n1", func(_ *server, c *net.TCPConn) {
		io.WriteString(c, banner)
		n, _ := io.Copy(io.Discard, c)
		// The node's write side is still open: answer with what it got.
		fmt.Fprintf(c, "got %d\n", n)
		c.CloseWrite()
	})
	_, addr := balancer(t, oneNode(node.addr()))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	got := make([]byte, len(banner))
	if _, err := io.ReadFull(r, got); err != nil || string(got) != banner {
		t.Fatalf("banner: err %v, intact %v", err, string(got) == banner)
	}
	payload := strings.Repeat("x", 3<<20)
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("got %d\n", len(payload)); string(rest) != want {
		t.Fatalf("after half-close: got %q, want %q", rest, want)
	}
}

// The node closes its write side first (a response then FIN) while the
// client is still sending: the client must still be able to send, and the
// node must receive everything.
func TestNodeHalfCloseFirst(t *testing.T) {
	received := make(chan int64, 1)
	node := startServer(t, "n1", func(_ *server, c *net.TCPConn) {
		io.WriteString(c, "bye\n")
		c.CloseWrite()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	})
	_, addr := balancer(t, oneNode(node.addr()))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	all, err := io.ReadAll(c) // until the node's FIN comes through
	if err != nil || string(all) != "bye\n" {
		t.Fatalf("read %q, %v", all, err)
	}
	const n = 2 << 20
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatalf("client could not send after the node's FIN: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	if got := <-received; got != n {
		t.Fatalf("node received %d bytes, want %d", got, n)
	}
}

// Smooth weighted round robin over weights 3:1:1 gives exact shares.
func TestWeightsHonoured(t *testing.T) {
	a := startServer(t, "a", hello)
	b := startServer(t, "b", hello)
	c := startServer(t, "c", hello)
	_, addr := balancer(t, weighted311("round-robin", a, b, c))
	counts := map[string]int{}
	for range 250 {
		got, err := ask(t, addr, "hi")
		if err != nil {
			t.Fatal(err)
		}
		counts[got]++
	}
	if counts["a"] != 150 || counts["b"] != 50 || counts["c"] != 50 {
		t.Fatalf("shares %v, want a:150 b:50 c:50", counts)
	}
}

// freePort returns an address where nothing listens: connects are refused.
func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", nodeIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A refused connect falls over to the node's fall-over node, transparently.
func TestRefusedFallsOver(t *testing.T) {
	good := startServer(t, "good", hello)
	srv, addr := balancer(t, chainConfig("", [2]string{"dead", freePort(t)}, [2]string{"good", good.addr()}))
	for i := range 10 {
		got, err := ask(t, addr, "hi")
		if err != nil || got != "good" {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
	}
	dead := nodeOf(srv, "c", "dead")
	if dead.Available() {
		t.Error("refusing node still available")
	}
	// Marked down after the first refusal, it is skipped until retry_interval.
	if f := dead.Stats.Failures.Load(); f != 1 {
		t.Errorf("dead node failures = %d, want 1", f)
	}
}

// With no node able to take it, the client is closed promptly and counted.
func TestNoNode(t *testing.T) {
	srv, addr := balancer(t, oneNode(freePort(t)))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
	if got := srv.Listeners()[0].Stats.NoNode.Load(); got != 1 {
		t.Fatalf("no_node = %d, want 1", got)
	}
}
