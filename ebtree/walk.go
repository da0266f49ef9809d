package ebtree

import "iter"

// Walking climbs from a leaf part through node-part parents until it can turn
// to the other side, then walks down: two hops on average (see the article).
// The root is recognised by its nil right branch.

// Next returns the entry after n in key order (duplicates in insertion
// order), or nil if n is the last or not linked.
func (n *Node[K, V]) Next() *Node[K, V] {
	if n.leafP == nil {
		return nil
	}
	return nextAfter(n.leafP, n.lside)
}

// Prev returns the entry before n in key order (duplicates in reverse
// insertion order), or nil if n is the first or not linked.
func (n *Node[K, V]) Prev() *Node[K, V] {
	if n.leafP == nil {
		return nil
	}
	return prevBefore(n.leafP, n.lside)
}

// NextUnique returns the first entry with the next higher key than n's, or
// nil if there is none or n is not linked.
func (n *Node[K, V]) NextUnique() *Node[K, V] {
	p, side := n.leafP, n.lside
	if p == nil {
		return nil
	}
	for {
		if side == 0 {
			if p.b[1] == nil {
				return nil // climbed to the root
			}
			if p.bit >= 0 {
				break // right branch holds higher keys
			}
		}
		p, side = p.nodeP, p.nside
	}
	return walkDown(p.b[1], p.leaf[1], 0)
}

// PrevUnique returns the last entry (the newest) with the next lower key than
// n's, or nil if there is none or n is not linked.
func (n *Node[K, V]) PrevUnique() *Node[K, V] {
	p, side := n.leafP, n.lside
	if p == nil {
		return nil
	}
	for {
		if side == 1 {
			if p.bit >= 0 {
				break // left branch holds lower keys
			}
		} else if p.b[1] == nil {
			return nil
		}
		p, side = p.nodeP, p.nside
	}
	return walkDown(p.b[0], p.leaf[0], 1)
}

// nextAfter returns the first leaf after everything hanging on side of p.
func nextAfter[K Key, V any](p *Node[K, V], side uint8) *Node[K, V] {
	for side == 1 {
		p, side = p.nodeP, p.nside
	}
	if p.b[1] == nil {
		return nil
	}
	return walkDown(p.b[1], p.leaf[1], 0)
}

// prevBefore returns the last leaf before everything hanging on side of p.
func prevBefore[K Key, V any](p *Node[K, V], side uint8) *Node[K, V] {
	for side == 0 {
		if p.b[1] == nil {
			return nil
		}
		p, side = p.nodeP, p.nside
	}
	return walkDown(p.b[0], p.leaf[0], 1)
}

// All returns an iterator over the entries in key order. The entry being
// visited may be deleted during the walk.
func (t *Tree[K, V]) All() iter.Seq[*Node[K, V]] {
	return func(yield func(*Node[K, V]) bool) {
		for n := t.First(); n != nil; {
			next := n.Next()
			if !yield(n) {
				return
			}
			n = next
		}
	}
}

// Backward returns an iterator over the entries in reverse key order. The
// entry being visited may be deleted during the walk.
func (t *Tree[K, V]) Backward() iter.Seq[*Node[K, V]] {
	return func(yield func(*Node[K, V]) bool) {
		for n := t.Last(); n != nil; {
			prev := n.Prev()
			if !yield(n) {
				return
			}
			n = prev
		}
	}
}
