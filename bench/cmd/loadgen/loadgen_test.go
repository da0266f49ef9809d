package main

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/protobalance/protobalance/bench/internal/node"
)

// startNodes runs n nodes on loopback port 0 and returns their addresses
// joined by commas, as -target takes them.
func startNodes(t *testing.T, n int) string {
	t.Helper()
	var addrs []string
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		nd := &node.Node{Name: "n" + string(rune('1'+i)), Mode: "auto"}
		go nd.Serve(ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return strings.Join(addrs, ",")
}

func run(t *testing.T, fn func([]string) (*Result, error), args ...string) *Result {
	t.Helper()
	r, err := fn(args)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.BadSums != 0 || r.TimedOut {
		t.Fatalf("%s: %+v", r.Mode, r)
	}
	return r
}

func TestSubcommandsDirect(t *testing.T) {
	target := startNodes(t, 3)
	if r := run(t, runShort, "-target", target, "-n", "300", "-c", "5", "-max", "10s"); r.OK != 300 ||
		r.Nodes["n1"] != 100 || r.Nodes["n2"] != 100 || r.Nodes["n3"] != 100 || r.P99us <= 0 {
		t.Errorf("short: %+v", r)
	}
	if r := run(t, runKeepalive, "-target", target, "-n", "1000", "-c", "3", "-max", "10s"); r.OK != 1000 {
		t.Errorf("keepalive: %+v", r)
	}
	for _, sum := range []string{"crc32c", "sha256"} {
		r := run(t, runBulk, "-target", target, "-streams", "3", "-c", "2", "-up", "3000000", "-down", "2000001", "-sum", sum)
		if r.OK != 3 || r.Bytes != 3*5000001 || r.Gbits <= 0 {
			t.Errorf("bulk %s: %+v", sum, r)
		}
	}
	if r := run(t, runIdle, "-target", target, "-k", "200", "-hold", "10ms"); r.Opened != 200 || r.Alive != 200 {
		t.Errorf("idle: %+v", r)
	}
	if r := run(t, runProbe, "-target", target, "-max", "2s"); r.OK != 1 || r.LaunchMs <= 0 {
		t.Errorf("probe: %+v", r)
	}
}

func TestOnlyLoopback(t *testing.T) {
	for _, target := range []string{"10.0.0.1:80", "[::1]:80", "example.com:80", "127.0.0.1:80,192.168.1.1:80"} {
		if _, err := runShort([]string{"-target", target, "-n", "1"}); err == nil {
			t.Errorf("target %q accepted", target)
		}
	}
}

// TestBulkDetectsCorruption puts a relay that flips one byte downstream
// between loadgen and a node: the stream must fail its checksum.
func TestBulkDetectsCorruption(t *testing.T) {
	nodeAddr := startNodes(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			go corruptingRelay(c.(*net.TCPConn), nodeAddr)
		}
	}()
	r, err := runBulk([]string{"-target", ln.Addr().String(), "-streams", "1", "-up", "100000", "-down", "100000", "-max", "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 0 || r.Errors != 1 || r.BadSums != 1 || !strings.Contains(r.FirstErr, "download checksum") {
		t.Errorf("corruption not reported: %+v", r)
	}
}

func corruptingRelay(client *net.TCPConn, nodeAddr string) {
	defer client.Close()
	c, err := net.Dial("tcp", nodeAddr)
	if err != nil {
		return
	}
	nodeConn := c.(*net.TCPConn)
	defer nodeConn.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(nodeConn, client)
		nodeConn.CloseWrite()
	}()
	buf := make([]byte, 4096)
	var seen int
	for {
		n, err := nodeConn.Read(buf)
		if seen < 50000 && seen+n > 50000 {
			buf[50000-seen] ^= 0xff
		}
		seen += n
		if _, werr := client.Write(buf[:n]); werr != nil || err != nil {
			break
		}
	}
	client.CloseWrite()
	wg.Wait()
}
