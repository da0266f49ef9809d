package proxy_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/cluster"
)

// blackhole returns the address of a listening socket whose accept queue is
// full and never drained: on Linux the kernel then drops new SYNs, so a
// connect to it neither succeeds nor fails until the dialler gives up.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 4, 3}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.4.3:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue (backlog 0 holds one connection; two to be sure).
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break // the queue is full: SYNs are being dropped
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}

// A node that never answers SYNs delays only the connections sent to it,
// and they fall over after connect_timeout; everyone else is served at once.
func TestBlackholedNodeDelaysNoOne(t *testing.T) {
	good := startServer(t, "good", hello)
	srv, addr := balancer(t, testConfig("", `connect_timeout = "2s"`, tnode{"black", blackhole(t), "fallover = \"good\"\nmax_conns = 1"}, tnode{"good", good.addr(), ""}))

	// The first connection goes to the blackholed node (round robin starts
	// there) and hangs in connect; the others must not wait for it. The
	// hanging dial fills the node (max_conns = 1), so every other
	// connection goes to the good node.
	first := make(chan error, 1)
	go func() {
		got, err := ask(t, addr, "hi")
		if err == nil && got != "good" {
			err = fmt.Errorf("answered by %q", got)
		}
		first <- err
	}()
	black := nodeOf(srv, "c", "black")
	for i := 0; black.Stats.Active.Load() == 0; i++ {
		if i == 1000 {
			t.Fatal("the first connection never started dialling the blackholed node")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 20 {
		got, err := ask(t, addr, "hi")
		if err != nil || got != "good" {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
		select {
		case err := <-first:
			t.Fatalf("the blackholed connection finished (%v) before connection %d: was it really blackholed?", err, i)
		default:
		}
	}
	if err := <-first; err != nil {
		t.Fatalf("the blackholed connection did not fall over: %v", err)
	}
}

// idle_timeout closes a connection with no bytes either way.
func TestIdleTimeout(t *testing.T) {
	node := startServer(t, "n1", hello)
	_, addr := balancer(t, testConfig("", `idle_timeout = "300ms"`, tnode{"n1", node.addr(), ""}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hi\n")
	buf := make([]byte, 64)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
}

// fin_timeout closes a half-closed connection that went quiet.
func TestFinTimeout(t *testing.T) {
	quiet := make(chan struct{})
	node := startServer(t, "n1", func(_ *server, c *net.TCPConn) {
		io.Copy(io.Discard, c) // reads the client's FIN, then sits silent
		<-quiet
	})
	t.Cleanup(func() { close(quiet) }) // runs before the server's cleanup
	_, addr := balancer(t, testConfig("", `fin_timeout = "300ms"`, tnode{"n1", node.addr(), ""}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).CloseWrite()
	expectClosed(t, c)
}

// expectClosed waits (bounded) for the balancer to close c.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("the balancer did not close the connection")
	}
}

// Red closes every connection through the node at once, idle ones too.
func TestRedClosesConnections(t *testing.T) {
	node := startServer(t, "n1", hello)
	srv, addr := balancer(t, oneNode(node.addr()))
	var conns []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "hi\n")
		if _, err := c.Read(make([]byte, 16)); err != nil { // relayed: tracked
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	nodeOf(srv, "c", "n1").SetState(cluster.Red)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); expectClosed(t, c) }()
	}
	wg.Wait()
}
