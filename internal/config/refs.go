package config

import (
	"strconv"
	"strings"
)

// refs checks what no single table can: unique names, references between
// tables, fall-over chains and listeners that would bind the same port.
func (b *builder) refs(c *Config) {
	if len(c.Listeners) == 0 {
		b.errs = append(b.errs, &Error{File: b.file, Line: 1,
			Msg: "no [[listener]]: at least one listener is required"})
	}
	listeners := map[string]int{}
	for i, l := range c.Listeners {
		s := b.namedScope("listener", i, l.Name, scope{})
		if first, dup := listeners[l.Name]; dup && l.Name != "" {
			b.errf(s, "name", "name %q: already used by the listener at line %d", l.Name, c.Listeners[first].Line)
		} else {
			listeners[l.Name] = i
		}
		if l.Cluster != "" && c.Cluster(l.Cluster) == nil {
			b.errf(s, "cluster", "cluster %q: no such [[cluster]]", l.Cluster)
		}
	}
	b.bindOverlaps(c)

	clusters := map[string]int{}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		s := b.namedScope("cluster", i, cl.Name, scope{})
		if first, dup := clusters[cl.Name]; dup && cl.Name != "" {
			b.errf(s, "name", "name %q: already used by the cluster at line %d", cl.Name, c.Clusters[first].Line)
		} else {
			clusters[cl.Name] = i
		}
		b.nodeRefs(s, cl)
	}
	b.affinityGroups(c)
}

// affinityGroups checks that clusters sharing an affinity table (the same
// affinity_group) agree on how the table keys and keeps records.
func (b *builder) affinityGroups(c *Config) {
	first := map[string]int{}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		if !cl.Affinity || cl.AffinityGroup == "" {
			continue
		}
		j, seen := first[cl.AffinityGroup]
		if !seen {
			first[cl.AffinityGroup] = i
			continue
		}
		f := &c.Clusters[j]
		s := b.namedScope("cluster", i, cl.Name, scope{})
		for _, d := range []struct {
			key       string
			mine, its any
		}{
			{"affinity_mask_v4", cl.AffinityMaskV4, f.AffinityMaskV4},
			{"affinity_mask_v6", cl.AffinityMaskV6, f.AffinityMaskV6},
			{"affinity_ttl", cl.AffinityTTL, f.AffinityTTL},
			{"affinity_max", cl.AffinityMax, f.AffinityMax},
		} {
			if d.mine != d.its {
				b.errf(s, d.key, "%s %v: differs from cluster %q (%v), which shares affinity_group %q: clusters of a group share one table",
					d.key, d.mine, f.Name, d.its, cl.AffinityGroup)
			}
		}
	}
}

// namedScope rebuilds the scope of the i-th element of an array of tables.
func (b *builder) namedScope(key string, i int, name string, parent scope) scope {
	var p *string
	if name != "" {
		p = &name
	}
	return b.elemScope(parent, key, i, p)
}

// nodeRefs checks node names and fall-over references within one cluster.
func (b *builder) nodeRefs(s scope, cl *Cluster) {
	byName := map[string]int{}
	for j, n := range cl.Nodes {
		ns := b.namedScope("node", j, n.Name, s)
		if first, dup := byName[n.Name]; dup && n.Name != "" {
			b.errf(ns, "name", "name %q: already used by the node at line %d", n.Name, cl.Nodes[first].Line)
			continue
		}
		byName[n.Name] = j
	}
	bad := make([]bool, len(cl.Nodes)) // fallover unusable: skip in loop search
	for j, n := range cl.Nodes {
		if n.Fallover == "" {
			continue
		}
		ns := b.namedScope("node", j, n.Name, s)
		switch _, ok := byName[n.Fallover]; {
		case n.Fallover == n.Name:
			b.errf(ns, "fallover", "fallover %q: a node cannot stand in for itself", n.Fallover)
			bad[j] = true
		case !ok:
			b.errf(ns, "fallover", "fallover %q: no such node in this cluster", n.Fallover)
			bad[j] = true
		}
	}
	b.falloverLoops(s, cl, byName, bad)
}

// falloverLoops reports each cycle of fall-over references once, at the
// first node of the cycle in file order. Every node has at most one
// fallover, so following the chain from each node finds every cycle.
func (b *builder) falloverLoops(s scope, cl *Cluster, byName map[string]int, bad []bool) {
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]int, len(cl.Nodes))
	for start := range cl.Nodes {
		var path []int
		j := start
		for j >= 0 && state[j] == unseen {
			state[j] = onPath
			path = append(path, j)
			j = b.next(cl, j, byName, bad)
		}
		if j >= 0 && state[j] == onPath {
			// The cycle is the tail of path from j; blame its first node.
			k := 0
			for path[k] != j {
				k++
			}
			cycle := path[k:]
			first := cycle[0]
			for _, x := range cycle {
				first = min(first, x)
			}
			names := make([]string, 0, len(cycle)+1)
			at := 0
			for cycle[at] != first {
				at++
			}
			for m := range len(cycle) + 1 {
				names = append(names, strconv.Quote(cl.Nodes[cycle[(at+m)%len(cycle)]].Name))
			}
			n := cl.Nodes[first]
			b.errf(b.namedScope("node", first, n.Name, s), "fallover",
				"fallover %q: loop %s", n.Fallover, strings.Join(names, " -> "))
		}
		for _, x := range path {
			state[x] = done
		}
	}
}

// next is the index of node j's fall-over node, or -1 for none.
func (b *builder) next(cl *Cluster, j int, byName map[string]int, bad []bool) int {
	if bad[j] || cl.Nodes[j].Fallover == "" {
		return -1
	}
	k, ok := byName[cl.Nodes[j].Fallover]
	if !ok {
		return -1
	}
	return k
}

// bindOverlaps reports listeners whose binds share a port on the same
// address, or on a wildcard address of the same family (binding the second
// would fail at start, or with SO_REUSEPORT silently split the traffic).
// Port 0 never clashes.
func (b *builder) bindOverlaps(c *Config) {
	for i := range c.Listeners {
		bi := c.Listeners[i].Bind
		if !bi.Addr.IsValid() || bi.FirstPort == 0 {
			continue
		}
		for j := range i {
			bj := c.Listeners[j].Bind
			if sameAddr(bi, bj) && bj.FirstPort != 0 && bi.FirstPort <= bj.LastPort && bj.FirstPort <= bi.LastPort {
				s := b.namedScope("listener", i, c.Listeners[i].Name, scope{})
				b.errf(s, "bind", "bind %q: overlaps the bind of the listener at line %d",
					bi.String(), c.Listeners[j].Line)
				break
			}
		}
	}
}

func sameAddr(a, b Bind) bool {
	if a.Addr.Is4() != b.Addr.Is4() {
		return false
	}
	return a.Addr == b.Addr || a.Addr.IsUnspecified() || b.Addr.IsUnspecified()
}
