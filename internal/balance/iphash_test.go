package balance

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/dchest/siphash"
)

func newIPHashFor(t testing.TB, key string, c *cluster) Policy {
	t.Helper()
	p := c.params(nil)
	p.HashKey = key
	return mustNew(t, "ip-hash", p)
}

// owners maps each address to the name of the node it picks.
func owners(pol Policy, cands []Candidate, ips []netip.Addr) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = cands[pol.Pick(ip, cands)].Name
	}
	return out
}

func TestIPHashStable(t *testing.T) {
	c := newCluster(1, 2, 3, 1, 1)
	ips := append(addrs(5000, false, 1), addrs(5000, true, 1)...)
	first := owners(newIPHashFor(t, "web", c), c.cands, ips)
	// A twin balancer: another policy from the same key and names, over
	// candidates in another order, with other IDs and other stats.
	twin := newCluster(1, 1, 3, 2, 1)
	for i, j := range []int{4, 0, 2, 1, 3} {
		twin.cands[i].Name, twin.names[i] = c.names[j], c.names[j]
		twin.cands[i].Weight = c.cands[j].Weight
	}
	second := owners(newIPHashFor(t, "web", twin), twin.cands, ips)
	again := owners(newIPHashFor(t, "web", c), c.cands, ips)
	for i := range ips {
		if first[i] != second[i] || first[i] != again[i] {
			t.Fatalf("%v: %s, twin %s, again %s", ips[i], first[i], second[i], again[i])
		}
	}
	// An IPv4 client and its IPv4-mapped IPv6 form are one client.
	pol := newIPHashFor(t, "web", c)
	for _, ip := range ips[:5000] {
		if pol.Pick(ip, c.cands) != pol.Pick(netip.AddrFrom16(ip.As16()), c.cands) {
			t.Fatalf("%v and its mapped form pick different nodes", ip)
		}
	}
}

func TestIPHashKeyChangesMapping(t *testing.T) {
	c := newCluster(1, 1, 1, 1, 1)
	ips := addrs(10_000, false, 2)
	a := owners(newIPHashFor(t, "web", c), c.cands, ips)
	b := owners(newIPHashFor(t, "web2", c), c.cands, ips)
	// Independent mappings agree on 1/5 of the clients; allow 17–23%.
	same := 0
	for i := range ips {
		if a[i] == b[i] {
			same++
		}
	}
	if same < 1700 || same > 2300 {
		t.Errorf("keys web and web2 agree on %d of 10,000 clients, want about 2,000", same)
	}
	// "" keys by the cluster name.
	p := c.params(nil)
	byName := owners(mustNew(t, "ip-hash", p), c.cands, ips)
	named := owners(newIPHashFor(t, p.Cluster, c), c.cands, ips)
	for i := range ips {
		if byName[i] != named[i] {
			t.Fatalf("empty HashKey does not key by the cluster name")
		}
	}
}

// shares checks counts against weights within rel (relative) per node.
func shares(t *testing.T, what string, got map[string]int, c *cluster, rel float64) {
	t.Helper()
	total, wsum := 0, 0
	for _, cand := range c.cands {
		total += got[cand.Name]
		wsum += cand.Weight
	}
	for _, cand := range c.cands {
		want := float64(total) * float64(cand.Weight) / float64(wsum)
		if math.Abs(float64(got[cand.Name])-want) > rel*want {
			t.Errorf("%s: %s has %d clients, want %.0f ± %.0f%%", what, cand.Name, got[cand.Name], want, rel*100)
		}
	}
}

func TestIPHashWeightedShares(t *testing.T) {
	// 100,000 addresses. The smallest share here is 1/15 (6,667 clients,
	// binomial sd 79 = 1.2%): a 5% tolerance is 4 sd; the addresses and key
	// are fixed, so the test is deterministic.
	for _, weights := range [][]int{{1, 2, 3, 4, 5}, {3, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 2, 3, 5}} {
		c := newCluster(weights...)
		pol := newIPHashFor(t, "shares", c)
		for _, v6 := range []bool{false, true} {
			got := map[string]int{}
			for _, o := range owners(pol, c.cands, addrs(100_000, v6, 3)) {
				got[o]++
			}
			shares(t, "weighted shares", got, c, 0.05)
		}
	}
}

func TestIPHashRemoveNode(t *testing.T) {
	// Removing one of 5 nodes remaps only its own clients, and they spread
	// over the others by weight.
	c := newCluster(1, 2, 3, 4, 5)
	pol := newIPHashFor(t, "remove", c)
	for _, v6 := range []bool{false, true} {
		ips := addrs(100_000, v6, 4)
		before := owners(pol, c.cands, ips)
		for removed := range c.cands {
			rest := append(append([]Candidate(nil), c.cands[:removed]...), c.cands[removed+1:]...)
			after := owners(pol, rest, ips)
			moved := map[string]int{}
			for i := range ips {
				switch {
				case before[i] == c.cands[removed].Name:
					moved[after[i]]++
				case after[i] != before[i]:
					t.Fatalf("v6 %v: removing %s moved %v from %s to %s", v6, c.cands[removed].Name, ips[i], before[i], after[i])
				}
			}
			restC := &cluster{cands: rest}
			shares(t, "clients of the removed node", moved, restC, 0.10)
		}
	}
}

func TestIPHashAddNode(t *testing.T) {
	// Adding a node of weight 3 to 1+2+3+4+5 moves its share, 3/18, of the
	// clients, all to it.
	c := newCluster(1, 2, 3, 4, 5, 3)
	five := c.cands[:5]
	pol := newIPHashFor(t, "add", c)
	for _, v6 := range []bool{false, true} {
		ips := addrs(100_000, v6, 5)
		before := owners(pol, five, ips)
		after := owners(pol, c.cands, ips)
		moved := 0
		for i := range ips {
			if before[i] != after[i] {
				if after[i] != "f" {
					t.Fatalf("adding f moved %v from %s to %s", ips[i], before[i], after[i])
				}
				moved++
			}
		}
		if want := 100_000 * 3.0 / 18; math.Abs(float64(moved)-want) > 0.05*want {
			t.Errorf("v6 %v: adding f moved %d clients, want %.0f ± 5%%", v6, moved, want)
		}
	}
}

func TestIPHashManyWeights(t *testing.T) {
	// More distinct weights than Pick tracks without logs: the answer is
	// still the highest score −w/ln(u) computed for every candidate.
	c := newCluster(1, 2, 3, 4, 5, 6, 7, 8, 2, 7)
	pol := newIPHashFor(t, "many", c).(*ipHash)
	for _, ip := range addrs(20_000, true, 6) {
		ip16 := ip.As16()
		x := siphashIP(pol, ip16)
		want, wantScore := -1, math.Inf(-1)
		for i, cand := range c.cands {
			u := mixFor(pol, x, pol.nodes[cand.ID])
			f := (float64(u>>11) + 0.5) * 0x1p-53
			if s := -float64(cand.Weight) / math.Log(f); s > wantScore {
				want, wantScore = i, s
			}
		}
		if got := pol.Pick(ip, c.cands); got != want {
			t.Fatalf("%v: picked %d, reference %d", ip, got, want)
		}
	}
}

func TestIPHashNamesAndIDs(t *testing.T) {
	c := newCluster(1, 1, 1)
	if _, err := New("ip-hash", Params{Cluster: "x", Nodes: 3}); err == nil {
		t.Error("New without node names succeeded")
	}
	pol := newIPHashFor(t, "ids", c)
	// A candidate whose ID is outside Params.Nodes is hashed by its name:
	// the same answer, slower.
	odd := append([]Candidate(nil), c.cands...)
	odd[1].ID = 99
	for _, ip := range addrs(2000, false, 7) {
		if pol.Pick(ip, c.cands) != pol.Pick(ip, odd) {
			t.Fatalf("%v: the name fallback disagrees", ip)
		}
	}
	if a := testing.AllocsPerRun(1000, func() { pol.Pick(netip.MustParseAddr("192.0.2.1"), c.cands) }); a != 0 {
		t.Errorf("%v allocs per pick", a)
	}
}

// siphashIP and mixFor restate ipHash's per-pick hashing for the reference
// computation in TestIPHashManyWeights.
func siphashIP(h *ipHash, ip [16]byte) uint64 { return siphash.Hash(h.ipKey[0], h.ipKey[1], ip[:]) }

func mixFor(_ *ipHash, x uint64, nh nodeHash) uint64 {
	hi, lo := bits.Mul64(x^nh.a, nh.b)
	return hi ^ lo
}

func TestLn(t *testing.T) {
	src := rand.New(rand.NewPCG(3, 4))
	check := func(x float64) {
		got, want := ln(x), math.Log(x)
		if math.Abs(got-want) > 1e-15*math.Abs(want)+1e-18 {
			t.Fatalf("ln(%v) = %v, math.Log %v", x, got, want)
		}
	}
	for _, x := range []float64{1, 0.5, 0.25, 0x1p-54, 0x1p-53, 1 - 0x1p-53, 0.75, math.Nextafter(1, 0)} {
		check(x)
	}
	for range 200_000 {
		check((float64(src.Uint64()>>11) + 0.5) * 0x1p-53)
	}
	for i := range 256 { // each table entry, and its neighbourhood
		m := 1 + float64(i)/256
		check(m / 2)
		check(math.Nextafter(m, 2) / 2)
	}
}

func TestIPHashGolden(t *testing.T) {
	// Fixed answers for key "web" over a..e of weights 1..5. Twin balancers
	// agree only while every version computes these: a change here is a
	// change of the mapping (clients move on upgrade), never a refactoring.
	c := newCluster(1, 2, 3, 4, 5)
	pol := newIPHashFor(t, "web", c)
	for _, tc := range []struct{ ip, node string }{
		{"192.0.2.1", "d"},
		{"192.0.2.2", "a"},
		{"198.51.100.77", "c"},
		{"203.0.113.254", "e"},
		{"10.1.2.3", "e"},
		{"2001:db8::1", "b"},
		{"2001:db8::2", "d"},
		{"2001:db8:85a3::8a2e:370:7334", "e"},
		{"::ffff:198.51.100.77", "c"}, // IPv4-mapped: the IPv4 client's node
		{"fe80::1%eth0", "d"},         // the zone is ignored
	} {
		if got := c.cands[pol.Pick(netip.MustParseAddr(tc.ip), c.cands)].Name; got != tc.node {
			t.Errorf("%s: %s, want %s", tc.ip, got, tc.node)
		}
	}
	if pol.Pick(netip.MustParseAddr("fe80::1"), c.cands) != pol.Pick(netip.MustParseAddr("fe80::1%eth0"), c.cands) {
		t.Error("a zone changes the node")
	}
}
