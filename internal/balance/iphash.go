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
// 128-bit SipHash-2-4 keys, one for client IPs and one for node names. The
// client IP is hashed once per pick in its 16-byte form: IPv4 as the
// IPv4-mapped IPv6 address ::ffff:a.b.c.d (so a client reaching a
// dual-stack listener hashes the same either way), the zone ignored. Each
// node name is hashed once, at New, into a pair (a, b); a candidate's u is
// then hi⊕lo of the 128-bit product (h⊕a)·b — both factors are keyed
// SipHash outputs, so u is unpredictable without the key, and it costs one
// multiplication per candidate instead of a SipHash.
//
// Scores of equal-weight candidates are compared as integers; ln is taken
// only for the best candidate of each distinct weight, so a cluster of equal
// weights computes none. Pick takes no lock, reads no clock and does not
// allocate.
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
	return -math.Log(f) / float64(weight)
}
