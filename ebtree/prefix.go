package ebtree

import (
	"encoding/binary"
	"iter"
	"math/bits"
	"net/netip"
)

// A PrefixTree stores address prefixes with the same node-part/leaf-part
// layout as Tree. Keys are addresses left-aligned in 128 bits and bits are
// counted from the most significant one. A node part is either
//
//   - a split at bit position pos: every prefix below is longer than pos and
//     shares the first pos bits; bit pos selects the branch; or
//   - a cover of length l: its left branch is the leaf of the one prefix of
//     length l, its right branch holds longer prefixes sharing those l bits.
//
// Both kinds are ordered by a level, 2*pos+1 for a split and 2*l for a cover,
// which strictly increases downwards, so a cover sits above the splits inside
// it. Longest match walks down once, remembering the last matching cover.

// PrefixNode is one prefix entry of a PrefixTree. The zero value is an
// unlinked entry. The tree sets the prefix on Insert.
type PrefixNode[V any] struct {
	b      [2]*PrefixNode[V] // node part: branches
	hi, lo uint64            // prefix address, masked, left-aligned
	lvl    int16             // node part: 2*pos+1 (split) or 2*len (cover)
	plen   uint8             // prefix length in bits
	v6     bool              // address family of the prefix
	leaf   [2]bool           // node part: branch i points to a leaf part
	nside  uint8             // node part hangs on side nside of nodeP
	lside  uint8             // leaf part hangs on side lside of leafP
	nodeP  *PrefixNode[V]    // node part: parent, nil while unused
	leafP  *PrefixNode[V]    // leaf part: parent, nil while not in a tree

	Value V // caller data, never touched by the tree
}

// Prefix returns the prefix n was inserted with.
func (n *PrefixNode[V]) Prefix() netip.Prefix {
	if !n.v6 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], uint32(n.hi>>32))
		return netip.PrefixFrom(netip.AddrFrom4(a), int(n.plen))
	}
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], n.hi)
	binary.BigEndian.PutUint64(a[8:], n.lo)
	return netip.PrefixFrom(netip.AddrFrom16(a), int(n.plen))
}

// Linked reports whether n is currently in a tree.
func (n *PrefixNode[V]) Linked() bool { return n.leafP != nil }

// PrefixTree holds IPv4 and IPv6 prefixes, at most one entry per prefix, in
// two separate trees: IPv4 addresses never match IPv6 prefixes. IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d) are IPv6; Unmap them first to match IPv4
// prefixes. The zero value is empty. A PrefixTree must not be copied after
// first use. Lookups never write, so any number of goroutines may look up
// concurrently while nobody inserts or deletes (build a new table on reload
// and swap it in); writers need exclusive access.
type PrefixTree[V any] struct {
	_     noCopy
	roots [2]PrefixNode[V] // [0] IPv4, [1] IPv6; only roots[i].b[0] is used
	n     int
}

// Len returns the number of prefixes in t.
func (t *PrefixTree[V]) Len() int { return t.n }

// addrKey returns a's bits left-aligned in 128 bits and its family.
func addrKey(a netip.Addr) (hi, lo uint64, v6 bool) {
	if a.Is4() {
		b := a.As4()
		return uint64(binary.BigEndian.Uint32(b[:])) << 32, 0, false
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), true
}

// clz128 returns the number of leading zero bits of hi:lo (128 if zero).
func clz128(hi, lo uint64) int {
	if hi != 0 {
		return bits.LeadingZeros64(hi)
	}
	return 64 + bits.LeadingZeros64(lo)
}

// bitAt returns bit pos of hi:lo, counting from the most significant.
func bitAt(hi, lo uint64, pos int) uint8 {
	if pos < 64 {
		return uint8(hi >> (63 - pos) & 1)
	}
	return uint8(lo >> (127 - pos) & 1)
}

func plink[V any](p *PrefixNode[V], side uint8, c *PrefixNode[V], isLeaf bool) {
	p.b[side], p.leaf[side] = c, isLeaf
	if isLeaf {
		c.leafP, c.lside = p, side
	} else {
		c.nodeP, c.nside = p, side
	}
}

// Insert links n into t under the masked prefix p and returns n. If p is
// already present it leaves n unlinked and returns the existing entry; if p
// is invalid it returns nil. Insert never allocates; it panics if n is
// already linked.
func (t *PrefixTree[V]) Insert(p netip.Prefix, n *PrefixNode[V]) *PrefixNode[V] {
	if n.leafP != nil {
		panic("ebtree: Insert of a linked PrefixNode")
	}
	if !p.IsValid() {
		return nil
	}
	p = p.Masked()
	n.hi, n.lo, n.v6 = addrKey(p.Addr())
	n.plen = uint8(p.Bits())
	l := int(n.plen)
	root := &t.roots[b2u(n.v6)]
	par, side := root, uint8(0)
	c, cLeaf := root.b[0], root.leaf[0]
	if c == nil {
		n.nodeP = nil
		plink(root, 0, n, true)
		t.n++
		return n
	}
	for {
		d := clz128(n.hi^c.hi, n.lo^c.lo)
		if cLeaf {
			cl := int(c.plen)
			switch {
			case d < min(l, cl):
				t.split(par, side, n, c, true, d)
			case l == cl:
				return c
			case l < cl: // n covers c
				n.lvl = int16(2 * l)
				plink(par, side, n, false)
				plink(n, 0, n, true)
				plink(n, 1, c, true)
			default: // c covers n
				n.lvl = int16(2 * cl)
				plink(par, side, n, false)
				plink(n, 0, c, true)
				plink(n, 1, n, true)
			}
			t.n++
			return n
		}
		m, isSplit := int(c.lvl>>1), c.lvl&1 == 1
		if d < min(l, m) {
			t.split(par, side, n, c, false, d)
			t.n++
			return n
		}
		if l < m || (l == m && isSplit) { // n covers all of c
			n.lvl = int16(2 * l)
			plink(par, side, n, false)
			plink(n, 0, n, true)
			plink(n, 1, c, false)
			t.n++
			return n
		}
		if l == m {
			return c.b[0] // the cover's own prefix
		}
		par, side = c, 1
		if isSplit {
			side = bitAt(n.hi, n.lo, m)
		}
		c, cLeaf = par.b[side], par.leaf[side]
	}
}

// split hangs n's node part on side of par as a split at bit d, with n's leaf
// and c below it.
func (t *PrefixTree[V]) split(par *PrefixNode[V], side uint8, n, c *PrefixNode[V], cLeaf bool, d int) {
	n.lvl = int16(2*d + 1)
	plink(par, side, n, false)
	nb := bitAt(n.hi, n.lo, d)
	plink(n, nb, n, true)
	plink(n, 1-nb, c, cLeaf)
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Lookup returns the entry holding exactly the masked prefix p, or nil.
func (t *PrefixTree[V]) Lookup(p netip.Prefix) *PrefixNode[V] {
	if !p.IsValid() {
		return nil
	}
	p = p.Masked()
	hi, lo, v6 := addrKey(p.Addr())
	l := p.Bits()
	c, isLeaf := t.roots[b2u(v6)].b[0], t.roots[b2u(v6)].leaf[0]
	for c != nil && !isLeaf {
		m := int(c.lvl >> 1)
		if clz128(hi^c.hi, lo^c.lo) < min(l, m) || l < m {
			return nil
		}
		side := uint8(1)
		if c.lvl&1 == 1 { // split
			if l == m {
				return nil
			}
			side = bitAt(hi, lo, m)
		} else if l == m {
			return c.b[0]
		}
		c, isLeaf = c.b[side], c.leaf[side]
	}
	if c == nil || int(c.plen) != l || c.hi != hi || c.lo != lo {
		return nil
	}
	return c
}

// LongestMatch returns the entry with the longest prefix containing a, or nil
// if no prefix of a's family contains it.
func (t *PrefixTree[V]) LongestMatch(a netip.Addr) *PrefixNode[V] {
	hi, lo, v6 := addrKey(a)
	root := &t.roots[b2u(v6)]
	c, isLeaf := root.b[0], root.leaf[0]
	var best *PrefixNode[V]
	for c != nil && !isLeaf {
		m := int(c.lvl >> 1)
		if clz128(hi^c.hi, lo^c.lo) < m {
			return best // a leaves this subtree's common prefix
		}
		side := uint8(1)
		if c.lvl&1 == 1 {
			side = bitAt(hi, lo, m)
		} else {
			best = c.b[0]
		}
		c, isLeaf = c.b[side], c.leaf[side]
	}
	if c != nil && clz128(hi^c.hi, lo^c.lo) >= int(c.plen) {
		return c
	}
	return best
}

// Delete unlinks n from t in constant time; it does nothing if n is not
// linked. n must belong to t (or to no tree).
func (t *PrefixTree[V]) Delete(n *PrefixNode[V]) {
	p := n.leafP
	if p == nil {
		return
	}
	t.n--
	n.leafP = nil
	if p.b[1] == nil { // a root: n was the only prefix of its family
		p.b[0], p.leaf[0] = nil, false
		return
	}
	s := 1 - n.lside
	plink(p.nodeP, p.nside, p.b[s], p.leaf[s])
	p.nodeP, p.b = nil, [2]*PrefixNode[V]{}
	if n.nodeP == nil {
		return
	}
	// p's leaf lies below n's node part, so p's address shares the bits
	// that position relies on.
	p.lvl = n.lvl
	plink(n.nodeP, n.nside, p, false)
	plink(p, 0, n.b[0], n.leaf[0])
	plink(p, 1, n.b[1], n.leaf[1])
	n.nodeP, n.b = nil, [2]*PrefixNode[V]{}
}

// All returns an iterator over the entries: IPv4 before IPv6, each family in
// address order with a prefix before the longer ones it contains. The entry
// being visited may be deleted during the walk.
func (t *PrefixTree[V]) All() iter.Seq[*PrefixNode[V]] {
	return func(yield func(*PrefixNode[V]) bool) {
		for fam := range t.roots {
			r := &t.roots[fam]
			if r.b[0] == nil {
				continue
			}
			for n := pwalkDown(r.b[0], r.leaf[0]); n != nil; {
				next := pnext(n)
				if !yield(n) {
					return
				}
				n = next
			}
		}
	}
}

// pwalkDown follows left branches from c down to a leaf.
func pwalkDown[V any](c *PrefixNode[V], isLeaf bool) *PrefixNode[V] {
	for !isLeaf {
		c, isLeaf = c.b[0], c.leaf[0]
	}
	return c
}

// pnext returns the leaf after n in its family, or nil.
func pnext[V any](n *PrefixNode[V]) *PrefixNode[V] {
	p, side := n.leafP, n.lside
	for side == 1 {
		p, side = p.nodeP, p.nside
	}
	if p.b[1] == nil {
		return nil
	}
	return pwalkDown(p.b[1], p.leaf[1])
}
