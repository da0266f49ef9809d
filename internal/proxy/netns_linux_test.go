package proxy_test

// Tests in network namespaces of their own (DESIGN.md F12): the test, run
// normally, creates the namespaces with ip(8) and re-executes this test
// binary inside them with PB_NETNS_ROLE set; the child runs the same test
// function, which sees the role and plays it. They need root and ip(8):
// without them they skip loudly, or fail when CI=true.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

const roleEnv = "PB_NETNS_ROLE"

// needNetns skips (or fails, under CI=true) unless namespaces can be made.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "needs ip(8) (Debian package iproute2): %v", err)
	}
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", msg)
	}
	t.Skipf("SKIPPED — %s", msg)
}

// ip runs ip(8) with args; a failure is fatal.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates the namespace pb-PREFIX-PID with lo up, deleted at
// cleanup. The kernel refusing it skips the test.
func newNetns(t *testing.T, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("pb-%s-%d", prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED — the kernel refused a network namespace: ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	})
	ip(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// childCmd is this test binary re-executed in ns, running only test, as role.
func childCmd(ns, test, role string) *exec.Cmd {
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^"+test+"$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	return cmd
}

// runChild runs a child to its end, relays its output and fails the test
// when it fails. A child's "PB-SKIP reason" line skips the test.
func runChild(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	t.Logf("child %s:\n%s", cmd.Env[len(cmd.Env)-1], out)
	if i := bytes.Index(out, []byte("PB-SKIP ")); i >= 0 {
		line, _, _ := strings.Cut(string(out[i+len("PB-SKIP "):]), "\n")
		t.Skipf("SKIPPED — %s", line)
	}
	if err != nil {
		t.Fatalf("child %s failed: %v", cmd.Env[len(cmd.Env)-1], err)
	}
	return string(out)
}

// ---- Source address pools --------------------------------------------------

// portRange is the child namespace's ip_local_port_range: ten ports, so a
// source address runs out after ten connections to one node address.
const (
	portLo, portHi = 40000, 40009
	portRange      = portHi - portLo + 1
)

// TestSourcePoolsNetns shows, in a namespace with a ten-port ephemeral
// range, that each source address is worth one port range towards a node
// address, that rotation multiplies the ceiling, that a hashed client
// always leaves from one address and is refused (not moved) when that
// address is exhausted — and that running out closes the client at once,
// is counted as no_source_port, and does not mark the node down.
func TestSourcePoolsNetns(t *testing.T) {
	if os.Getenv(roleEnv) == "pools" {
		sourcePoolsChild(t)
		return
	}
	if os.Getenv(roleEnv) != "" {
		t.Skip("another role")
	}
	needNetns(t)
	ns := newNetns(t, "src")
	runChild(t, childCmd(ns, "TestSourcePoolsNetns", "pools"))
}

func sourcePoolsChild(t *testing.T) {
	err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", fmt.Appendf(nil, "%d %d", portLo, portHi), 0o644)
	if err != nil {
		fmt.Printf("PB-SKIP cannot narrow ip_local_port_range in the namespace: %v\n", err)
		return
	}
	p := &poolProbe{t: t, nextPort: 20000}
	for i, tc := range []struct {
		addrs []string
		hash  bool
	}{
		{[]string{"127.0.4.11"}, false},
		{[]string{"127.0.4.11", "127.0.4.12"}, false},
		{[]string{"127.0.4.11", "127.0.4.12", "127.0.4.13"}, false},
	} {
		t.Run(fmt.Sprintf("rotate-%d", len(tc.addrs)), func(t *testing.T) {
			p.t = t
			srv, addr := p.start(i, tc.addrs, tc.hash)
			client := netip.MustParseAddr("127.0.1.1")
			res := p.fill(addr, client, len(tc.addrs)*portRange+3, 3)
			want := len(tc.addrs) * portRange
			t.Logf("MEASURED %d source address(es), source_hash=false: %d connections held (%v), then %d refused within %v at most, no_source_port=%d",
				len(tc.addrs), res.held, res.bySource, res.refused, res.slowestRefusal, noSourcePort(srv))
			if res.held != want {
				t.Errorf("held %d connections, want %d (%d ports × %d addresses)", res.held, want, portRange, len(tc.addrs))
			}
			for _, a := range tc.addrs {
				if n := res.bySource[netip.MustParseAddr(a)]; n != portRange {
					t.Errorf("%s carried %d connections, want %d: %v", a, n, portRange, res.bySource)
				}
			}
			if k := min(len(tc.addrs), len(res.order)); len(distinct(res.order[:k])) != k {
				t.Errorf("the first %d connections left from %v: not spread", k, res.order[:k])
			}
			p.checkRefusals(srv, res, 3)
		})
	}
	t.Run("hash-3", func(t *testing.T) {
		p.t = t
		srv, addr := p.start(3, []string{"127.0.4.11", "127.0.4.12", "127.0.4.13"}, true)
		a := netip.MustParseAddr("127.0.1.1")
		res := p.fill(addr, a, portRange+3, 3)
		t.Logf("MEASURED source_hash=true, client %v: %d held (%v), then %d refused, no_source_port=%d",
			a, res.held, res.bySource, res.refused, noSourcePort(srv))
		if res.held != portRange || len(res.bySource) != 1 {
			t.Fatalf("client %v held %d connections from %v; want %d from one address", a, res.held, res.bySource, portRange)
		}
		home := res.order[0]
		p.checkRefusals(srv, res, 3)
		// Other clients: each stays on one address; those hashed to a
		// free address get through although a's address is exhausted.
		others := 0
		for i := 2; i < 40 && others < 2; i++ {
			c := netip.AddrFrom4([4]byte{127, 0, 1, byte(i)})
			r := p.fill(addr, c, 3, 1)
			res.refused += r.refused
			if len(r.bySource) > 1 {
				t.Fatalf("client %v left from several addresses: %v", c, r.bySource)
			}
			if r.held > 0 && r.order[0] != home {
				others++
				t.Logf("client %v: always %v (%d connections)", c, r.order[0], r.held)
			} else if r.refused > 0 {
				t.Logf("client %v: refused (hashed to the exhausted %v)", c, home)
			}
		}
		if others == 0 {
			t.Error("no client got through another address while one was exhausted")
		}
		p.checkRefusals(srv, res, 3)
	})
}

// poolProbe opens proxied connections in the child namespace.
type poolProbe struct {
	t        *testing.T
	nextPort int // client ports are explicit, outside the narrowed range
}

// start runs a node reporting the peer it sees, and a balancer over it
// with the given source addresses; scenario i gets ports of its own, so
// TIME-WAIT left by an earlier scenario does not matter.
func (p *poolProbe) start(i int, addrs []string, hash bool) (*proxy.Server, string) {
	t := p.t
	node := startServerAt(t, "n", fmt.Sprintf("%s:%d", nodeIP, 9001+i), func(_ *server, c *net.TCPConn) {
		if _, err := io.WriteString(c, c.RemoteAddr().String()+"\n"); err == nil {
			io.Copy(io.Discard, c)
		}
	})
	quoted := make([]string, len(addrs))
	for j, a := range addrs {
		quoted[j] = fmt.Sprintf("%q", a)
	}
	toml := testConfig("", fmt.Sprintf("source_addresses = [%s]\nsource_hash = %v\nretry_interval = \"1h\"", strings.Join(quoted, ", "), hash),
		tnode{"n", node.addr(), ""})
	toml = strings.ReplaceAll(toml, "{{BIND}}", fmt.Sprintf("%s:%d", balancerIP, 8001+i))
	srv, addr := balancer(t, toml)
	t.Logf("data path %q", srv.DataPath())
	return srv, addr
}

type poolResult struct {
	held, refused  int
	bySource       map[netip.Addr]int
	order          []netip.Addr // source of each held connection
	slowestRefusal time.Duration
}

// fill opens up to limit connections from client through addr, keeping
// those the node answers open (closed at cleanup), and stops after stop
// refusals. A connection neither answered nor closed within 10s fails the
// test: running out must never hang.
func (p *poolProbe) fill(addr string, client netip.Addr, limit, stop int) poolResult {
	t := p.t
	res := poolResult{bySource: map[netip.Addr]int{}}
	for range limit {
		if res.refused >= stop {
			break
		}
		p.nextPort++
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: client.AsSlice(), Port: p.nextPort}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("client %v: %v", client, err)
		}
		began := time.Now()
		c.SetReadDeadline(began.Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case err == nil:
			t.Cleanup(func() { c.Close() })
			seen, perr := netip.ParseAddrPort(strings.TrimSpace(line))
			if perr != nil {
				t.Fatalf("node said %q: %v", line, perr)
			}
			res.held++
			res.bySource[seen.Addr()]++
			res.order = append(res.order, seen.Addr())
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			res.slowestRefusal = max(res.slowestRefusal, time.Since(began))
			res.refused++
			c.Close()
		default:
			t.Fatalf("client %v, connection %d: neither served nor closed: %v", client, res.held+res.refused+1, err)
		}
	}
	return res
}

// checkRefusals checks that there were at least want refused connections,
// that the server counted every refusal of its life as no_source_port (res
// holds them all), and that our own exhaustion did not mark the node down.
func (p *poolProbe) checkRefusals(srv *proxy.Server, res poolResult, want int) {
	t := p.t
	t.Helper()
	if res.refused < want {
		t.Errorf("%d connections refused after the ceiling, want %d", res.refused, want)
	}
	if got := noSourcePort(srv); got != uint64(res.refused) {
		t.Errorf("no_source_port = %d, want %d (one per refused connection)", got, res.refused)
	}
	n := nodeOf(srv, "c", "n")
	if !n.Available() || n.Stats.Failures.Load() != 0 || n.Stats.MarkedDown.Load() != 0 {
		t.Errorf("the node paid for our exhaustion: available=%v failures=%d marked_down=%d",
			n.Available(), n.Stats.Failures.Load(), n.Stats.MarkedDown.Load())
	}
}

func noSourcePort(srv *proxy.Server) uint64 { return srv.Listeners()[0].Stats.NoSourcePort.Load() }

func distinct(as []netip.Addr) map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, a := range as {
		m[a] = true
	}
	return m
}

// ---- Transparent mode --------------------------------------------------------

// Addresses of the transparent test: client —veth— balancer —veth— node.
const (
	tClientIP   = "10.201.1.2"
	tBalancerIP = "10.201.1.1"
	tNodeIP     = "10.201.2.2"
	tBalNodeIP  = "10.201.2.1" // the balancer's side towards the node
	tBalancer   = tBalancerIP + ":8000"
	tNode       = tNodeIP + ":9000"
)

// TestTransparentNetns runs a client, a balancer with transparent = true
// and a node in three namespaces (the routing of docs/transparent.md):
// the node must see the client's own address, and bytes round-trip.
func TestTransparentNetns(t *testing.T) {
	switch os.Getenv(roleEnv) {
	case "":
	case "tnode":
		transparentNode(t)
		return
	case "tbalancer":
		transparentBalancer(t)
		return
	case "tclient":
		transparentClient(t)
		return
	default:
		t.Skip("another role")
	}
	needNetns(t)
	cns, bns, nns := newNetns(t, "tc"), newNetns(t, "tb"), newNetns(t, "tn")
	// Links: client c0 — b0 balancer b1 — n0 node.
	for _, args := range [][]string{
		{"-n", bns, "link", "add", "b0", "type", "veth", "peer", "name", "c0", "netns", cns},
		{"-n", bns, "link", "add", "b1", "type", "veth", "peer", "name", "n0", "netns", nns},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("SKIPPED — the kernel refused a veth pair: ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip(t, "-n", cns, "addr", "add", tClientIP+"/24", "dev", "c0")
	ip(t, "-n", bns, "addr", "add", tBalancerIP+"/24", "dev", "b0")
	ip(t, "-n", bns, "addr", "add", tBalNodeIP+"/24", "dev", "b1")
	ip(t, "-n", nns, "addr", "add", tNodeIP+"/24", "dev", "n0")
	for _, l := range [][2]string{{cns, "c0"}, {bns, "b0"}, {bns, "b1"}, {nns, "n0"}} {
		ip(t, "-n", l[0], "link", "set", l[1], "up")
	}
	// The node answers the client network through the balancer...
	ip(t, "-n", nns, "route", "add", "10.201.1.0/24", "via", tBalNodeIP)
	// ...which takes those answers, addressed to the client's IP, as its own.
	ip(t, "-n", bns, "rule", "add", "iif", "b1", "lookup", "100")
	ip(t, "-n", bns, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")

	node := startDaemon(t, childCmd(nns, "TestTransparentNetns", "tnode"))
	bal := startDaemon(t, childCmd(bns, "TestTransparentNetns", "tbalancer"))
	out := runChild(t, childCmd(cns, "TestTransparentNetns", "tclient"))
	_, seen, ok := strings.Cut(out, "PB-RESULT node saw ")
	seen, _, _ = strings.Cut(seen, "\n")
	if !ok {
		t.Fatal("the client reported no result")
	}
	t.Logf("MEASURED transparent: the node saw %s; the client is %s", seen, tClientIP)
	bal.stop(t)
	node.stop(t)
}

// daemon is a child that runs until its standard input closes.
type daemon struct {
	cmd   *exec.Cmd
	name  string
	stdin io.WriteCloser
	done  chan struct{} // closed when the child has ended and its output is read
	err   error         // the child's exit, once done

	mu  sync.Mutex // guards out
	out bytes.Buffer
}

// startDaemon starts cmd and waits for its "PB-READY" line; the child is
// killed at cleanup if still running.
func startDaemon(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{cmd: cmd, name: cmd.Env[len(cmd.Env)-1], done: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.stdin = stdin
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if strings.HasPrefix(sc.Text(), "PB-READY") {
				close(ready)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		d.err = cmd.Wait()
		pw.Close()
		close(d.done)
	}()
	t.Cleanup(d.kill)
	select {
	case <-ready:
		return d
	case <-d.done:
	case <-time.After(time.Minute):
		t.Fatalf("child %s not ready within a minute:\n%s", d.name, d.output())
	}
	out := d.output()
	if i := strings.Index(out, "PB-SKIP "); i >= 0 {
		line, _, _ := strings.Cut(out[i+len("PB-SKIP "):], "\n")
		t.Skipf("SKIPPED — %s", line)
	}
	t.Fatalf("child %s ended before it was ready (%v):\n%s", d.name, d.err, out)
	return nil
}

func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// stop closes the daemon's input, waits for its end and relays its output.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.stdin.Close()
	<-d.done
	t.Logf("child %s:\n%s", d.name, d.output())
	if d.err != nil {
		t.Errorf("child %s: %v", d.name, d.err)
	}
}

// kill ends the daemon if it still runs (a process we started, by its id).
func (d *daemon) kill() {
	d.stdin.Close()
	select {
	case <-d.done:
	default:
		d.cmd.Process.Kill()
		<-d.done
	}
}

// waitStdin blocks until the parent closes our standard input.
func waitStdin() { io.Copy(io.Discard, os.Stdin) }

func transparentNode(t *testing.T) {
	ln, err := net.Listen("tcp", tNode)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Printf("node: accepted from %s\n", c.RemoteAddr())
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.WriteString(c, c.RemoteAddr().String()+"\n")
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	fmt.Println("PB-READY node on", tNode)
	waitStdin()
}

func transparentBalancer(t *testing.T) {
	toml := testConfig("", "transparent = true", tnode{"n", tNode, ""})
	toml = strings.ReplaceAll(toml, "{{BIND}}", tBalancer)
	cfg, err := config.Parse("transparent.toml", []byte(toml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine(), Log: testLogger(t), DataPath: os.Getenv("PB_DATA_PATH")})
	if err != nil && strings.Contains(err.Error(), "no routing policy") {
		t.Fatalf("the routing set-up is in place, yet: %v", err)
	}
	if err != nil {
		fmt.Printf("PB-SKIP the balancer refused transparent = true: %v\n", err)
		return
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer shutdownNow(srv)
	fmt.Println("PB-READY balancer on", tBalancer)
	waitStdin()
	ls := &srv.Listeners()[0].Stats
	n := nodeOf(srv, "c", "n")
	fmt.Printf("balancer: no_node=%d no_source_port=%d node failures=%d\n", ls.NoNode.Load(), ls.NoSourcePort.Load(), n.Stats.Failures.Load())
}

func transparentClient(t *testing.T) {
	c, err := net.DialTimeout("tcp", tBalancer, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a broken route must not hang the test
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no word from the node through the balancer: %v (is IP_TRANSPARENT routing in place?)", err)
	}
	seen := strings.TrimSpace(line)
	fmt.Printf("PB-RESULT node saw %s\n", seen)
	if ap, err := netip.ParseAddrPort(seen); err != nil || ap.Addr() != netip.MustParseAddr(tClientIP) {
		t.Errorf("the node saw %q; want the client's own address %s", seen, tClientIP)
	}
	payload := bytes.Repeat([]byte("transparent "), 20000)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	back, err := io.ReadAll(r)
	if werr := <-errc; werr != nil {
		t.Fatalf("write: %v", werr)
	}
	if err != nil || !bytes.Equal(back, payload) {
		t.Fatalf("round trip: %d of %d bytes back, err %v", len(back), len(payload), err)
	}
	fmt.Printf("PB-RESULT %d bytes round-tripped\n", len(back))
}

// ---- The capability check ------------------------------------------------------

// TestTransparentNeedsCapability re-executes the test binary in a user
// namespace of its own, where it holds no capability over the network
// namespace it runs in: New must refuse transparent = true by name.
func TestTransparentNeedsCapability(t *testing.T) {
	if os.Getenv(roleEnv) == "nocap" || os.Getenv(roleEnv) == "" && os.Geteuid() != 0 {
		wantCapabilityError(t) // an unprivileged process lacks it already
		return
	}
	if os.Getenv(roleEnv) != "" {
		t.Skip("another role")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestTransparentNeedsCapability$", "-test.v", "-test.count=1", "-test.timeout=1m")
	cmd.Env = append(os.Environ(), roleEnv+"=nocap")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	var pe *os.PathError
	if errors.As(err, &pe) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) {
		t.Skipf("SKIPPED — the kernel refused a user namespace: %v", err)
	}
	t.Logf("child in a user namespace:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !bytes.Contains(out, []byte("PB-RESULT cluster \"c\": transparent = true needs CAP_NET_ADMIN")) {
		t.Fatal("the child did not report the capability error")
	}
}

// wantCapabilityError checks that New refuses transparent = true in a
// process without CAP_NET_ADMIN, naming the cluster and the capability.
func wantCapabilityError(t *testing.T) {
	toml := strings.ReplaceAll(testConfig("", "transparent = true", tnode{"n", nodeIP + ":9", ""}), "{{BIND}}", balancerIP+":0")
	cfg, err := config.Parse("nocap.toml", []byte(toml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine(), Log: testLogger(t)})
	fmt.Printf("PB-RESULT %v\n", err)
	want := `cluster "c": transparent = true needs CAP_NET_ADMIN (or CAP_NET_RAW) to set IP_TRANSPARENT: setsockopt IP_TRANSPARENT: operation not permitted`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("New without the capability: %v\nwant prefix: %s", err, want)
	}
}
