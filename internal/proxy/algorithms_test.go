package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"testing"
)

// weighted311 is a config of three "hello" nodes with weights 3:1:1 and
// the given algorithm.
func weighted311(algorithm string, a, b, c *server) string {
	return testConfig("", fmt.Sprintf("algorithm = %q", algorithm),
		tnode{"a", a.addr(), "weight = 3"}, tnode{"b", b.addr(), ""}, tnode{"c", c.addr(), ""})
}

func threeNodes(t *testing.T) (a, b, c *server) {
	return startServer(t, "a", hello), startServer(t, "b", hello), startServer(t, "c", hello)
}

// askFrom is ask from a chosen client address (any 127.x can be bound).
func askFrom(t *testing.T, from, addr string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hi\n")
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(l)
}

// Every algorithm, through the real balancer, honours weights 3:1:1 in
// the share of new connections (sequential connections that each close).
func TestAlgorithmsHonourWeights(t *testing.T) {
	for _, tc := range []struct {
		algorithm string
		n         int
		tolerance float64 // allowed deviation of each share, absolute
	}{
		{"round-robin", 500, 0},     // exact
		{"conn-rate", 500, 0.03},    // deterministic given the picks, decay aside
		{"traffic-rate", 500, 0.08}, // steered by bytes, which are equal per connection
		{"random", 1000, 0.07},      // > 4.5 standard deviations at n = 1000
	} {
		t.Run(tc.algorithm, func(t *testing.T) {
			a, b, c := threeNodes(t)
			_, addr := balancer(t, weighted311(tc.algorithm, a, b, c))
			counts := map[string]int{}
			for range tc.n {
				got, err := ask(t, addr, "hi")
				if err != nil {
					t.Fatal(err)
				}
				counts[got]++
			}
			for name, want := range map[string]float64{"a": 0.6, "b": 0.2, "c": 0.2} {
				share := float64(counts[name]) / float64(tc.n)
				if math.Abs(share-want) > tc.tolerance+1e-9 {
					t.Errorf("%s: share %.3f, want %.2f ± %.2f (counts %v)", name, share, want, tc.tolerance, counts)
				}
			}
		})
	}
}

// min-load keeps the ratio of concurrent connections at the weights: 50
// connections held open one after another end as 30:10:10.
func TestMinLoadHeldConnections(t *testing.T) {
	a, b, c := threeNodes(t)
	_, addr := balancer(t, weighted311("min-load", a, b, c))
	counts := map[string]int{}
	for range 50 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "hi\n")
		l, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		counts[strings.TrimSpace(l)]++
	}
	if counts["a"] != 30 || counts["b"] != 10 || counts["c"] != 10 {
		t.Fatalf("held connections %v, want a:30 b:10 c:10", counts)
	}
}

// ip-hash sends a client to the same node every time, and clients spread
// by weight.
func TestIPHashSticksAndSpreads(t *testing.T) {
	a, b, c := threeNodes(t)
	_, addr := balancer(t, weighted311("ip-hash", a, b, c))
	counts := map[string]int{}
	const clients = 200
	for i := range clients {
		from := fmt.Sprintf("127.0.4.%d", 20+i)
		first := askFrom(t, from, addr)
		if again := askFrom(t, from, addr); again != first {
			t.Fatalf("client %s went to %s, then to %s", from, first, again)
		}
		counts[first]++
	}
	// Rendezvous hashing spreads by weight; at 200 clients allow ±0.12.
	if share := float64(counts["a"]) / clients; math.Abs(share-0.6) > 0.12 {
		t.Fatalf("node a has %.2f of the clients, want about 0.6 (%v)", share, counts)
	}
}
