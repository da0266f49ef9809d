package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/control"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

// This package's tests bind 127.0.7.x only: the admin server on .1, the
// balancer's listeners on .2, the test nodes on .3.
const (
	adminIP    = "127.0.7.1"
	balancerIP = "127.0.7.2"
	nodeIP     = "127.0.7.3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// node is a test node: on every connection it first writes its name and a
// newline, then echoes everything back and propagates the client's FIN.
type node struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startNode(t testing.TB, name string) *node {
	t.Helper()
	ln, err := net.Listen("tcp", nodeIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, ln: ln, conns: map[net.Conn]struct{}{}}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.mu.Lock()
			n.conns[c] = struct{}{}
			n.mu.Unlock()
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				io.WriteString(c, n.name+"\n")
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				c.Close()
				n.mu.Lock()
				delete(n.conns, c)
				n.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(n.close)
	return n
}

func (n *node) addr() string { return n.ln.Addr().String() }

func (n *node) close() {
	n.ln.Close()
	n.mu.Lock()
	for c := range n.conns {
		c.Close()
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// fixture is a running balancer with clusters "A" (a1, a2) and "B" (b1,
// b2), listener "web" feeding A and "other" feeding B, its config in a
// file (for reloads), and an admin server over it.
type fixture struct {
	srv   *proxy.Server
	adm   *admin.Server
	url   string
	file  string
	nodes map[string]*node
	logs  *syncBuffer
	token string
}

const fixtureConfig = `[admin]
listen = "%s"
token_file = %q

[[listener]]
name = "web"
bind = "%s:0"
cluster = "A"

[[listener]]
name = "other"
bind = "%s:0"
cluster = "B"

[[cluster]]
name = "A"
%s
[[cluster.node]]
name = "a1"
address = "%s"

[[cluster.node]]
name = "a2"
address = "%s"

[[cluster]]
name = "B"

[[cluster.node]]
name = "b1"
address = "%s"

[[cluster.node]]
name = "b2"
address = "%s"
`

// fixtureOpts vary the fixture.
type fixtureOpts struct {
	token    string // "" = no token file
	clusterA string // extra keys for cluster A
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{nodes: map[string]*node{}, logs: &syncBuffer{}, token: o.token}
	for _, name := range []string{"a1", "a2", "b1", "b2", "x1"} {
		f.nodes[name] = startNode(t, name)
	}
	dir := t.TempDir()
	f.file = filepath.Join(dir, "test.toml")
	tokenFile := ""
	if o.token != "" {
		tokenFile = filepath.Join(dir, "token")
		if err := os.WriteFile(tokenFile, []byte("  "+o.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.writeConfig(t, fmt.Sprintf(fixtureConfig, adminIP+":0", tokenFile, balancerIP, balancerIP, o.clusterA,
		f.nodes["a1"].addr(), f.nodes["a2"].addr(), f.nodes["b1"].addr(), f.nodes["b2"].addr()))
	cfg, err := config.Load(f.file)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(f.logs, nil))
	f.srv, err = proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		f.srv.Shutdown(ctx)
	})
	ctl := control.New(f.srv, control.Options{Version: "test", Reload: func() error {
		next, err := config.Load(f.file)
		if err != nil {
			return err
		}
		return f.srv.Apply(next, 0)
	}})
	f.adm, err = admin.New(cfg.Admin, ctl, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.adm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.adm.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	f.url = f.adm.URL()
	return f
}

func (f *fixture) writeConfig(t testing.TB, text string) {
	t.Helper()
	if err := os.WriteFile(f.file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// listenerAddr is the bound address of a listener.
func (f *fixture) listenerAddr(name string) string {
	return f.srv.Listener(name).Addrs()[0].String()
}

// call makes one API request; hdr are header name/value pairs. The token,
// when the fixture has one, is sent unless hdr sets Authorization.
func (f *fixture) call(t testing.TB, method, path, body string, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data, resp.Header
}

// session dials a listener and reads the serving node's name.
func session(addr string) (net.Conn, string, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, "", nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", nil, fmt.Errorf("reading node name: %w", err)
	}
	return c, strings.TrimSuffix(name, "\n"), r, nil
}

// roundTrip opens a connection through addr, sends payload, half-closes,
// and checks the echo byte for byte; it returns the node's name.
func roundTrip(addr string, payload []byte) (string, error) {
	c, name, r, err := session(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	n, rerr := io.Copy(h, r)
	if werr := <-errc; werr != nil {
		return name, fmt.Errorf("write: %w", werr)
	}
	if rerr != nil {
		return name, fmt.Errorf("read: %w", rerr)
	}
	want := sha256.Sum256(payload)
	if n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		return name, fmt.Errorf("corrupted echo from %s: %d bytes back, %d sent", name, n, len(payload))
	}
	return name, nil
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
