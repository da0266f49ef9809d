package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func testClient(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// Hash mode: a client always leaves from the same address, whichever
// cluster (same list) and whatever the counter; only try 0 exists; the
// hash spreads clients over every address of the node's family.
func TestSourcePickHash(t *testing.T) {
	list := addrs("192.0.2.1", "2001:db8::1", "192.0.2.2", "192.0.2.3", "2001:db8::2")
	var turn1, turn2 atomic.Uint32
	a := clusterSources{addrs: list, hash: true, turn: &turn1}
	b := clusterSources{addrs: list, hash: true, turn: &turn2} // another cluster, e.g. FTP data
	seen4 := map[netip.Addr]int{}
	seen6 := map[netip.Addr]int{}
	for i := range 300 {
		client := testClient(i)
		src, ok := a.pick(client, a.start(client), false, 0)
		if !ok || !src.Is4() {
			t.Fatalf("client %v: pick = %v, %v; want an IPv4 address", client, src, ok)
		}
		for range 3 {
			if again, _ := a.pick(client, a.start(client), false, 0); again != src {
				t.Fatalf("client %v: %v then %v", client, src, again)
			}
		}
		if other, _ := b.pick(client, b.start(client), false, 0); other != src {
			t.Fatalf("client %v: %v in one cluster, %v in another with the same list", client, src, other)
		}
		if _, ok := a.pick(client, a.start(client), false, 1); ok {
			t.Fatalf("client %v: hash mode offered a second address", client)
		}
		// A mapped client is the same client.
		mapped := netip.AddrFrom16(client.As16())
		if m, _ := a.pick(mapped, a.start(mapped), false, 0); m != src {
			t.Fatalf("client %v: %v, mapped %v", client, src, m)
		}
		seen4[src]++
		src6, ok := a.pick(client, a.start(client), true, 0)
		if !ok || !src6.Is6() {
			t.Fatalf("client %v towards IPv6: pick = %v, %v", client, src6, ok)
		}
		seen6[src6]++
	}
	if turn1.Load() != 0 {
		t.Errorf("hash mode moved the rotation counter to %d", turn1.Load())
	}
	if len(seen4) != 3 || len(seen6) != 2 {
		t.Fatalf("300 clients used %v (IPv4) and %v (IPv6); want every address", seen4, seen6)
	}
	for a, n := range seen4 {
		if n < 50 { // 100 expected
			t.Errorf("%v: %d of 300 clients; the hash is lopsided: %v", a, n, seen4)
		}
	}
}

// Rotation: successive connections start at successive addresses, and
// each connection's tries visit every address of the family once.
func TestSourcePickRotate(t *testing.T) {
	var turn atomic.Uint32
	s := clusterSources{addrs: addrs("192.0.2.1", "2001:db8::1", "192.0.2.2", "192.0.2.3", "2001:db8::2"), turn: &turn}
	client := netip.MustParseAddr("10.0.0.1")
	first := map[netip.Addr]int{}
	for conn := range 30 {
		start := s.start(client)
		tried := map[netip.Addr]bool{}
		for try := 0; ; try++ {
			src, ok := s.pick(client, start, false, try)
			if !ok {
				if try != 3 {
					t.Fatalf("connection %d: %d IPv4 addresses offered, want 3", conn, try)
				}
				break
			}
			if !src.Is4() || tried[src] {
				t.Fatalf("connection %d try %d: %v (tried %v)", conn, try, src, tried)
			}
			tried[src] = true
			if try == 0 {
				first[src]++
			}
		}
		for try := range 2 {
			if src, ok := s.pick(client, start, true, try); !ok || !src.Is6() {
				t.Fatalf("connection %d towards IPv6, try %d: %v, %v", conn, try, src, ok)
			}
		}
		if _, ok := s.pick(client, start, true, 2); ok {
			t.Fatalf("connection %d: a third IPv6 address", conn)
		}
	}
	for _, a := range addrs("192.0.2.1", "192.0.2.2", "192.0.2.3") {
		if first[a] != 10 {
			t.Errorf("first choices over 30 connections: %v; want 10 each", first)
		}
	}
}

// An address of the other family is never offered; with none of the
// node's family there is nothing to pick.
func TestSourcePickFamily(t *testing.T) {
	var turn atomic.Uint32
	for _, hash := range []bool{true, false} {
		s := clusterSources{addrs: addrs("2001:db8::1", "2001:db8::2"), hash: hash, turn: &turn}
		client := netip.MustParseAddr("10.0.0.1")
		if src, ok := s.pick(client, s.start(client), false, 0); ok {
			t.Errorf("hash=%v: IPv4 node got source %v from an IPv6-only list", hash, src)
		}
		if _, ok := s.pick(client, s.start(client), true, 0); !ok {
			t.Errorf("hash=%v: IPv6 node got no source", hash)
		}
	}
	// A v4-mapped configured address counts as IPv4 and is bound unmapped.
	s := clusterSources{addrs: addrs("::ffff:192.0.2.9"), turn: &turn}
	if src, ok := s.pick(netip.Addr{}, 0, false, 0); !ok || src != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("mapped source: %v, %v", src, ok)
	}
}

func TestSourcePickTransparent(t *testing.T) {
	s := clusterSources{addrs: addrs("192.0.2.1"), transparent: true, hash: true}
	c4 := netip.MustParseAddr("198.51.100.7")
	if src, ok := s.pick(c4, s.start(c4), false, 0); !ok || src != c4 {
		t.Errorf("transparent: %v, %v; want the client's %v", src, ok, c4)
	}
	mapped := netip.AddrFrom16(c4.As16())
	if src, ok := s.pick(mapped, 0, false, 0); !ok || src != c4 {
		t.Errorf("transparent, mapped client: %v, %v", src, ok)
	}
	if _, ok := s.pick(c4, 0, false, 1); ok {
		t.Error("transparent offered a second try")
	}
	if src, ok := s.pick(c4, 0, true, 0); ok {
		t.Errorf("transparent IPv4 client towards an IPv6 node: %v", src)
	}
	c6 := netip.MustParseAddr("2001:db8::7")
	if src, ok := s.pick(c6, 0, true, 0); !ok || src != c6 {
		t.Errorf("transparent IPv6: %v, %v", src, ok)
	}
}

// Choosing is on the hot path: no allocation.
func TestSourcePickAllocs(t *testing.T) {
	var turn atomic.Uint32
	list := addrs("192.0.2.1", "2001:db8::1", "192.0.2.2")
	client := netip.MustParseAddr("10.1.2.3")
	for _, s := range []clusterSources{{addrs: list, hash: true, turn: &turn}, {addrs: list, turn: &turn}} {
		allocs := testing.AllocsPerRun(100, func() {
			start := s.start(client)
			for try := 0; try < 3; try++ {
				s.pick(client, start, false, try)
			}
		})
		if allocs != 0 {
			t.Errorf("hash=%v: %v allocations per choice", s.hash, allocs)
		}
	}
}

func TestSourceMoveOn(t *testing.T) {
	var turn atomic.Uint32
	exhausted := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	rot := &sourceDial{s: clusterSources{addrs: addrs("192.0.2.1", "192.0.2.2"), turn: &turn}, more: true}
	if !rot.moveOn(exhausted) || rot.try != 1 {
		t.Errorf("rotation does not move on from an exhausted address (try %d)", rot.try)
	}
	if rot.moveOn(refused) {
		t.Error("rotation moves on from a refused connection (the node's fault)")
	}
	if rot.more = false; rot.moveOn(exhausted) {
		t.Error("rotation moves on past the last address")
	}
	hash := &sourceDial{s: clusterSources{addrs: addrs("192.0.2.1", "192.0.2.2"), hash: true, turn: &turn}, more: true}
	if hash.moveOn(exhausted) {
		t.Error("hash mode moves on from its address")
	}
	if !localExhaustion(exhausted) || localExhaustion(refused) {
		t.Error("localExhaustion misclassifies")
	}
	if localExhaustion(fmt.Errorf("dial: %w", errSourceFamily)) {
		t.Error("a family mismatch counted as exhaustion")
	}
}

func TestTransparentErrorText(t *testing.T) {
	if err := transparentError("web", nil); err != nil {
		t.Fatalf("capable probe: %v", err)
	}
	err := transparentError("web", os.NewSyscallError("setsockopt IP_TRANSPARENT", syscall.EPERM))
	want := `cluster "web": transparent = true needs CAP_NET_ADMIN (or CAP_NET_RAW) to set IP_TRANSPARENT: setsockopt IP_TRANSPARENT: operation not permitted;`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("EPERM: %v\nwant prefix: %s", err, want)
	}
	err = transparentError("web", os.NewSyscallError("setsockopt IP_TRANSPARENT", syscall.ENOPROTOOPT))
	if err == nil || !strings.HasPrefix(err.Error(), `cluster "web": transparent = true: the kernel refused IP_TRANSPARENT: `) {
		t.Fatalf("ENOPROTOOPT: %v", err)
	}
}
