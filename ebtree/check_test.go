package ebtree

import "fmt"

// checkTree verifies the structural invariants the article lists, plus the
// key properties the lookups rely on, and returns the first violation:
//   - only the root may hold a nil branch, and its right branch is always nil;
//   - a node part never has both branches equal and is never its own parent;
//   - every parent link (node and leaf parts) and its side match the branch
//     that points at it;
//   - bit positions decrease downwards; inside a duplicate subtree (bit < 0)
//     they increase towards -1 and all keys are equal;
//   - below a split at bit b, all keys share the bits above b with the owner
//     of the node part, and bit b selects the branch;
//   - a used node part lies above its own leaf; unused node parts have a nil
//     parent; the number of leaves equals Len.
func checkTree[K Key, V any](t *Tree[K, V]) error {
	r := &t.root
	if r.b[1] != nil {
		return fmt.Errorf("root right branch not nil")
	}
	if r.b[0] == nil {
		if t.n != 0 {
			return fmt.Errorf("empty tree with Len %d", t.n)
		}
		return nil
	}
	c := &checker[K, V]{
		onPath:   make(map[*Node[K, V]]bool, 64),
		nodes:    make(map[*Node[K, V]]bool, t.n),
		seenLeaf: make(map[*Node[K, V]]bool, t.n),
	}
	if r.leaf[0] {
		if r.b[0].nodeP != nil {
			return fmt.Errorf("single leaf uses its node part")
		}
	}
	if _, _, err := c.walk(r, 0); err != nil {
		return err
	}
	if c.leaves != t.n {
		return fmt.Errorf("%d leaves, Len %d", c.leaves, t.n)
	}
	for n := range c.nodes {
		if !c.seenLeaf[n] {
			return fmt.Errorf("node part of key %v used but its leaf is not in the tree", n.Key)
		}
	}
	return nil
}

type checker[K Key, V any] struct {
	onPath   map[*Node[K, V]]bool // node parts from the root to here
	nodes    map[*Node[K, V]]bool // node parts seen
	seenLeaf map[*Node[K, V]]bool
	leaves   int
}

// walk checks the subtree on side of p and returns its min and max ord keys.
func (c *checker[K, V]) walk(p *Node[K, V], side uint8) (lo, hi uint64, err error) {
	n := p.b[side]
	if n == nil {
		return 0, 0, fmt.Errorf("nil branch %d below key %v", side, p.Key)
	}
	if p.leaf[side] {
		if n.leafP != p || n.lside != side {
			return 0, 0, fmt.Errorf("leaf %v: bad leaf parent", n.Key)
		}
		if c.seenLeaf[n] {
			return 0, 0, fmt.Errorf("leaf %v reached twice", n.Key)
		}
		c.seenLeaf[n] = true
		c.leaves++
		if n.nodeP != nil && !c.onPath[n] {
			return 0, 0, fmt.Errorf("leaf %v: node part in use but not above the leaf", n.Key)
		}
		if n.nodeP == nil && c.nodes[n] {
			return 0, 0, fmt.Errorf("leaf %v: node part used with nil parent", n.Key)
		}
		k := ord(n.Key)
		return k, k, nil
	}
	if n.nodeP != p || n.nside != side {
		return 0, 0, fmt.Errorf("node %v: bad node parent", n.Key)
	}
	if n.nodeP == n {
		return 0, 0, fmt.Errorf("node %v is its own parent", n.Key)
	}
	if c.nodes[n] {
		return 0, 0, fmt.Errorf("node %v reached twice", n.Key)
	}
	c.nodes[n] = true
	if n.b[0] == n.b[1] && n.leaf[0] == n.leaf[1] {
		return 0, 0, fmt.Errorf("node %v: both branches equal", n.Key)
	}
	if p.b[1] != nil { // p is not the root
		switch {
		case p.bit >= 0 && n.bit >= p.bit:
			return 0, 0, fmt.Errorf("node %v: bit %d below bit %d", n.Key, n.bit, p.bit)
		case p.bit < 0 && (n.bit <= p.bit || n.bit >= 0):
			return 0, 0, fmt.Errorf("dup node %v: bit %d below bit %d", n.Key, n.bit, p.bit)
		}
	}
	c.onPath[n] = true
	l0, h0, err := c.walk(n, 0)
	if err != nil {
		return 0, 0, err
	}
	l1, h1, err := c.walk(n, 1)
	if err != nil {
		return 0, 0, err
	}
	delete(c.onPath, n)
	k := ord(n.Key)
	if n.bit < 0 {
		if l0 != k || h0 != k || l1 != k || h1 != k {
			return 0, 0, fmt.Errorf("dup node %v holds other keys", n.Key)
		}
		return k, k, nil
	}
	b := uint(n.bit)
	for _, x := range []uint64{l0, h0, l1, h1} {
		if (x^k)>>b >= 2 {
			return 0, 0, fmt.Errorf("node %v bit %d: key %x differs above the bit", n.Key, b, x)
		}
	}
	if l0>>b&1 != 0 || h0>>b&1 != 0 || l1>>b&1 != 1 || h1>>b&1 != 1 {
		return 0, 0, fmt.Errorf("node %v bit %d: keys on the wrong side", n.Key, b)
	}
	if h0 >= l1 {
		return 0, 0, fmt.Errorf("node %v: left max %x >= right min %x", n.Key, h0, l1)
	}
	return l0, h1, nil
}

// checkPrefixTree verifies the same structural invariants for both families
// of a PrefixTree, with levels instead of bits: levels increase downwards,
// every key below a node shares its first pos (split) or len (cover) bits,
// a split's bit selects the branch and a cover's left branch is the leaf of
// exactly that prefix.
func checkPrefixTree[V any](t *PrefixTree[V]) error {
	leaves := 0
	for fam := range t.roots {
		r := &t.roots[fam]
		if r.b[1] != nil {
			return fmt.Errorf("root %d right branch not nil", fam)
		}
		if r.b[0] == nil {
			continue
		}
		n, err := checkPrefixSub(r, 0, -1, map[*PrefixNode[V]]bool{})
		if err != nil {
			return err
		}
		leaves += n
	}
	if leaves != t.n {
		return fmt.Errorf("%d leaves, Len %d", leaves, t.n)
	}
	return nil
}

func checkPrefixSub[V any](p *PrefixNode[V], side uint8, plvl int, onPath map[*PrefixNode[V]]bool) (int, error) {
	n := p.b[side]
	if n == nil {
		return 0, fmt.Errorf("nil branch below %v", p.Prefix())
	}
	if p.leaf[side] {
		if n.leafP != p || n.lside != side {
			return 0, fmt.Errorf("leaf %v: bad leaf parent", n.Prefix())
		}
		if n.nodeP != nil && !onPath[n] {
			return 0, fmt.Errorf("leaf %v: node part not above leaf", n.Prefix())
		}
		if 2*int(n.plen) < plvl {
			return 0, fmt.Errorf("leaf %v below level %d", n.Prefix(), plvl)
		}
		return 1, nil
	}
	if n.nodeP != p || n.nside != side || n.nodeP == n {
		return 0, fmt.Errorf("node %v: bad node parent", n.Prefix())
	}
	if n.b[0] == n.b[1] && n.leaf[0] == n.leaf[1] {
		return 0, fmt.Errorf("node %v: both branches equal", n.Prefix())
	}
	if int(n.lvl) <= plvl {
		return 0, fmt.Errorf("node %v: level %d below level %d", n.Prefix(), n.lvl, plvl)
	}
	m := int(n.lvl >> 1)
	if n.lvl&1 == 0 {
		l := n.b[0]
		if !n.leaf[0] || int(l.plen) != m {
			return 0, fmt.Errorf("cover %d: left branch is not a /%d leaf", m, m)
		}
	}
	onPath[n] = true
	defer delete(onPath, n)
	total := 0
	for s := uint8(0); s < 2; s++ {
		cnt, err := checkPrefixSub(n, s, int(n.lvl), onPath)
		if err != nil {
			return 0, err
		}
		total += cnt
		var bad error
		visitPrefixLeaves(n.b[s], n.leaf[s], func(x *PrefixNode[V]) {
			if bad != nil {
				return
			}
			if clz128(x.hi^n.hi, x.lo^n.lo) < m || x.v6 != n.v6 {
				bad = fmt.Errorf("node lvl %d: %v does not share %d bits", n.lvl, x.Prefix(), m)
			}
			if n.lvl&1 == 0 && s == 1 && int(x.plen) <= m {
				bad = fmt.Errorf("cover %d: %v on the right", m, x.Prefix())
			}
			if n.lvl&1 == 1 && bitAt(x.hi, x.lo, m) != s {
				bad = fmt.Errorf("split %d: %v on side %d", m, x.Prefix(), s)
			}
		})
		if bad != nil {
			return 0, bad
		}
	}
	return total, nil
}

func visitPrefixLeaves[V any](c *PrefixNode[V], isLeaf bool, f func(*PrefixNode[V])) {
	if isLeaf {
		f(c)
		return
	}
	visitPrefixLeaves(c.b[0], c.leaf[0], f)
	visitPrefixLeaves(c.b[1], c.leaf[1], f)
}
