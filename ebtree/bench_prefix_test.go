package ebtree

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// BGP-like prefix tables: lengths drawn from a distribution resembling the
// public routing tables (IPv4: ~60% /24, /16-/23 common, few shorter; IPv6:
// mostly /32-/48 with /48 dominant), addresses random inside the unicast
// ranges. Duplicates are skipped, so tables hold exactly n distinct prefixes.

type lenWeight struct{ bits, weight int }

var bgp4 = []lenWeight{
	{8, 1}, {10, 1}, {11, 2}, {12, 3}, {13, 5}, {14, 8}, {15, 10},
	{16, 60}, {17, 25}, {18, 40}, {19, 60}, {20, 80}, {21, 80}, {22, 140}, {23, 100}, {24, 600},
}

var bgp6 = []lenWeight{
	{20, 1}, {24, 2}, {28, 5}, {29, 20}, {32, 150}, {33, 10}, {34, 10}, {35, 5}, {36, 30},
	{40, 50}, {42, 10}, {44, 70}, {45, 10}, {46, 20}, {47, 20}, {48, 550}, {56, 20}, {64, 20},
}

func pickLen(r *rand.Rand, dist []lenWeight) int {
	total := 0
	for _, lw := range dist {
		total += lw.weight
	}
	x := r.IntN(total)
	for _, lw := range dist {
		if x < lw.weight {
			return lw.bits
		}
		x -= lw.weight
	}
	return dist[len(dist)-1].bits
}

// randUnicast returns a random IPv4 address in 1.0.0.0-223.255.255.255 or a
// random IPv6 address in 2000::/3.
func randUnicast(r *rand.Rand, v6 bool) netip.Addr {
	if !v6 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 1<<24+uint32(r.IntN(222<<24)))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], 1<<61|r.Uint64()>>3)
	binary.BigEndian.PutUint64(b[8:], r.Uint64())
	return netip.AddrFrom16(b)
}

func bgpTable(n int, v6 bool, seed uint64) []netip.Prefix {
	r := rand.New(rand.NewPCG(seed, 99))
	dist := bgp4
	if v6 {
		dist = bgp6
	}
	seen := make(map[netip.Prefix]bool, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		p := netip.PrefixFrom(randUnicast(r, v6), pickLen(r, dist)).Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// lookupAddrs returns n addresses: half inside random table prefixes (so
// lookups go deep), half uniformly random unicast.
func lookupAddrs(table []netip.Prefix, n int, v6 bool, seed uint64) []netip.Addr {
	r := rand.New(rand.NewPCG(seed, 5))
	out := make([]netip.Addr, n)
	for i := range out {
		if i%2 == 0 {
			p := table[r.IntN(len(table))]
			out[i] = randAddr(r, p.Addr(), p.Bits())
		} else {
			out[i] = randUnicast(r, v6)
		}
	}
	return out
}

// lengthMaps is the obvious alternative: one map per prefix length, probed
// from the longest length down.
type lengthMaps struct {
	lens []int
	m    map[netip.Prefix]int
}

func newLengthMaps(table []netip.Prefix) *lengthMaps {
	lm := &lengthMaps{m: make(map[netip.Prefix]int, len(table))}
	for i, p := range table {
		lm.m[p] = i
		if !slices.Contains(lm.lens, p.Bits()) {
			lm.lens = append(lm.lens, p.Bits())
		}
	}
	slices.Sort(lm.lens)
	slices.Reverse(lm.lens)
	return lm
}

func (lm *lengthMaps) match(a netip.Addr) (int, bool) {
	for _, l := range lm.lens {
		p, _ := a.Prefix(l)
		if i, ok := lm.m[p]; ok {
			return i, true
		}
	}
	return 0, false
}

// TestPrefixBGPLike compares LongestMatch with the per-length maps (a
// brute-force scan over every length) on a 20,000-prefix BGP-like table.
func TestPrefixBGPLike(t *testing.T) {
	n, probes := 20_000, 50_000
	if testing.Short() {
		n, probes = 5_000, 10_000
	}
	for _, v6 := range []bool{false, true} {
		table := bgpTable(n, v6, 1)
		var tr PrefixTree[int]
		nodes := make([]PrefixNode[int], len(table))
		for i, p := range table {
			nodes[i].Value = i
			if tr.Insert(p, &nodes[i]) != &nodes[i] {
				t.Fatalf("Insert(%v) refused", p)
			}
		}
		if err := checkPrefixTree(&tr); err != nil {
			t.Fatal(err)
		}
		lm := newLengthMaps(table)
		hits := 0
		for _, a := range lookupAddrs(table, probes, v6, 2) {
			want, ok := lm.match(a)
			got := tr.LongestMatch(a)
			if ok != (got != nil) || ok && got.Value != want {
				t.Fatalf("LongestMatch(%v) = %v, want %v (found %v)", a, got, table[want], ok)
			}
			if ok {
				hits++
			}
		}
		if hits < probes/2 {
			t.Errorf("v6=%v: only %d hits of %d: generator too sparse", v6, hits, probes)
		}
		for i, p := range table {
			if tr.Lookup(p) != &nodes[i] {
				t.Fatalf("Lookup(%v) failed", p)
			}
		}
	}
}

type lpmFixture struct {
	tree   PrefixTree[int]
	nodes  []PrefixNode[int]
	sorted PrefixTree[int] // the same table, nodes allocated in prefix order
	snodes []PrefixNode[int]
	maps   *lengthMaps
	addrs  []netip.Addr
}

var lpmCache = map[bool]*lpmFixture{}

const bgpSize = 450_000

func lpm(v6 bool) *lpmFixture {
	if f := lpmCache[v6]; f != nil {
		return f
	}
	table := bgpTable(bgpSize, v6, 3)
	f := &lpmFixture{nodes: make([]PrefixNode[int], len(table)), maps: newLengthMaps(table)}
	for i, p := range table {
		f.nodes[i].Value = i
		f.tree.Insert(p, &f.nodes[i])
	}
	f.addrs = lookupAddrs(table, randRing, v6, 4)
	// A table loaded from a file can be sorted first: entries that are
	// close in the tree are then close in memory (fewer cache and TLB misses).
	table = slices.Clone(table)
	slices.SortFunc(table, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	f.snodes = make([]PrefixNode[int], len(table))
	for i, p := range table {
		f.sorted.Insert(p, &f.snodes[i])
	}
	lpmCache[v6] = f
	return f
}

// BenchmarkLongestMatch: longest-prefix match of random addresses (half
// inside table prefixes) in a 450,000-prefix BGP-like table.
func BenchmarkLongestMatch(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		fam := "v4"
		if v6 {
			fam = "v6"
		}
		b.Run(fmt.Sprintf("ebtree/%s", fam), func(b *testing.B) {
			f := lpm(v6)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				f.tree.LongestMatch(f.addrs[i&(randRing-1)])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mlookups/s")
		})
		b.Run(fmt.Sprintf("ebtree-sorted/%s", fam), func(b *testing.B) {
			f := lpm(v6)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				f.sorted.LongestMatch(f.addrs[i&(randRing-1)])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mlookups/s")
		})
		b.Run(fmt.Sprintf("lengthmaps/%s", fam), func(b *testing.B) {
			f := lpm(v6)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				f.maps.match(f.addrs[i&(randRing-1)])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mlookups/s")
		})
	}
}

// BenchmarkPrefixInsertDelete: remove a random prefix and put it back.
func BenchmarkPrefixInsertDelete(b *testing.B) {
	f := lpm(false)
	rnd := ring(13)
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuTime(b)()
	for i := 0; i < b.N; i++ {
		n := &f.nodes[rnd[i&(randRing-1)]%uint64(len(f.nodes))]
		p := n.Prefix()
		f.tree.Delete(n)
		f.tree.Insert(p, n)
	}
}
