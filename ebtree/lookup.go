package ebtree

// Lookups descend from the root comparing only the bits above each node's
// split bit with the key of the entry owning that node part: that entry's
// leaf lies below, so its upper bits are those of the whole subtree.

// Lookup returns the oldest entry with key k, or nil if there is none.
func (t *Tree[K, V]) Lookup(k K) *Node[K, V] {
	x := ord(k)
	c, isLeaf := t.root.b[0], t.root.leaf[0]
	if c == nil {
		return nil
	}
	for !isLeaf {
		if c.bit < 0 { // duplicate subtree: all keys equal
			if ord(c.Key) != x {
				return nil
			}
			return walkDown(c, false, 0)
		}
		if (x^ord(c.Key))>>uint(c.bit) >= 2 {
			return nil
		}
		side := x >> uint(c.bit) & 1
		c, isLeaf = c.b[side], c.leaf[side]
	}
	if ord(c.Key) != x {
		return nil
	}
	return c
}

// LookupGE returns the first entry in walk order with a key >= k (the oldest
// of the lowest such key), or nil if there is none.
func (t *Tree[K, V]) LookupGE(k K) *Node[K, V] {
	x := ord(k)
	p, side := &t.root, uint8(0)
	if p.b[0] == nil {
		return nil
	}
	for {
		c := p.b[side]
		y := ord(c.Key)
		if p.leaf[side] {
			if y >= x {
				return c
			}
			return nextAfter(p, side)
		}
		if c.bit < 0 || (x^y)>>uint(c.bit) >= 2 {
			// The whole subtree lies on one side of x.
			if y >= x {
				return walkDown(c, false, 0)
			}
			return nextAfter(p, side)
		}
		p, side = c, uint8(x>>uint(c.bit)&1)
	}
}

// LookupLE returns the last entry in walk order with a key <= k (the newest
// of the highest such key), or nil if there is none.
func (t *Tree[K, V]) LookupLE(k K) *Node[K, V] {
	x := ord(k)
	p, side := &t.root, uint8(0)
	if p.b[0] == nil {
		return nil
	}
	for {
		c := p.b[side]
		y := ord(c.Key)
		if p.leaf[side] {
			if y <= x {
				return c
			}
			return prevBefore(p, side)
		}
		if c.bit < 0 || (x^y)>>uint(c.bit) >= 2 {
			if y <= x {
				return walkDown(c, false, 1)
			}
			return prevBefore(p, side)
		}
		p, side = c, uint8(x>>uint(c.bit)&1)
	}
}
