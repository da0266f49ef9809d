// Package ebtree implements elastic binary trees: ordered trees of integer
// keys where insertion and lookup cost O(log n) and deletion costs O(1),
// and prefix trees with longest-match lookup for IPv4 and IPv6 addresses.
//
// The design follows Willy Tarreau's "Elastic Binary Trees" article
// (2008/2011, the structure behind HAProxy's timers and ACLs). Every entry
// carries two parts: a node part (two branches, a bit position and a parent
// link) that ties subtrees together, and a leaf part (a parent link) that
// holds the key. The first entry hangs directly below the root and leaves its
// node part unused; every later insertion uses its own node part to split
// the tree somewhere above its own leaf, so the tree never allocates. Nodes
// are not rebalanced: the height is bounded by the key width. Deleting an
// entry releases its leaf's parent node part and, if the entry's own node
// part was in use, moves the released one into its place, which takes a
// constant number of pointer updates. Duplicate keys grow a small subtree
// with negative bit positions, which keeps them in insertion order.
//
// Links are ordinary Go pointers; the branch type (node or leaf) and the side
// a part hangs from are kept in small fields instead of pointer tag bits, so
// the package is memory-safe and needs no unsafe.
//
// The caller owns the entries: a Node is allocated by the caller or embedded
// in one of its structs (set Value to point back at the struct). A Node may be
// in at most one tree at a time and its Key must not change while it is
// linked. Lookups and walks never write, so concurrent readers are safe while
// nobody inserts or deletes; writers need exclusive access.
//
// A timer queue, for example:
//
//	type conn struct {
//		expire ebtree.Node[int64, *conn]
//	}
//	var timers ebtree.Tree[int64, *conn]
//	c.expire.Key, c.expire.Value = deadline, c
//	timers.Insert(&c.expire)
//	for n := timers.First(); n != nil && n.Key <= now; n = timers.First() {
//		timers.Delete(n)
//		n.Value.onTimeout()
//	}
//
// An expiry order kept by last use (an LRU) deletes and reinserts an entry on
// every touch; both are cheap, and equal timestamps keep their touch order. A
// timer that is pushed back often (an idle timeout) can also stay where it is
// and be requeued only when it fires early, as HAProxy does.
//
// PrefixTree applies the same two-part layout to address prefixes and answers
// longest-match lookups for CIDR allow/deny tables (see ExamplePrefixTree).
package ebtree

import "math/bits"

// Key is the set of integer key types. Unsigned types order as unsigned
// numbers, signed types as signed numbers.
type Key interface {
	~uint32 | ~uint64 | ~int32 | ~int64
}

// Node is one entry of a Tree: the caller's key and value plus the tree's
// node and leaf parts. The zero value is an unlinked entry with key 0.
//
// The fields a lookup reads at each level (branches, bit, key) come first so
// that they share a cache line; put the Node first in an embedding struct.
type Node[K Key, V any] struct {
	b     [2]*Node[K, V] // node part: left and right branches
	bit   int32          // node part: split bit, or < 0 inside a duplicate subtree
	leaf  [2]bool        // node part: branch i points to a leaf part
	nside uint8          // node part hangs on side nside of nodeP
	lside uint8          // leaf part hangs on side lside of leafP

	Key K // must not change while the entry is in a tree

	nodeP *Node[K, V] // node part: parent, nil while the node part is unused
	leafP *Node[K, V] // leaf part: parent, nil while not in a tree

	Value V // caller data, never touched by the tree
}

// Linked reports whether n is currently in a tree.
func (n *Node[K, V]) Linked() bool { return n.leafP != nil }

// Tree is an elastic binary tree of integer keys. The zero value is an empty
// tree that keeps duplicate keys in insertion order. A Tree must not be
// copied after first use: entries point back at its root.
type Tree[K Key, V any] struct {
	_    noCopy
	root Node[K, V] // only root.b[0] is used; root.b[1] is always nil
	n    int

	// Unique, when set before the first Insert, makes Insert refuse
	// duplicates and return the entry already holding the key.
	Unique bool
}

// noCopy makes go vet's copylocks check flag copies of a Tree.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// ord maps a key to an unsigned integer with the same order: signed keys get
// their sign bit flipped after sign extension.
func ord[K Key](k K) uint64 {
	if ^K(0) < 0 {
		return uint64(k) ^ (1 << 63)
	}
	return uint64(k)
}

// link hangs c (a leaf part if isLeaf, else a node part) on side of p.
func link[K Key, V any](p *Node[K, V], side uint8, c *Node[K, V], isLeaf bool) {
	p.b[side], p.leaf[side] = c, isLeaf
	if isLeaf {
		c.leafP, c.lside = p, side
	} else {
		c.nodeP, c.nside = p, side
	}
}

// Len returns the number of entries in t.
func (t *Tree[K, V]) Len() int { return t.n }

// Insert links n into t under n.Key and returns n. In a Unique tree that
// already holds n.Key it leaves n unlinked and returns the existing entry.
// Insert never allocates; it panics if n is already linked.
func (t *Tree[K, V]) Insert(n *Node[K, V]) *Node[K, V] {
	if n.leafP != nil {
		panic("ebtree: Insert of a linked Node")
	}
	root := &t.root
	if root.b[0] == nil {
		n.nodeP = nil
		link(root, 0, n, true)
		t.n++
		return n
	}
	x := ord(n.Key)
	p, side := root, uint8(0)
	var c *Node[K, V]
	var cLeaf bool
	for {
		c, cLeaf = p.b[side], p.leaf[side]
		if cLeaf {
			if ord(c.Key) == x {
				if t.Unique {
					return c
				}
				// First duplicate: a bit -1 node above both leaves.
				n.bit = -1
				link(p, side, n, false)
				link(n, 0, c, true)
				link(n, 1, n, true)
				t.n++
				return n
			}
			break
		}
		if c.bit < 0 { // top of a duplicate subtree
			if ord(c.Key) == x {
				if t.Unique {
					return walkDown(c, false, 0)
				}
				insertDup(c, n)
				t.n++
				return n
			}
			break
		}
		if (x^ord(c.Key))>>uint(c.bit) >= 2 {
			break // x leaves c's subtree above c's bit: split above c
		}
		p, side = c, uint8(x>>uint(c.bit)&1)
	}
	// Split above c with n's node part at the highest differing bit.
	y := ord(c.Key)
	n.bit = int32(63 - bits.LeadingZeros64(x^y))
	link(p, side, n, false)
	if x < y {
		link(n, 0, n, true)
		link(n, 1, c, cLeaf)
	} else {
		link(n, 0, c, cLeaf)
		link(n, 1, n, true)
	}
	t.n++
	return n
}

// insertDup appends n to the right of the duplicate subtree topped by sub,
// growing it like a binary counter so that depth stays logarithmic.
func insertDup[K Key, V any](sub, n *Node[K, V]) {
	head := sub
	for !head.leaf[1] {
		last := head
		head = head.b[1]
		if head.bit > last.bit+1 {
			sub = head // a level is missing below last: room to grow here
		}
	}
	if head.bit < -1 {
		// A hole just above the rightmost leaf: pair n with it at bit -1.
		c := head.b[1]
		n.bit = -1
		link(head, 1, n, false)
		link(n, 0, c, true)
		link(n, 1, n, true)
		return
	}
	// The right spine is full: put n one level above sub.
	n.bit = sub.bit - 1
	link(sub.nodeP, sub.nside, n, false)
	link(n, 0, sub, false)
	link(n, 1, n, true)
}

// Delete unlinks n from t in constant time; it does nothing if n is not
// linked. n must belong to t (or to no tree).
func (t *Tree[K, V]) Delete(n *Node[K, V]) {
	p := n.leafP
	if p == nil {
		return
	}
	t.n--
	n.leafP = nil
	if p.b[1] == nil { // p is the root: n was the only entry
		p.b[0], p.leaf[0] = nil, false
		return
	}
	// Release p's node part: n's sibling takes p's place.
	s := 1 - n.lside
	link(p.nodeP, p.nside, p.b[s], p.leaf[s])
	p.nodeP, p.b = nil, [2]*Node[K, V]{}
	if n.nodeP == nil {
		return // n's node part was p's, or was never used
	}
	// n's node part is still in use above: p's released one replaces it.
	// p's leaf lies below n's node part, so p.Key fits that position.
	p.bit = n.bit
	link(n.nodeP, n.nside, p, false)
	link(p, 0, n.b[0], n.leaf[0])
	link(p, 1, n.b[1], n.leaf[1])
	n.nodeP, n.b = nil, [2]*Node[K, V]{}
}

// First returns the entry with the lowest key (the oldest among equal keys),
// or nil if t is empty.
func (t *Tree[K, V]) First() *Node[K, V] {
	if t.root.b[0] == nil {
		return nil
	}
	return walkDown(t.root.b[0], t.root.leaf[0], 0)
}

// Last returns the entry with the highest key (the newest among equal keys),
// or nil if t is empty.
func (t *Tree[K, V]) Last() *Node[K, V] {
	if t.root.b[0] == nil {
		return nil
	}
	return walkDown(t.root.b[0], t.root.leaf[0], 1)
}

// PopFirst unlinks and returns the first entry, or returns nil if t is empty.
func (t *Tree[K, V]) PopFirst() *Node[K, V] {
	n := t.First()
	if n != nil {
		t.Delete(n)
	}
	return n
}

// walkDown follows side from c down to a leaf.
func walkDown[K Key, V any](c *Node[K, V], isLeaf bool, side uint8) *Node[K, V] {
	for !isLeaf {
		c, isLeaf = c.b[side], c.leaf[side]
	}
	return c
}
