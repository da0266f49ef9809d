package balance

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/stats"
)

// nodeName names node i "a", "b", … "z", then "n26", "n27", ….
func nodeName(i int) string {
	if i < 26 {
		return string(rune('a' + i))
	}
	return "n" + itoa(i)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// cluster is a test cluster: live stats per node and the candidates built
// from them (all nodes, IDs in order).
type cluster struct {
	nodes []*stats.Node
	cands []Candidate
	names []string
}

func newCluster(weights ...int) *cluster {
	c := &cluster{}
	for i, w := range weights {
		n := &stats.Node{}
		c.nodes = append(c.nodes, n)
		c.names = append(c.names, nodeName(i))
		c.cands = append(c.cands, Candidate{ID: i, Name: nodeName(i), Weight: w, Stats: n})
	}
	return c
}

// params returns Params for c with a fixed clock reading at.
func (c *cluster) params(at *stats.Instant) Params {
	p := Params{Cluster: "test", Nodes: len(c.nodes), NodeNames: c.names}
	if at != nil {
		p.now = func() stats.Instant { return *at }
	}
	return p
}

func mustNew(t testing.TB, alg string, p Params) Policy {
	t.Helper()
	pol, err := New(alg, p)
	if err != nil {
		t.Fatalf("New(%q): %v", alg, err)
	}
	return pol
}

// seq picks n times and spells the chosen names, e.g. "aabacaa".
func seq(pol Policy, cands []Candidate, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(cands[pol.Pick(netip.Addr{}, cands)].Name)
	}
	return b.String()
}

// count picks n times and counts picks per candidate index.
func count(pol Policy, cands []Candidate, n int) []int {
	got := make([]int, len(cands))
	for range n {
		got[pol.Pick(netip.Addr{}, cands)]++
	}
	return got
}

// burst picks n times from n goroutines released together, counting picks
// per candidate index.
func burst(pol Policy, cands []Candidate, n int) []int {
	got := make([]int, len(cands))
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			i := pol.Pick(netip.Addr{}, cands)
			mu.Lock()
			got[i]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return got
}

// within reports whether every count is within tol (absolute) of its
// weighted share of the total.
func within(t *testing.T, what string, got []int, weights []int, tol float64) {
	t.Helper()
	total, wsum := 0, 0
	for i := range got {
		total += got[i]
		wsum += weights[i]
	}
	for i := range got {
		want := float64(total) * float64(weights[i]) / float64(wsum)
		if d := float64(got[i]) - want; d > tol || d < -tol {
			t.Errorf("%s: counts %v for weights %v: node %d has %d, want %.1f ± %.1f", what, got, weights, i, got[i], want, tol)
			return
		}
	}
}

// addrs returns n distinct pseudo-random addresses (IPv4, or IPv6 when v6)
// from a fixed seed.
func addrs(n int, v6 bool, seed uint64) []netip.Addr {
	src := rand.New(rand.NewPCG(seed, 0x5eed))
	seen := make(map[netip.Addr]bool, n)
	out := make([]netip.Addr, 0, n)
	for len(out) < n {
		var a netip.Addr
		if v6 {
			var b [16]byte
			for i := range b {
				b[i] = byte(src.Uint32())
			}
			a = netip.AddrFrom16(b)
		} else {
			a = netip.AddrFrom4([4]byte{byte(src.Uint32()), byte(src.Uint32()), byte(src.Uint32()), byte(src.Uint32())})
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// instant is a fixed rate-clock reading d after an arbitrary origin.
func instant(d time.Duration) stats.Instant { return stats.Instant(1_000*time.Hour + d) }
