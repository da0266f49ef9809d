package affinity

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// View is one cluster's view of a table it may share with the other
// clusters of its affinity group (DESIGN F11): a record naming a node the
// cluster does not have is a miss through the view and is never rewritten
// through it, so an FTP data cluster cannot overwrite the record its
// control cluster relies on. A View is immutable and safe for concurrent use.
type View struct {
	t   *Table
	has func(node string) bool
}

// View returns a view through which only records naming a node for which
// has returns true are seen and rewritten. has == nil sees every record,
// which is right for a table used by one cluster: there a record naming a
// removed node is rewritten to the client's new node. For a group, a good
// has is "the cluster has this node, or no cluster of the group has it",
// so records of nodes removed everywhere follow the client too. has is
// called with a shard lock held: it must be fast, safe for concurrent use
// and must not call back into the table.
func (t *Table) View(has func(node string) bool) *View { return &View{t: t, has: has} }

// Table returns the table behind v.
func (v *View) Table() *Table { return v.t }

// Lookup is Table.Lookup through the view: a record naming a node the view
// does not have counts as a miss.
func (v *View) Lookup(client netip.Addr, now time.Time) (node string, ok bool) {
	return v.t.lookup(client, now, v.has)
}

// Record is Table.Record through the view: it does nothing when client's
// record names another node that the view does not have.
func (v *View) Record(client netip.Addr, node string, now time.Time) {
	v.t.record(client, node, now, v.has)
}

// GroupOptions returns the options of table name from the options of the
// clusters that share it. The rule is equality: clusters of one affinity
// group must agree on masks, TTL and max, else the records one writes would
// be read under other keys or lifetimes by the other. The config loader
// should call it and report its error, which names the group and the first
// differing setting.
func GroupOptions(name string, opts ...Options) (Options, error) {
	if len(opts) == 0 {
		return Options{}, fmt.Errorf("affinity group %q: no cluster", name)
	}
	first, err := opts[0].withDefaults()
	if err != nil {
		return first, fmt.Errorf("affinity group %q: %w", name, err)
	}
	for _, o := range opts[1:] {
		o, err := o.withDefaults()
		if err != nil {
			return first, fmt.Errorf("affinity group %q: %w", name, err)
		}
		var what string
		var a, b any
		switch {
		case o.MaskV4 != first.MaskV4:
			what, a, b = "affinity_mask_v4", first.MaskV4, o.MaskV4
		case o.MaskV6 != first.MaskV6:
			what, a, b = "affinity_mask_v6", first.MaskV6, o.MaskV6
		case o.TTL != first.TTL:
			what, a, b = "affinity_ttl", first.TTL, o.TTL
		case o.Max != first.Max:
			what, a, b = "affinity_max", first.Max, o.Max
		default:
			continue
		}
		return first, fmt.Errorf("affinity group %q: clusters disagree on %s (%v and %v): it must be the same in every cluster of the group", name, what, a, b)
	}
	return first, nil
}

// SetOptions changes the table's options at run time (a reload). A new TTL
// or Max applies at once (Max by evicting). A new mask re-keys every record
// under it; records that fall together keep the most recently seen one's
// node, and lookups may miss while the re-keying runs. Widening a mask
// (24 to 32) keeps only the records of the prefixes' first address.
func (t *Table) SetOptions(o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return fmt.Errorf("affinity table %q: %w", t.name, err)
	}
	old := t.set.Load()
	if o.MaskV4 == old.MaskV4 && o.MaskV6 == old.MaskV6 {
		t.store(o)
		t.evict(int64(o.Max))
		return nil
	}
	type saved struct {
		a    netip.Addr
		node uint32
		seen int64
	}
	var all []saved
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			all = append(all, saved{e.k.addr(), e.node, e.lru.Key})
			t.remove(sh, e, false)
		}
		sh.mu.Unlock()
	}
	t.store(o)
	slices.SortFunc(all, func(a, b saved) int { return cmp.Compare(a.seen, b.seen) })
	for _, s := range all {
		if k, ok := o.keyOf(s.a); ok {
			t.put(k, s.node, s.seen, fRedis, nil)
		}
	}
	return nil
}

// Entry is one record as the admin API shows it.
type Entry struct {
	Prefix   netip.Prefix // the client's masked address
	Node     string
	LastSeen time.Time // whole seconds
}

// Get returns client's record without counting a hit or a miss (for the
// admin API: GET /api/affinity/{ip}); expired records not yet removed are
// returned too, check LastSeen.
func (t *Table) Get(client netip.Addr) (Entry, bool) {
	s := t.set.Load()
	k, ok := s.keyOf(client)
	if !ok {
		return Entry{}, false
	}
	sh := t.shard(k)
	sh.mu.RLock()
	e := sh.m[k]
	var seen int64
	var id uint32
	if e != nil {
		seen, id = e.lru.Key, e.node
	}
	sh.mu.RUnlock()
	if e == nil {
		return Entry{}, false
	}
	bits := s.MaskV6
	if a := k.addr(); a.Is4() {
		bits = s.MaskV4
	}
	return Entry{Prefix: netip.PrefixFrom(k.addr(), bits), Node: t.nameOf(id), LastSeen: time.Unix(seen, 0)}, true
}
