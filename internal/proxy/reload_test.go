package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

// twoClusters is a config with listener "l" on bind pointing at cluster
// "a" (nodes a1 with weight wa) or whatever listenerCluster says, and a
// cluster "b" with node b1.
func twoClusters(bind, listenerCluster string, a1, b1 string, wa int) string {
	return fmt.Sprintf(`
[admin]
listen = ""
[[listener]]
name = "l"
bind = %q
cluster = %q
[[cluster]]
name = "a"
[[cluster.node]]
name = "a1"
address = %q
weight = %d
[[cluster]]
name = "b"
[[cluster.node]]
name = "b1"
address = %q
`, bind, listenerCluster, a1, wa, b1)
}

func apply(t *testing.T, srv *proxy.Server, toml string) error {
	t.Helper()
	cfg, err := config.Parse("reload.toml", []byte(toml), t.TempDir())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return srv.Apply(cfg, 0)
}

// A reload that moves the listener to another cluster keeps the socket and
// the open connections; new connections go to the new cluster.
func TestReloadKeepsConnections(t *testing.T) {
	a := startServer(t, "a1", hello)
	b := startServer(t, "b1", hello)
	srv, addr := balancer(t, twoClusters("{{BIND}}", "a", a.addr(), b.addr(), 1))
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := bufio.NewReader(held)
	say := func(want string) {
		t.Helper()
		io.WriteString(held, "hi\n")
		if got, err := r.ReadString('\n'); err != nil || got != want+"\n" {
			t.Fatalf("held connection: %q, %v; want %q", got, err, want)
		}
	}
	say("a1")
	if err := apply(t, srv, twoClusters(addr, "b", a.addr(), b.addr(), 1)); err != nil {
		t.Fatal(err)
	}
	if got, err := ask(t, addr, "hi"); err != nil || got != "b1" {
		t.Fatalf("after reload: %q, %v; want b1", got, err)
	}
	say("a1") // the established connection was not touched
}

// A reload whose new listener cannot bind is rejected whole and changes
// nothing.
func TestReloadBadBindChangesNothing(t *testing.T) {
	a := startServer(t, "a1", hello)
	b := startServer(t, "b1", hello)
	srv, addr := balancer(t, twoClusters("{{BIND}}", "a", a.addr(), b.addr(), 1))
	busy, err := net.Listen("tcp", balancerIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := twoClusters(busy.Addr().String(), "b", a.addr(), b.addr(), 1)
	if err := apply(t, srv, bad); err == nil || !strings.Contains(err.Error(), `listener "l"`) {
		t.Fatalf("reload onto a busy port: %v, want an error naming the listener", err)
	}
	if got, err := ask(t, addr, "hi"); err != nil || got != "a1" {
		t.Fatalf("after the rejected reload: %q, %v; want a1 on the old address", got, err)
	}
}

// Run-time changes (a weight, a state, a listener switch) hold across a
// reload unless the file changes that same key.
func TestReloadPrecedence(t *testing.T) {
	a := startServer(t, "a1", hello)
	b := startServer(t, "b1", hello)
	text := twoClusters("{{BIND}}", "a", a.addr(), b.addr(), 1)
	srv, addr := balancer(t, text)
	text = strings.Replace(text, "{{BIND}}", addr, 1)

	a1 := nodeOf(srv, "a", "a1")
	a1.SetWeight(7)
	a1.SetState(cluster.Yellow)
	if err := srv.SwitchListener("l", "b"); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, srv, text); err != nil { // the same file again
		t.Fatal(err)
	}
	if got := nodeOf(srv, "a", "a1"); got != a1 || got.Weight() != 7 || got.State() != cluster.Yellow {
		t.Fatalf("after reloading the same file: same node %v, weight %d, state %v; want the run-time values", got == a1, got.Weight(), got.State())
	}
	if got := srv.Listener("l").Cluster().Name; got != "b" {
		t.Fatalf("listener points at %q after reload, want the run-time switch to b", got)
	}
	// Now the file changes the weight and the listener's cluster.
	changed := strings.Replace(twoClusters(addr, "b", a.addr(), b.addr(), 3), `cluster = "b"`, `cluster = "a"`, 1)
	changed = strings.Replace(changed, `listener]]
name = "l"
bind = "`+addr+`"
cluster = "a"`, `listener]]
name = "l"
bind = "`+addr+`"
cluster = "b"`, 1)
	if err := apply(t, srv, changed); err != nil {
		t.Fatal(err)
	}
	if w := nodeOf(srv, "a", "a1").Weight(); w != 3 {
		t.Fatalf("weight %d after the file changed it to 3", w)
	}
}

// With an Options.Listen hook that keeps its own copy of every socket (as
// tableflip does for a binary upgrade), a listener a reload rebinds stops
// listening for good: its old address refuses clients, and a later reload
// can bind it again.
func TestListenHookReleasesRebound(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("shutdown(2) of a listening socket is Linux-only here")
	}
	a := startServer(t, "a1", hello)
	b := startServer(t, "b1", hello)
	var mu sync.Mutex
	var copies []*os.File
	calls := 0
	hook := func(network, addr string) (net.Listener, error) {
		ln, err := proxy.ListenConfig().Listen(context.Background(), network, addr)
		if err != nil {
			return nil, err
		}
		f, err := ln.(*net.TCPListener).File() // the hook's copy
		if err != nil {
			ln.Close()
			return nil, err
		}
		mu.Lock()
		copies = append(copies, f)
		calls++
		mu.Unlock()
		return ln, nil
	}
	t.Cleanup(func() {
		for _, f := range copies {
			f.Close()
		}
	})
	cfg, err := config.Parse("test.toml", []byte(twoClusters(balancerIP+":0", "a", a.addr(), b.addr(), 1)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine(), Listen: hook})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdownNow(srv) })
	first := srv.Listeners()[0].Addrs()[0].String()
	if got, err := ask(t, first, "hi"); err != nil || got != "a1" {
		t.Fatalf("before the reload: %q, %v", got, err)
	}
	free, err := net.Listen("tcp", balancerIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	free.Close()
	if err := apply(t, srv, twoClusters(free.Addr().String(), "a", a.addr(), b.addr(), 1)); err != nil {
		t.Fatal(err)
	}
	second := srv.Listeners()[0].Addrs()[0].String()
	if second == first {
		t.Fatalf("the reload kept %s", first)
	}
	c, err := net.DialTimeout("tcp", first, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("the rebound listener's old address %s still accepts connections", first)
	}
	if err := apply(t, srv, twoClusters(first, "b", a.addr(), b.addr(), 1)); err != nil {
		t.Fatalf("binding the released address again: %v", err)
	}
	if got, err := ask(t, first, "hi"); err != nil || got != "b1" {
		t.Fatalf("after binding it again: %q, %v; want b1", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 {
		t.Fatalf("the hook opened %d sockets, want 3", calls)
	}
}
