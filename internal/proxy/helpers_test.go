package proxy_test

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

// This package's tests bind 127.0.4.x and 127.0.12-14.x (PROXY protocol,
// differential fuzz), so packages tested in parallel never collide on ports.
const (
	balancerIP = "127.0.4.1"
	nodeIP     = "127.0.4.2"
)

// server is a test node: it accepts on a loopback port and runs handle for
// every connection, closing it afterwards. It answers with its own name
// where the handler says so, so tests see where each connection went.
type server struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	count int
}

func startServer(t testing.TB, name string, handle func(s *server, c *net.TCPConn)) *server {
	t.Helper()
	return startServerAt(t, name, nodeIP+":0", handle)
}

// startServerAt is startServer on a given address (to revive a node).
func startServerAt(t testing.TB, name, addr string, handle func(s *server, c *net.TCPConn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{name: name, ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.count++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(s, c.(*net.TCPConn))
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

func (s *server) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echo copies everything back and propagates the client's FIN.
func echo(_ *server, c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// hello answers every line with "NAME\n": it says who served the client.
func hello(s *server, c *net.TCPConn) {
	r := bufio.NewReader(c)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		if _, err := io.WriteString(c, s.name+"\n"); err != nil {
			return
		}
	}
}

// balancer starts a proxy.Server from a TOML config whose text may use
// {{BIND}} for a free balancer address; it returns the listener's address.
func balancer(t testing.TB, toml string) (*proxy.Server, string) {
	t.Helper()
	toml = strings.ReplaceAll(toml, "{{BIND}}", balancerIP+":0")
	cfg, err := config.Parse("test.toml", []byte(toml), t.TempDir())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine(), Log: testLogger(t), DataPath: os.Getenv("PB_DATA_PATH")})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdownNow(srv) })
	return srv, srv.Listeners()[0].Addrs()[0].String()
}

// ask sends one line through addr and returns the one-line answer.
func ask(t testing.TB, addr, line string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading answer: %w", err)
	}
	return strings.TrimSuffix(got, "\n"), nil
}

// roundTrip writes payload, half-closes, reads everything back and checks
// the echo byte for byte (by SHA-256).
func roundTrip(addr string, payload []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	errc := make(chan error, 1)
	go func() {
		_, err := tc.Write(payload)
		if err == nil {
			err = tc.CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	n, rerr := io.Copy(h, tc)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if rerr != nil {
		return fmt.Errorf("read: %w", rerr)
	}
	if n != int64(len(payload)) {
		return fmt.Errorf("echoed %d bytes, sent %d", n, len(payload))
	}
	want := sha256.Sum256(payload)
	if !equal(h.Sum(nil), want[:]) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

func equal(a, b []byte) bool { return string(a) == string(b) }

// node returns a node of a running server's cluster.
func nodeOf(srv *proxy.Server, clusterName, name string) *cluster.Node {
	n, _ := srv.Cluster(clusterName).Node(name)
	if n == nil {
		panic("no node " + name)
	}
	return n
}

// tnode is a node of a test configuration: its name, address and any
// extra TOML lines (weight, fallover, ...).
type tnode struct{ name, addr, extra string }

// testConfig is a balancer configuration with the admin server off, one
// listener "l" on {{BIND}} (plus listenerExtra lines) sending to cluster
// "c" (plus clusterExtra lines) over nodes.
func testConfig(listenerExtra, clusterExtra string, nodes ...tnode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[admin]\nlisten = \"\"\n[[listener]]\nname = \"l\"\nbind = \"{{BIND}}\"\ncluster = \"c\"\n%s\n", listenerExtra)
	fmt.Fprintf(&b, "[[cluster]]\nname = \"c\"\n%s\n", clusterExtra)
	for _, n := range nodes {
		fmt.Fprintf(&b, "[[cluster.node]]\nname = %q\naddress = %q\n%s\n", n.name, n.addr, n.extra)
	}
	return b.String()
}
