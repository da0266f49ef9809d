//go:build linux && !relay_portable

package relay_test

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/relay"
	"github.com/protobalance/protobalance/internal/relay/relaytest"
)

// TestIdleHoldsNothing: idle relayed connections, even ones that moved
// enough to be on the splice path, hold no buffer, no pipe and no
// descriptor beyond their sockets.
func TestIdleHoldsNothing(t *testing.T) {
	const conns = 200
	const size = 100 << 10 // past the splice threshold both ways
	rig := newRig(t)
	relay.DrainIdlePipes()
	before := countFDs(t)
	r := relay.NewGoroutine()
	pairs := make([]*relaytest.Pair, conns)
	for i := range pairs {
		pairs[i] = rig.Pair(t, r, relay.Options{IdleTimeout: time.Hour})
	}
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Add(2)
		go func() { defer wg.Done(); exchange(t, p.Client, p.Node, size, uint64(i)) }()
		go func() { defer wg.Done(); exchange(t, p.Node, p.Client, size, uint64(i)+1) }()
	}
	wg.Wait()

	// The bytes have arrived; each direction gives back its pipe when its
	// next splice finds the socket empty, just after. No signal marks that
	// moment, so poll for it.
	eventually(t, func() bool { return relay.BuffersOut() == 0 && relay.PipesOut() == 0 })
	after := countFDs(t)
	idle := relay.IdlePipes()
	t.Logf("%d idle conns: +%d sockets, +%d pipe fds (%d pooled pipes)",
		conns, after.sockets-before.sockets, after.pipes-before.pipes, idle)
	if got, want := after.sockets-before.sockets, 4*conns; got != want {
		t.Errorf("%d more sockets, want %d (4 per relayed conn)", got, want)
	}
	if got, want := after.pipes-before.pipes, 2*idle; got != want {
		t.Errorf("%d more pipe fds, want %d (the pool's %d pipes, none held by a conn)", got, want, idle)
	}
	if after.other != before.other {
		t.Errorf("other descriptors went from %d to %d", before.other, after.other)
	}
	for _, p := range pairs {
		if p.Ended() {
			t.Fatalf("a relay ended: %+v", p.Wait(t))
		}
	}
}

// exchange sends size bytes from one end to the other and checks them.
func exchange(t *testing.T, from, to *net.TCPConn, size int, seed uint64) {
	sum, err := send(from, size, seed)
	if err != nil {
		t.Errorf("send: %v", err)
		return
	}
	n, got, err := recv(io.LimitReader(to, int64(size)))
	if err != nil || n != int64(size) || got != sum {
		t.Errorf("exchange: got %d of %d bytes (sum match %v), err %v", n, size, got == sum, err)
	}
}

// eventually polls cond until it holds, failing the test after
// relaytest.WaitLimit.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for limit := time.Now().Add(relaytest.WaitLimit); !cond(); {
		if time.Now().After(limit) {
			t.Fatalf("condition not reached after %v", relaytest.WaitLimit)
		}
		time.Sleep(time.Millisecond)
	}
}

type fdCount struct{ sockets, pipes, other int }

func countFDs(t *testing.T) fdCount {
	t.Helper()
	names, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	var c fdCount
	for _, name := range names {
		target, err := os.Readlink(name)
		switch {
		case err != nil: // the fd of the Glob's own directory read
		case strings.HasPrefix(target, "socket:"):
			c.sockets++
		case strings.HasPrefix(target, "pipe:"):
			c.pipes++
		default:
			c.other++
		}
	}
	return c
}

// TestIdleRSS measures the resident memory per idle relayed connection.
// It is a measurement, not a check: set RELAY_RSS_CONNS (e.g. 3000) to
// run it, with -v to see the numbers. With RELAY_RSS_GROWN=1 the goroutine
// calling Relay first grows its stack past 8 KiB, as a proxy's connection
// goroutine that dialled would have.
func TestIdleRSS(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RELAY_RSS_CONNS"))
	if n <= 0 {
		t.Skip("set RELAY_RSS_CONNS=3000 to measure")
	}
	var r relay.Relay = relay.NewGoroutine()
	if os.Getenv("RELAY_RSS_GROWN") != "" {
		r = grownCaller{r}
	}
	rig := newRig(t)
	settle := func() (rss, stack uint64) {
		for range 3 { // each GC halves an idle stack at most once
			runtime.GC()
		}
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return readRSS(t), ms.StackInuse
	}
	rss0, _ := settle()
	pairs := make([]*relaytest.Pair, n)
	for i := range pairs {
		pairs[i] = rig.Conns(t)
	}
	rss1, stack1 := settle()
	for _, p := range pairs {
		p.Start(t, r, relay.Options{IdleTimeout: time.Hour, FinTimeout: time.Minute})
		roundTrip(t, p.Client, p.Node, "ping")
		roundTrip(t, p.Node, p.Client, "pong")
	}
	eventually(t, func() bool { return relay.BuffersOut() == 0 && relay.PipesOut() == 0 })
	rss2, stack2 := settle()
	per := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(n) }
	conns := per(rss0, rss1)
	t.Logf("%d conns, 4 sockets each (2 test ends, the relay's 2): %.0f B RSS per conn", n, conns)
	t.Logf("relaying, idle (2 goroutines, one the caller's): +%.0f B RSS, of which %.0f B stack, per conn",
		per(rss1, rss2), per(stack1, stack2))
	t.Logf("relay + its 2 sockets' share: %.0f B per idle relayed conn", per(rss1, rss2)+conns/2)
}

// grownCaller calls Relay from a stack grown like a dialling goroutine's.
type grownCaller struct{ r relay.Relay }

func (g grownCaller) Relay(client, node *net.TCPConn, opt relay.Options) relay.Result {
	growStack(40)
	return g.r.Relay(client, node, opt)
}

// growStack uses about n*200 bytes of stack.
//
//go:noinline
func growStack(n int) byte {
	var b [200]byte
	b[n%200] = byte(n)
	if n == 0 {
		return b[0]
	}
	return growStack(n-1) + b[n%200]
}

func readRSS(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
