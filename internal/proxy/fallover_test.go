package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/cluster"
)

// banner is a server-first node (like SMTP): it greets with its name, then
// echoes lines.
func banner(s *server, c *net.TCPConn) {
	fmt.Fprintf(c, "220 %s\r\n", s.name)
	io.Copy(c, c)
}

// slam accepts and closes at once: a node that is up but not serving.
func slam(*server, *net.TCPConn) {}

func chainConfig(extra string, nodes ...[2]string) string {
	var ns []tnode
	for i, n := range nodes {
		next := ""
		if i+1 < len(nodes) {
			next = fmt.Sprintf("fallover = %q", nodes[i+1][0])
		}
		ns = append(ns, tnode{n[0], n[1], next})
	}
	return testConfig("", extra, ns...)
}

func greet(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "closed: " + err.Error()
	}
	return strings.TrimSpace(l)
}

// A node that accepts and closes at once, before any byte, is unavailable:
// the client reaches the fall-over node and sees only its banner.
func TestEarlyCloseFallsOver(t *testing.T) {
	flaky := startServer(t, "flaky", slam)
	good := startServer(t, "good", banner)
	srv, addr := balancer(t, chainConfig("", [2]string{"flaky", flaky.addr()}, [2]string{"good", good.addr()}))
	for i := range 5 {
		if got := greet(t, addr); got != "220 good" {
			t.Fatalf("connection %d: %q", i, got)
		}
	}
	f, g := nodeOf(srv, "c", "flaky"), nodeOf(srv, "c", "good")
	if f.Available() || f.Stats.MarkedDown.Load() != 1 || f.Stats.Failures.Load() != 1 {
		t.Fatalf("flaky: available %v, marked down %d, failures %d; want down once",
			f.Available(), f.Stats.MarkedDown.Load(), f.Stats.Failures.Load())
	}
	if got := g.Stats.FallIns.Load(); got != 1 {
		t.Fatalf("good received %d connections by fall-over, want 1 (then flaky's slot is good's)", got)
	}
}

// A node that closes an idle client after the early-close window is not
// marked: a client idling until the server's own timeout never takes a
// node out. Nor is a node that closes after bytes flowed, and that
// connection is not retried elsewhere.
func TestLateCloseNotMarked(t *testing.T) {
	late := startServer(t, "late", func(_ *server, c *net.TCPConn) { time.Sleep(300 * time.Millisecond) })
	afterBytes := startServer(t, "after", func(_ *server, c *net.TCPConn) {
		bufio.NewReader(c).ReadString('\n') // takes the request, answers nothing
	})
	other := startServer(t, "other", banner)
	for _, tc := range []struct {
		name string
		node *server
		send string
	}{{"late", late, ""}, {"after", afterBytes, "QUIT\n"}} {
		srv, addr := balancer(t, chainConfig(`early_close_window = "100ms"`,
			[2]string{tc.name, tc.node.addr()}, [2]string{"other", other.addr()}))
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, tc.send)
		expectClosed(t, c)
		c.Close()
		n := nodeOf(srv, "c", tc.name)
		if !n.Available() || n.Stats.MarkedDown.Load() != 0 {
			t.Errorf("%s: marked unavailable (available %v, marks %d)", tc.name, n.Available(), n.Stats.MarkedDown.Load())
		}
	}
	if other.accepted() != 0 {
		t.Errorf("a closed connection was retried on another node (%d)", other.accepted())
	}
}

// A chain of three, the first two dead: the third serves; after
// retry_interval the revived first node is probed and takes traffic again.
func TestChainOfThreeAndRetry(t *testing.T) {
	deadA, deadB := freePort(t), freePort(t)
	c := startServer(t, "c", banner)
	srv, addr := balancer(t, chainConfig(`retry_interval = "100ms"`,
		[2]string{"a", deadA}, [2]string{"b", deadB}, [2]string{"c", c.addr()}))
	for i := range 6 {
		if got := greet(t, addr); got != "220 c" {
			t.Fatalf("connection %d: %q", i, got)
		}
	}
	a, b := nodeOf(srv, "c", "a"), nodeOf(srv, "c", "b")
	if a.Stats.MarkedDown.Load() != 1 || b.Stats.MarkedDown.Load() != 1 {
		t.Fatalf("marks a=%d b=%d, want 1 each", a.Stats.MarkedDown.Load(), b.Stats.MarkedDown.Load())
	}
	startServerAt(t, "a", deadA, banner)
	waitFor(t, "a to be probed and serve", func() bool { return greet(t, addr) == "220 a" })
	if !a.Available() {
		t.Fatal("a served but is not marked available")
	}
}

// Yellow: established connections keep transferring while every new one
// goes elsewhere; red then closes them all at once.
func TestYellowDrainsRedKills(t *testing.T) {
	y := startServer(t, "y", banner)
	o := startServer(t, "o", banner)
	srv, addr := balancer(t, chainConfig("", [2]string{"y", y.addr()}, [2]string{"o", o.addr()}))
	ny := nodeOf(srv, "c", "y")
	ny.SetWeight(1)
	nodeOf(srv, "c", "o").SetWeight(0) // everything to y until it turns yellow
	type held struct {
		c net.Conn
		r *bufio.Reader
	}
	var conns []held
	for range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if l, _ := r.ReadString('\n'); l != "220 y\r\n" {
			t.Fatalf("before yellow: %q", l)
		}
		conns = append(conns, held{c, r})
	}
	ny.SetState(cluster.Yellow)
	for i := range 10 {
		if got := greet(t, addr); got != "220 o" {
			t.Fatalf("new connection %d with y yellow: %q", i, got)
		}
	}
	for i, h := range conns {
		fmt.Fprintf(h.c, "still %d\n", i)
		if l, err := h.r.ReadString('\n'); err != nil || l != fmt.Sprintf("still %d\n", i) {
			t.Fatalf("held connection %d on the yellow node: %q, %v", i, l, err)
		}
	}
	ny.SetState(cluster.Red)
	var wg sync.WaitGroup
	for _, h := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); expectClosed(t, h.c) }()
	}
	wg.Wait()
}
