package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func guardedConfig(listenerExtra string, node *server) string {
	return testConfig(listenerExtra, "", tnode{"n1", node.addr(), ""})
}

// tryFrom reports whether a connection from `from` was served (false: the
// balancer closed it at accept).
func tryFrom(t *testing.T, from, addr string) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false // the refusal's reset can arrive before connect returns
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hi\n")
	_, err = bufio.NewReader(c).ReadString('\n')
	return err == nil
}

// allow/deny: the longest prefix decides; a /32 allow inside a /24 deny wins.
func TestGuardLists(t *testing.T) {
	node := startServer(t, "n1", hello)
	srv, addr := balancer(t, guardedConfig(`deny = ["127.0.4.0/24"]
allow = ["127.0.4.77/32", "127.0.0.0/8"]`, node))
	if !tryFrom(t, "127.0.4.77", addr) {
		t.Error("127.0.4.77 (a /32 allow inside the /24 deny) was refused")
	}
	if tryFrom(t, "127.0.4.78", addr) {
		t.Error("127.0.4.78 (denied by the /24) was served")
	}
	if !tryFrom(t, "127.0.3.9", addr) {
		t.Error("127.0.3.9 (allowed by 127/8) was refused")
	}
	if g := srv.Listener("l").Guard().Counters(); g.Deny != 1 {
		t.Errorf("deny counter %d, want 1", g.Deny)
	}
}

// More than max_conn_rate new connections within a second bans the client;
// a well-behaved client at the same time is served throughout.
func TestGuardRateBan(t *testing.T) {
	node := startServer(t, "n1", hello)
	srv, addr := balancer(t, guardedConfig(`max_conn_rate = 5
ban_time = "1m"`, node))
	served := 0
	for i := range 10 { // well inside one second, even under -race on a busy machine
		if tryFrom(t, "127.0.4.66", addr) {
			served++
		}
		if !tryFrom(t, fmt.Sprintf("127.0.4.%d", 100+i), addr) {
			t.Fatal("a well-behaved client was refused during the flood")
		}
	}
	if served != 5 {
		t.Fatalf("the abusive client was served %d times, want exactly max_conn_rate = 5", served)
	}
	bans := srv.Listener("l").Guard().Bans(time.Now())
	if len(bans) != 1 || bans[0].Client.String() != "127.0.4.66/32" {
		t.Fatalf("bans %v, want 127.0.4.66/32", bans)
	}
}

// A listener at max_conns stops accepting (the kernel backlog queues) and
// resumes as connections close: never more than the cap proxied at once,
// every client served in the end.
func TestListenerCap(t *testing.T) {
	var now, peak atomic.Int64
	release := make(chan struct{})
	node := startServer(t, "n1", func(s *server, c *net.TCPConn) {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		now.Add(-1)
		hello(s, c)
	})
	_, addr := balancer(t, guardedConfig("max_conns = 100", node))
	var wg sync.WaitGroup
	var served atomic.Int64
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tryFrom(t, fmt.Sprintf("127.0.4.%d", 1+i%200), addr) {
				served.Add(1)
			}
		}()
	}
	waitFor(t, "100 connections to reach the node", func() bool { return now.Load() == 100 })
	close(release)
	wg.Wait()
	if p := peak.Load(); p > 100 {
		t.Fatalf("%d connections proxied at once, cap 100", p)
	}
	if s := served.Load(); s != 300 {
		t.Fatalf("%d of 300 clients served", s)
	}
}
