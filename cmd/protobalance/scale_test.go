package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var listenRE = regexp.MustCompile(`listening listener=(\S+) addrs="?\[([^\]\s]+)\]`)

// runBalancer starts `protobalance run` on cfg and returns it with the
// address of its first listener.
func runBalancer(t *testing.T, cfg string, args ...string) (*proc, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pb.toml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, exec.Command(binary(t), append([]string{"run", "-c", file}, args...)...))
	p.waitStderr(t, "msg=started")
	m := listenRE.FindStringSubmatch(p.stderr())
	if m == nil {
		t.Fatalf("no listening line in:\n%s", p.stderr())
	}
	return p, m[2]
}

func echoNodeProcess(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PB_E2E_ROLE=echo")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close() })
	p := start(t, cmd)
	return p.waitLine(t, "127.0.5.2:")
}

func forwardConfig(node string) string { return e2eConfig("", "", "n1", node) }

// e2eConfig is a config of the end-to-end tests: the head tables
// ([global], [admin], [store]; the admin server is off unless head has an
// [admin] table), listener "e2e" on 127.0.5.1:0 and cluster "c" (plus
// clusterExtra lines) over nodes given as name, address pairs.
func e2eConfig(head, clusterExtra string, nodes ...string) string {
	if !strings.Contains(head, "[admin]") {
		head = "[admin]\nlisten = \"\"\n" + head
	}
	var b strings.Builder
	b.WriteString("\n" + head)
	b.WriteString("[[listener]]\nname = \"e2e\"\nbind = \"127.0.5.1:0\"\ncluster = \"c\"\n[[cluster]]\nname = \"c\"\n")
	if clusterExtra != "" {
		b.WriteString(clusterExtra + "\n")
	}
	for i := 0; i+1 < len(nodes); i += 2 {
		fmt.Fprintf(&b, "[[cluster.node]]\nname = %q\naddress = %q\n", nodes[i], nodes[i+1])
	}
	return b.String()
}

// namedNodes starts a namedNode per name and returns name, address pairs
// for e2eConfig.
func namedNodes(t *testing.T, names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, n, namedNode(t, n))
	}
	return out
}

// 9,900 concurrent proxied connections, each passing data after all are
// open, with clients, balancer and node in three processes (each process
// has its own 20,000-descriptor limit; the balancer needs two per
// connection), on each data path.
func TestManyConcurrentConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping 9,900 connections")
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); rl.Cur < 9900+200 {
		t.Fatalf("descriptor limit %d is too low for 9,900 connections (want ulimit -n 20000)", rl.Cur)
	}
	node := echoNodeProcess(t)
	for _, dp := range []string{"loop", "goroutine"} {
		t.Run(dp, func(t *testing.T) {
			head := fmt.Sprintf("[global]\ndata_path = %q\n", dp)
			_, addr := runBalancer(t, e2eConfig(head, "", "n1", node))
			manyConnections(t, addr, 9900)
		})
	}
}

func manyConnections(t *testing.T, addr string, n int) {
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 30 * time.Second}
	buf := make([]byte, 8)
	for i := range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// Every connection is open at once; now each must carry data both ways.
	for round := range 2 {
		for i, c := range conns {
			msg := fmt.Sprintf("%04d%04d", round, i%10000)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatalf("round %d conn %d write: %v", round, i, err)
			}
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
				t.Fatalf("round %d conn %d: read %q, %v", round, i, buf, err)
			}
		}
	}
}

// SIGTERM: stop accepting, let open connections finish, then exit 0.
func TestGracefulShutdown(t *testing.T) {
	p, addr := runBalancer(t, forwardConfig(echoNodeProcess(t)))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	io.WriteString(c, "before\n")
	if l, err := r.ReadString('\n'); err != nil || l != "before\n" {
		t.Fatalf("got %q, %v", l, err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitStderr(t, "shutting down")
	// The open connection still works during the grace period...
	io.WriteString(c, "during\n")
	if l, err := r.ReadString('\n'); err != nil || l != "during\n" {
		t.Fatalf("during shutdown: got %q, %v", l, err)
	}
	// ...and new connections are refused, the listener being closed.
	if c2, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c2.Close()
		t.Fatal("a new connection was accepted after SIGTERM")
	}
	c.Close() // the last connection ends: the process exits on its own
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr())
	}
}

// check: 0 for a valid file, 1 with FILE:LINE for an invalid one.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(good, []byte(forwardConfig("127.0.5.2:9")), 0o644)
	os.WriteFile(bad, []byte(strings.Replace(forwardConfig("127.0.5.2:9"), `name = "n1"`, "name = \"n1\"\nweight = -1", 1)), 0o644)
	out, err := exec.Command(binary(t), "check", "-c", good).CombinedOutput()
	if err != nil {
		t.Fatalf("check good: %v\n%s", err, out)
	}
	out, err = exec.Command(binary(t), "check", "-c", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("check bad: %v, want exit 1\n%s", err, out)
	}
	if want := bad + ":12:"; !strings.Contains(string(out), want) || !strings.Contains(string(out), "weight") {
		t.Fatalf("check bad said %q, want %q and the key", out, want)
	}
	for _, ex := range []string{"../../examples/protobalance.toml", "../../examples/minimal.toml", "../../examples/algorithms.toml", "../../examples/fallover.toml"} {
		if out, err := exec.Command(binary(t), "check", "-c", ex).CombinedOutput(); err != nil {
			t.Errorf("check %s: %v\n%s", ex, err, out)
		}
	}
}

// SIGHUP reloads the file: a broken file is rejected with FILE:LINE and the
// running configuration keeps serving; a good one takes effect.
func TestSighupReload(t *testing.T) {
	echo := echoNodeProcess(t)
	p, addr := runBalancer(t, forwardConfig(echo))
	file := p.cmd.Args[3]
	roundTrip := func(msg string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, msg+"\n")
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(got)
	}
	os.WriteFile(file, []byte(forwardConfig(echo)+"\nbogus = 1\n"), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitStderr(t, "reload rejected")
	if !strings.Contains(p.stderr(), file+":") {
		t.Errorf("the rejection does not name %s:LINE:\n%s", file, p.stderr())
	}
	if got := roundTrip("still"); got != "still" {
		t.Fatalf("after a rejected reload: %q", got)
	}
	// A good file: the listener now sends clients to a node that answers
	// with its name instead of echoing.
	named, err := net.Listen("tcp", "127.0.5.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer named.Close()
	go func() {
		for {
			c, err := named.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "named\n")
			}()
		}
	}()
	os.WriteFile(file, []byte(forwardConfig(named.Addr().String())), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitStderr(t, "configuration applied")
	if got := roundTrip("hello"); got != "named" {
		t.Fatalf("after reload: %q, want the new node's answer", got)
	}
}

// namedNode answers every connection's first line with its name.
func namedNode(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.5.3:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, name+"\n")
			}()
		}
	}()
	return ln.Addr().String()
}

// Two independent balancer processes with the same ip-hash key and node
// names send every client to the same node (F9: nothing shared).
func TestIPHashTwinProcesses(t *testing.T) {
	cfg := e2eConfig("", "algorithm = \"ip-hash\"\nhash_key = \"twins\"", namedNodes(t, "a", "b", "c")...)
	_, addr1 := runBalancer(t, cfg)
	_, addr2 := runBalancer(t, cfg)
	seen := map[string]int{}
	for i := range 60 {
		from := fmt.Sprintf("127.0.5.%d", 100+i)
		one, two := askFrom(t, from, addr1), askFrom(t, from, addr2)
		if one != two {
			t.Fatalf("client %s: balancer 1 chose %s, balancer 2 chose %s", from, one, two)
		}
		seen[one]++
	}
	if len(seen) < 3 {
		t.Fatalf("60 clients all went to %v: not spread", seen)
	}
}

// Affinity survives a restart: clients learnt before SIGTERM go back to
// their nodes on their first connection after the balancer starts again
// (the table is restored from the store before the listeners open). The
// algorithm is random, so agreement is not a coincidence of pick order.
func TestAffinitySurvivesRestart(t *testing.T) {
	clients := 10000
	if testing.Short() {
		clients = 300
	}
	affinityAcrossRestart(t, clients, false)
}

// After a crash (SIGKILL), every record older than the flush interval is
// back: the stated loss bound holds.
func TestAffinitySurvivesCrash(t *testing.T) {
	affinityAcrossRestart(t, 1000, true)
}

func affinityAcrossRestart(t *testing.T, clients int, crash bool) {
	store := fmt.Sprintf("[store]\npath = %q\n", filepath.Join(t.TempDir(), "pb.db"))
	cfg := e2eConfig(store, "algorithm = \"random\"\naffinity = true", namedNodes(t, "a", "b", "c")...)
	client := func(i int) string { return fmt.Sprintf("127.1.%d.%d", i/250, i%250+1) }

	p, addr := runBalancer(t, cfg)
	learnt := make([]string, clients)
	for i := range clients {
		learnt[i] = askFrom(t, client(i), addr)
	}
	stop := syscall.SIGTERM
	if crash {
		// A crash loses at most the last affinity.FlushInterval (100 ms)
		// of new records: wait past it, then kill without a chance to flush.
		time.Sleep(300 * time.Millisecond)
		stop = syscall.SIGKILL
	}
	p.cmd.Process.Signal(stop)
	if err := p.cmd.Wait(); err != nil && !crash {
		t.Fatalf("first balancer: %v", err)
	}
	_, addr = runBalancer(t, cfg)
	moved := 0
	for i := range clients {
		if got := askFrom(t, client(i), addr); got != learnt[i] {
			moved++
			if moved < 5 {
				t.Errorf("client %s: %s before the restart, %s after", client(i), learnt[i], got)
			}
		}
	}
	if moved > 0 {
		t.Fatalf("%d of %d clients changed node across the restart", moved, clients)
	}
}
