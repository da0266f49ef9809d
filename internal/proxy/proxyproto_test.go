package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/proxyproto"
)

// The PROXY protocol tests bind 127.0.12.x only: the balancer on .1, Go
// nodes on .2, HAProxy on .3, clients on .10 and up.
const (
	ppBalancerIP = "127.0.12.1"
	ppNodeIP     = "127.0.12.2"
	ppHAProxyIP  = "127.0.12.3"
	haproxyPath  = "/usr/sbin/haproxy"
)

// ppBalancer is balancer() on 127.0.12.1.
func ppBalancer(t *testing.T, listenerExtra, clusterExtra string, nodes ...tnode) (*proxy.Server, string) {
	t.Helper()
	cfg := strings.ReplaceAll(testConfig(listenerExtra, clusterExtra, nodes...), "{{BIND}}", ppBalancerIP+":0")
	return balancer(t, cfg)
}

// proxyNode is a node that expects a PROXY header: it answers with one
// line naming the header's addresses ("SRC DST", or "LOCAL"), then echoes
// every byte after the header and propagates the client's FIN.
func proxyNode(_ *server, c *net.TCPConn) {
	buf := make([]byte, 0, proxyproto.MaxLen)
	var h proxyproto.Header
	var n int
	for {
		m, rerr := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		var err error
		h, n, err = proxyproto.Parse(buf)
		if err == nil {
			break
		}
		if err != proxyproto.ErrIncomplete || rerr != nil {
			fmt.Fprintf(c, "BAD %v %v\n", err, rerr)
			return
		}
	}
	line := "LOCAL"
	if !h.Local {
		line = h.Src.String() + " " + h.Dst.String()
	}
	io.WriteString(c, line+"\n")
	if _, err := c.Write(buf[n:]); err != nil {
		return
	}
	io.Copy(c, c)
	c.CloseWrite()
}

// dialFrom connects to addr from the local address ip.
func dialFrom(t *testing.T, ip, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second)) // against a hang, not a timing assertion
	return c.(*net.TCPConn)
}

// identifyAndEcho sends first (may be empty), then payload, half-closes
// and reads everything back: the node's first line, which it returns, then
// the echo of payload, checked by SHA-256.
func identifyAndEcho(c *net.TCPConn, first, payload []byte) (string, error) {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(append(append([]byte(nil), first...), payload...))
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		<-errc
		return "", fmt.Errorf("reading the node's line: %w", err)
	}
	h := sha256.New()
	n, rerr := io.Copy(h, r)
	if werr := <-errc; werr != nil {
		return "", fmt.Errorf("write: %w", werr)
	}
	if rerr != nil {
		return "", fmt.Errorf("read: %w", rerr)
	}
	want := sha256.Sum256(payload)
	if n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		return "", fmt.Errorf("echo of %d bytes differs from the %d sent", n, len(payload))
	}
	return strings.TrimSuffix(line, "\n"), nil
}

func payloadOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// proxy_protocol: every node connection starts with the header naming the
// client and the address it connected to, before any client byte.
func TestProxyProtocolToNode(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			node := startServerAt(t, "n1", ppNodeIP+":0", proxyNode)
			_, addr := ppBalancer(t, "", `proxy_protocol = "`+v+`"`, tnode{"n1", node.addr(), ""})
			c := dialFrom(t, "127.0.12.10", addr)
			got, err := identifyAndEcho(c, nil, payloadOf(300_000))
			if err != nil {
				t.Fatal(err)
			}
			if want := c.LocalAddr().String() + " " + addr; got != want {
				t.Errorf("node saw %q, want %q", got, want)
			}
		})
	}
}

// A node that closes right after reading our header (an early close) does
// not stop fall-over: the header is ours, not the client's, and the next
// node gets it again.
func TestProxyProtocolFallOver(t *testing.T) {
	closer := startServerAt(t, "n1", ppNodeIP+":0", func(_ *server, c *net.TCPConn) {
		buf := make([]byte, 256)
		c.Read(buf)
	})
	node := startServerAt(t, "n2", ppNodeIP+":0", proxyNode)
	_, addr := ppBalancer(t, "", `proxy_protocol = "v2"`,
		tnode{"n1", closer.addr(), `fallover = "n2"`}, tnode{"n2", node.addr(), "standby = true"})
	c := dialFrom(t, "127.0.12.10", addr)
	// The client waits for the node's line before sending, as a client of
	// a server-speaks-first protocol does.
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := c.LocalAddr().String() + " " + addr + "\n"; line != want {
		t.Errorf("node saw %q, want %q", line, want)
	}
	if closer.accepted() != 1 {
		t.Errorf("first node accepted %d connections, want 1", closer.accepted())
	}
}

// accept_proxy without HAProxy: the header's source is the client (sent
// on to the node), bytes in the same segment as the header reach the node
// intact and first, and a LOCAL header keeps the peer's address.
func TestAcceptProxyHeader(t *testing.T) {
	node := startServerAt(t, "n1", ppNodeIP+":0", proxyNode)
	srv, addr := ppBalancer(t, "accept_proxy = true", `proxy_protocol = "v1"`, tnode{"n1", node.addr(), ""})
	real := proxyproto.Header{Src: netip.MustParseAddrPort("[2001:db8::7]:4242"), Dst: netip.MustParseAddrPort("198.51.100.1:443")}
	for _, tc := range []struct {
		name   string
		header []byte
		want   func(c *net.TCPConn) string
	}{
		{"v1", proxyproto.AppendV1(nil, real), func(*net.TCPConn) string { return "[2001:db8::7]:4242 198.51.100.1:443" }},
		{"v2", proxyproto.AppendV2(nil, real), func(*net.TCPConn) string { return "[2001:db8::7]:4242 198.51.100.1:443" }},
		{"v2 local", proxyproto.AppendV2(nil, proxyproto.Header{Local: true}),
			func(c *net.TCPConn) string { return c.LocalAddr().String() + " " + addr }},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"),
			func(c *net.TCPConn) string { return c.LocalAddr().String() + " " + addr }},
	} {
		c := dialFrom(t, "127.0.12.11", addr)
		got, err := identifyAndEcho(c, tc.header, payloadOf(100_000))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if want := tc.want(c); got != want {
			t.Errorf("%s: node saw %q, want %q", tc.name, got, want)
		}
	}
	if n := srv.Listener("l").Stats.BadProxyHeader.Load(); n != 0 {
		t.Errorf("bad_proxy_header = %d, want 0", n)
	}
}

// A malformed, missing or late header resets the client, is counted, and
// no node is dialled.
func TestAcceptProxyBadHeader(t *testing.T) {
	proxy.SetProxyHeaderTimeout(t, 200*time.Millisecond)
	node := startServerAt(t, "n1", ppNodeIP+":0", proxyNode)
	srv, addr := ppBalancer(t, "accept_proxy = true", "", tnode{"n1", node.addr(), ""})
	cases := []struct{ name, send string }{
		{"http request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"bad v1 address", "PROXY TCP4 1.2.3.400 1.2.3.4 1 2\r\n"},
		{"v2 udp", string(proxyproto.AppendV2(nil, proxyproto.Header{Src: netip.MustParseAddrPort("1.2.3.4:1"), Dst: netip.MustParseAddrPort("1.2.3.4:2")})[:13]) + "\x12\x00\x0c"},
		{"nothing (late)", ""},
		{"half a header (late)", "PROXY TCP4 1.2.3."},
		{"v1 without CRLF", "PROXY UNKNOWN " + strings.Repeat("x", 120)},
	}
	for _, tc := range cases {
		c := dialFrom(t, "127.0.12.12", addr)
		if tc.send != "" {
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		n, err := c.Read(make([]byte, 1))
		if n != 0 || !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: read %d bytes, %v; want a reset", tc.name, n, err)
		}
	}
	if got := srv.Listener("l").Stats.BadProxyHeader.Load(); got != uint64(len(cases)) {
		t.Errorf("bad_proxy_header = %d, want %d", got, len(cases))
	}
	if node.accepted() != 0 {
		t.Errorf("the node was dialled %d times, want never", node.accepted())
	}
}

// ---- with HAProxy ----

// haproxy runs /usr/sbin/haproxy on a generated configuration until the
// test ends.
type haproxy struct {
	ports []int // on ppHAProxyIP; ports[0] is a frontend that answers 200
	out   lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (h *haproxy) addr(i int) string { return net.JoinHostPort(ppHAProxyIP, strconv.Itoa(h.ports[i])) }

func needHAProxy(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(haproxyPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("HAProxy is required in CI: %v", err)
		}
		t.Skipf("!!! SKIPPED: %s not found (%v); install Debian's haproxy to run the PROXY protocol interoperability tests !!!", haproxyPath, err)
	}
}

// lowFreePort picks a port in 20000-29999 (below the ephemeral range, so no
// outgoing connection takes it meanwhile) that binds on ip now.
func lowFreePort(t *testing.T, ip string, taken []int) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(10000)
		if containsInt(taken, p) {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no free port in 20000-29999")
	return 0
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// startHAProxy starts HAProxy with the configuration sections that body
// returns for its ports (n of them besides the readiness frontend), and
// waits until it accepts connections. A port taken between the pick and
// HAProxy's bind makes it exit: it is started again on other ports.
func startHAProxy(t *testing.T, n int, body func(h *haproxy) string) *haproxy {
	t.Helper()
	needHAProxy(t)
	for attempt := 0; attempt < 5; attempt++ {
		h := &haproxy{}
		for range n + 1 {
			h.ports = append(h.ports, lowFreePort(t, ppHAProxyIP, h.ports))
		}
		cfg := fmt.Sprintf(`global
	maxconn 200
defaults
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend ready
	bind %s
	mode http
	http-request return status 200
%s`, h.addr(0), body(h))
		path := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(haproxyPath, "-f", path, "-db")
		cmd.Stdout, cmd.Stderr = &h.out, &h.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			cmd.Process.Kill() // by PID: the process this test started
			<-exited
			if t.Failed() {
				t.Logf("haproxy output:\n%s", h.out.String())
			}
		})
		if h.waitReady(exited) {
			return h
		}
		t.Logf("haproxy attempt %d did not start:\n%s", attempt+1, h.out.String())
	}
	t.Fatal("haproxy did not start")
	return nil
}

// waitReady polls the readiness frontend, a bounded number of times, until
// it answers or HAProxy exits.
func (h *haproxy) waitReady(exited <-chan struct{}) bool {
	for range 400 {
		c, err := net.DialTimeout("tcp", h.addr(0), time.Second)
		if err == nil {
			c.Close()
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(25 * time.Millisecond):
		}
	}
	return false
}

// Proto Balance → HAProxy: HAProxy's accept-proxy frontend takes our v1
// and v2 headers and reports the client address it saw, which must be the
// real client's.
func TestProxyProtocolToHAProxy(t *testing.T) {
	h := startHAProxy(t, 1, func(h *haproxy) string {
		return fmt.Sprintf(`frontend pp
	bind %s accept-proxy
	mode http
	http-request return status 200 content-type text/plain lf-string "%%[src]:%%[src_port] %%[dst]:%%[dst_port]"
`, h.addr(1))
	})
	for i, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			_, addr := ppBalancer(t, "", `proxy_protocol = "`+v+`"`, tnode{"haproxy", h.addr(1), ""})
			c := dialFrom(t, fmt.Sprintf("127.0.12.%d", 20+i), addr)
			if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			_, body, ok := strings.Cut(string(resp), "\r\n\r\n")
			if !strings.HasPrefix(string(resp), "HTTP/1.1 200 ") || !ok {
				t.Fatalf("HAProxy answered %q", resp)
			}
			if want := c.LocalAddr().String() + " " + addr; body != want {
				t.Errorf("HAProxy saw %q, want %q", body, want)
			}
		})
	}
}

// HAProxy → Proto Balance: HAProxy's send-proxy (v1) and send-proxy-v2
// headers name the real client, which the guard judges and which goes on
// to the node in our own header; the data after the header is intact.
func TestAcceptProxyFromHAProxy(t *testing.T) {
	node := startServerAt(t, "n1", ppNodeIP+":0", proxyNode)
	srv, addr := ppBalancer(t, `accept_proxy = true
deny = ["127.0.12.66/32"]`, `proxy_protocol = "v2"`, tnode{"n1", node.addr(), ""})
	h := startHAProxy(t, 2, func(h *haproxy) string {
		return fmt.Sprintf(`frontend fe1
	bind %s
	mode tcp
	default_backend be1
frontend fe2
	bind %s
	mode tcp
	default_backend be2
backend be1
	mode tcp
	retries 0
	server pb %s send-proxy
backend be2
	mode tcp
	retries 0
	server pb %s send-proxy-v2
`, h.addr(1), h.addr(2), addr, addr)
	})
	for i, v := range []string{"send-proxy", "send-proxy-v2"} {
		t.Run(v, func(t *testing.T) {
			front := h.addr(1 + i)
			c := dialFrom(t, fmt.Sprintf("127.0.12.%d", 30+i), front)
			got, err := identifyAndEcho(c, nil, payloadOf(500_000))
			if err != nil {
				t.Fatal(err)
			}
			if want := c.LocalAddr().String() + " " + front; got != want {
				t.Errorf("node saw %q, want %q", got, want)
			}
		})
	}
	// The guard judges the address in the header, not HAProxy's: a denied
	// client behind HAProxy is refused, and the node never sees it.
	// (retries 0: HAProxy would otherwise take our reset, which may come
	// before it saw the connection as established, for a failed connect
	// and try again, counting a second deny.)
	accepted := node.accepted()
	c := dialFrom(t, "127.0.12.66", h.addr(1))
	io.WriteString(c, "hello\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Errorf("denied client served: %q", line)
	}
	if g := srv.Listener("l").Guard().Counters(); g.Deny != 1 {
		t.Errorf("deny counter %d, want 1", g.Deny)
	}
	if node.accepted() != accepted {
		t.Error("the node got the denied client's connection")
	}
	if n := srv.Listener("l").Stats.BadProxyHeader.Load(); n != 0 {
		t.Errorf("bad_proxy_header = %d, want 0", n)
	}
}

// ip-hash keys on the header's source: clients that all come through one
// upstream address spread over the nodes, and each source keeps its node.
func TestAcceptProxyIPHash(t *testing.T) {
	var nodes []tnode
	for _, name := range []string{"a", "b", "c"} {
		s := startServerAt(t, name, ppNodeIP+":0", hello)
		nodes = append(nodes, tnode{name, s.addr(), ""})
	}
	_, addr := ppBalancer(t, "accept_proxy = true", `algorithm = "ip-hash"`, nodes...)
	ask := func(src string) string {
		c := dialFrom(t, "127.0.12.13", addr)
		h := proxyproto.Header{Src: netip.MustParseAddrPort(src + ":1000"), Dst: netip.MustParseAddrPort("192.0.2.1:80")}
		if _, err := c.Write(append(proxyproto.AppendV2(nil, h), "hi\n"...)); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("client %s: %v", src, err)
		}
		c.Close()
		return line
	}
	first := map[string]string{}
	used := map[string]bool{}
	for i := range 30 {
		src := fmt.Sprintf("10.0.%d.1", i)
		first[src] = ask(src)
		used[first[src]] = true
	}
	if len(used) < 2 {
		t.Errorf("30 header sources all went to %v: ip-hash used the upstream's address", used)
	}
	for src, want := range first {
		if got := ask(src); got != want {
			t.Errorf("source %s went to %q, then %q", src, want, got)
		}
	}
}
