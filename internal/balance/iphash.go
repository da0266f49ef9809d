package balance

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"

	"github.com/dchest/siphash"
)

// ipHash is weighted rendezvous (highest-random-weight) hashing of the
// client IP over node names (Thaler & Ravishankar 1996; weighted score
// −weight/ln(u) as in Schindelhauer & Schomaker 2005): every candidate gets
// a score from (client, node name, weight) alone, and the highest wins.
// Hence removing a node moves exactly that node's clients, adding one moves
// only the clients it now wins (its weighted share), and twin balancers with
// the same key, node names and weights agree without sharing anything.
//
// Hashing: the key string (Params.HashKey) is stretched by SHA-256 into two
// 128-bit SipHash-2-4 keys, bytes 0–15 for client IPs and 16–31 for node
// names (each read as two little-endian uint64, k0 then k1). The
// client IP is hashed once per pick in its 16-byte form: IPv4 as the
// IPv4-mapped IPv6 address ::ffff:a.b.c.d (so a client reaching a
// dual-stack listener hashes the same either way), the zone ignored. Each
// node name is hashed once, at New, into a pair (a, b); a candidate's u is
// then hi⊕lo of the 128-bit product (h⊕a)·b — both factors are keyed
// SipHash outputs, so u is unpredictable without the key, and it costs one
// multiplication per candidate instead of a SipHash.
//
// Scores of equal-weight candidates are compared as integers; ln (our own,
// bit-identical on every architecture) is taken only for the best candidate
// of each distinct weight, so a cluster of equal weights computes none.
// Pick takes no lock, reads no clock and does not allocate.
type ipHash struct {
	ipKey [2]uint64
	nodes []nodeHash // by node ID
	// nameKey hashes the name of a candidate outside the contract (ID not
	// below Params.Nodes): slow, but the same answer.
	nameKey [2]uint64
}

var _ Policy = (*ipHash)(nil)

// nodeHash is one node's precomputed rendezvous state.
type nodeHash struct{ a, b uint64 }

func newIPHash(p Params) (Policy, error) {
	if len(p.NodeNames) < p.Nodes {
		return nil, fmt.Errorf("ip-hash: %d node names for %d nodes", len(p.NodeNames), p.Nodes)
	}
	key := p.HashKey
	if key == "" {
		key = p.Cluster
	}
	sum := sha256.Sum256([]byte(key))
	h := &ipHash{
		ipKey:   [2]uint64{binary.LittleEndian.Uint64(sum[0:]), binary.LittleEndian.Uint64(sum[8:])},
		nameKey: [2]uint64{binary.LittleEndian.Uint64(sum[16:]), binary.LittleEndian.Uint64(sum[24:])},
		nodes:   make([]nodeHash, p.Nodes),
	}
	for id := range h.nodes {
		h.nodes[id] = h.hashName(p.NodeNames[id])
	}
	return h, nil
}

func (h *ipHash) hashName(name string) nodeHash {
	a, b := siphash.Hash128(h.nameKey[0], h.nameKey[1], []byte(name))
	return nodeHash{a, b}
}

// weightGroups is how many distinct weights Pick tracks without taking a
// log; candidates of further weights are scored at once.
const weightGroups = 4

// best is the highest-u candidate of one weight.
type best struct {
	weight int
	u      uint64
	i      int
}

func (h *ipHash) Pick(client netip.Addr, cands []Candidate) int {
	if len(cands) == 1 {
		return 0
	}
	ip := client.As16()
	x := siphash.Hash(h.ipKey[0], h.ipKey[1], ip[:])
	var groups [weightGroups]best
	ng := 0
	other, otherCost := -1, math.Inf(1) // scored at once: beyond weightGroups weights
	for i := range cands {
		c := &cands[i]
		var nh nodeHash
		if uint(c.ID) < uint(len(h.nodes)) {
			nh = h.nodes[c.ID]
		} else {
			nh = h.hashName(c.Name)
		}
		hi, lo := bits.Mul64(x^nh.a, nh.b)
		u := hi ^ lo
		g := 0
		for g < ng && groups[g].weight != c.Weight {
			g++
		}
		switch {
		case g < ng:
			if u > groups[g].u {
				groups[g].u, groups[g].i = u, i
			}
		case ng < weightGroups:
			groups[ng] = best{c.Weight, u, i}
			ng++
		default:
			if k := cost(u, c.Weight); k < otherCost || other < 0 {
				other, otherCost = i, k
			}
		}
	}
	if ng == 1 && other < 0 {
		return groups[0].i
	}
	win, winCost := other, otherCost
	for g := range ng {
		k := cost(groups[g].u, groups[g].weight)
		if k < winCost || win < 0 || (k == winCost && groups[g].i < win) {
			win, winCost = groups[g].i, k
		}
	}
	return win
}

// cost is −ln(u)/weight with u mapped from 53 bits to (0, 1): the lowest
// cost is the highest rendezvous score −weight/ln(u). A weight <= 0 (outside
// the contract) costs +Inf.
func cost(u uint64, weight int) float64 {
	if weight <= 0 {
		return math.Inf(1)
	}
	f := (float64(u>>11) + 0.5) * 0x1p-53
	return -ln(f) / float64(weight)
}

// ln is the natural log of x in [2^-54, 1], to within 1e-15 relative plus
// 1e-18 absolute, in basic IEEE operations only: every float64(…) conversion forbids
// fusing a multiply-add, and the table is built by the same operations, so
// twin balancers on different architectures compute the same bits
// (math.Log is assembly on amd64 and Go elsewhere, which may differ in the
// last bit).
//
// x = 2^e·m, m in [1, 2); m = mᵢ(1 + r) with mᵢ = 1 + i/256 from m's top 8
// fraction bits, so 0 <= r < 2^-8; ln x = e·ln 2 + ln mᵢ + ln(1 + r), the
// last by its series to r⁸ (the r⁹/9 left out is below 3e-23). For
// m >= √2 the table holds ln(mᵢ/2) and e counts one more, so that x just
// below 1 does not lose its digits to e·ln 2 + ln mᵢ cancelling.
func ln(x float64) float64 {
	b := math.Float64bits(x)
	i := b >> 44 & 0xff
	e := float64(int64(b>>52)-1023) + lnTab.adj[i]
	m := math.Float64frombits(b&(1<<52-1) | 1023<<52)
	r := float64((m - lnTab.m[i]) * lnTab.inv[i]) // m − mᵢ is exact
	p := lnSeries[0]
	for _, c := range lnSeries[1:] {
		p = float64(p*r) + c
	}
	return float64(e*ln2) + lnTab.ln[i] + float64(p*r)
}

// lnSeries are the coefficients of ln(1 + r)/r = 1 − r/2 + r²/3 − … − r⁷/8,
// highest first, for Horner's rule.
var lnSeries = [8]float64{-1.0 / 8, 1.0 / 7, -1.0 / 6, 1.0 / 5, -1.0 / 4, 1.0 / 3, -1.0 / 2, 1}

// ln2 is ln 2 rounded to float64 (the literal is exact to 40 digits).
const ln2 = 0.6931471805599453094172321214581765680755

// lnTab holds, for ln, mᵢ, 1/mᵢ and ln(mᵢ/2^adj), adj being 1 from √2 on.
var lnTab = func() (t struct{ m, inv, ln, adj [256]float64 }) {
	for i := range 256 {
		m := 1 + float64(i)/256
		t.m[i], t.inv[i] = m, 1/m
		x := m
		if i >= 106 { // 1 + 106/256 = 1.414…: √2 and above
			x, t.adj[i] = m/2, 1
		}
		// ln x = 2·atanh(s), s = (x−1)/(x+1), |s| < 0.172: the series
		// 2(s + s³/3 + s⁵/5 + …) to s³¹ leaves under 1e-25.
		s := (x - 1) / (x + 1)
		s2 := float64(s * s)
		var sum float64
		for k := 31; k >= 1; k -= 2 {
			sum = float64(sum*s2) + 1/float64(k)
		}
		t.ln[i] = float64(2 * float64(s*sum))
	}
	return t
}()
