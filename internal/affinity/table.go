package affinity

import (
	"maps"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/ebtree"
)

// nShards spreads lock traffic: with 64 shards two cores collide on a shard
// lock in ~1.5% of concurrent operations.
const nShards = 64

// Entry flags, guarded by the shard lock.
const (
	fQueued uint8 = 1 << iota // an op for this entry is in shard.ops
	fRedis                    // changed locally, not yet written to Redis
	fNew                      // never confirmed in Redis: write it set-if-absent
	fMoved                    // node changed since the last Redis write: publish
)

// entry is one record: 56 bytes of tree node, the key and the node's
// interned name; 80 bytes with allocator rounding. (Copying last seen and
// node into the map value, to spare a lookup the pointer chase, cost 28
// bytes per record and measured no faster at 1,000,000 records.)
type entry struct {
	lru   ebtree.Node[int64, *entry] // Key: last seen, Unix seconds
	k     key
	node  uint32 // index into Table.names
	flags uint8
}

// op asks the flusher to write the current state of k: a put if it is
// still in the table, else a delete (forget: delete in Redis too).
type op struct {
	k      key
	forget bool
}

type shard struct {
	mu  sync.RWMutex
	m   map[key]*entry
	lru ebtree.Tree[int64, *entry] // expiry and eviction order
	ops []op
	// detached: the Manager is closed, so nothing is queued any more.
	detached bool
	oldest   atomic.Int64 // lru.First().Key, MaxInt64 when empty
	hits     atomic.Uint64
	misses   atomic.Uint64
	_        [64]byte // keep neighbours' hot fields off this cache line
}

type settings struct {
	Options
	ttl int64 // seconds
}

// Table is one affinity table (a cluster, or an affinity group). Create it
// with NewTable or Manager.Table. All methods are safe for concurrent use.
type Table struct {
	name   string
	set    atomic.Pointer[settings]
	shards [nShards]shard
	count  atomic.Int64

	// Node names are interned: a record holds a uint32. The list only
	// grows, by the distinct names ever recorded (a handful per cluster).
	names   atomic.Pointer[[]string]
	nameIdx atomic.Pointer[map[string]uint32]
	namesMu sync.Mutex

	persist bool   // queue ops for a store; set before the table is shared
	kick    func() // wakes the flusher early; nil without a store

	evictions, expirations, sharedHits, conflicts atomic.Uint64
}

// NewTable returns an empty table kept only in memory (see Manager.Table
// for a persistent one). Invalid options fall back to the defaults; use
// Manager.Table to have them checked.
func NewTable(name string, o Options) *Table {
	s, err := o.withDefaults()
	if err != nil {
		s = DefaultOptions()
	}
	t := &Table{name: name}
	t.store(s)
	names, idx := []string{}, map[string]uint32{}
	t.names.Store(&names)
	t.nameIdx.Store(&idx)
	for i := range t.shards {
		t.shards[i].m = make(map[key]*entry)
		t.shards[i].oldest.Store(math.MaxInt64)
	}
	return t
}

func (t *Table) store(o Options) {
	t.set.Store(&settings{Options: o, ttl: int64(o.TTL / time.Second)})
}

// Name is the table's name (the affinity group, else the cluster).
func (t *Table) Name() string { return t.name }

// Options returns the table's current options, defaults filled in.
func (t *Table) Options() Options { return t.set.Load().Options }

// Len returns the number of records, expired ones not yet removed included.
func (t *Table) Len() int { return int(t.count.Load()) }

func (t *Table) shard(k key) *shard { return &t.shards[shardOf(k)] }

// shardOf is a Fibonacci hash of the key's 128 bits onto 64 shards.
func shardOf(k key) int { return int(((k.hi ^ k.lo) * 0x9e3779b97f4a7c15) >> (64 - 6)) }

func (t *Table) nameOf(id uint32) string { return (*t.names.Load())[id] }

// nameID interns name. Lock-free for known names.
func (t *Table) nameID(name string) uint32 {
	if id, ok := (*t.nameIdx.Load())[name]; ok {
		return id
	}
	t.namesMu.Lock()
	defer t.namesMu.Unlock()
	idx := *t.nameIdx.Load()
	if id, ok := idx[name]; ok {
		return id
	}
	old := *t.names.Load()
	names := append(old[:len(old):len(old)], name)
	idx = maps.Clone(idx)
	id := uint32(len(old))
	idx[name] = id
	t.names.Store(&names) // before the index: a reader with the id finds the name
	t.nameIdx.Store(&idx)
	return id
}

// Lookup returns the node recorded for client's prefix if the record is
// younger than the TTL at now. It counts a hit or a miss, does not refresh
// the record (Record does) and allocates nothing.
func (t *Table) Lookup(client netip.Addr, now time.Time) (node string, ok bool) {
	return t.lookup(client, now, nil)
}

func (t *Table) lookup(client netip.Addr, now time.Time, has func(string) bool) (string, bool) {
	s := t.set.Load()
	k, ok := s.keyOf(client)
	if !ok {
		return "", false
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
	if e == nil || seen+s.ttl <= now.Unix() {
		sh.misses.Add(1)
		return "", false
	}
	node := t.nameOf(id)
	if has != nil && !has(node) {
		sh.misses.Add(1)
		return "", false
	}
	sh.hits.Add(1)
	return node, true
}

// Record notes that node served client at now: it inserts a record,
// refreshes its last-seen time (in whole seconds: a client seen again
// within the same second costs one read-locked probe) or rewrites it to
// another node. The change is queued for the store. An invalid client
// address or an empty node name records nothing. When the table grows
// past Max, the least recently seen record is evicted. Call it after a
// successful dial and before relaying the first byte.
func (t *Table) Record(client netip.Addr, node string, now time.Time) {
	t.record(client, node, now, nil)
}

func (t *Table) record(client netip.Addr, node string, now time.Time, has func(string) bool) {
	s := t.set.Load()
	k, ok := s.keyOf(client)
	if !ok || node == "" {
		return
	}
	t.put(k, t.nameID(node), now.Unix(), fRedis, has)
}

// put inserts or updates k. flags is fRedis for a local change (to be
// shared) and 0 for one learnt from a store. has, when set, protects a
// live record naming a node has does not know from being rewritten (an
// expired one is fair game).
func (t *Table) put(k key, id uint32, sec int64, flags uint8, has func(string) bool) {
	sh := t.shard(k)
	sh.mu.RLock()
	if e := sh.m[k]; e != nil && e.node == id && sec <= e.lru.Key {
		sh.mu.RUnlock()
		return
	}
	sh.mu.RUnlock()

	sh.mu.Lock()
	e := sh.m[k]
	added := false
	switch {
	case e == nil:
		e = &entry{k: k, node: id, flags: flags}
		if flags&fRedis != 0 {
			e.flags |= fNew
		}
		e.lru.Key, e.lru.Value = sec, e
		sh.m[k] = e
		sh.lru.Insert(&e.lru)
		t.count.Add(1)
		added = true
	case e.node != id:
		if has != nil && e.lru.Key+t.set.Load().ttl > sec && !has(t.nameOf(e.node)) {
			sh.mu.Unlock()
			return
		}
		e.node = id
		e.flags |= flags
		if flags&fRedis != 0 {
			e.flags |= fMoved
		}
		t.touch(sh, e, sec)
	case sec > e.lru.Key:
		e.flags |= flags
		t.touch(sh, e, sec)
	default: // a racing writer got there first
		sh.mu.Unlock()
		return
	}
	t.queue(sh, e)
	sh.mu.Unlock()
	if added {
		t.evict(int64(t.set.Load().Max))
	}
}

// touch moves e to last seen sec if that is later. Shard lock held.
func (t *Table) touch(sh *shard, e *entry, sec int64) {
	if sec <= e.lru.Key {
		return
	}
	sh.lru.Delete(&e.lru)
	e.lru.Key = sec
	sh.lru.Insert(&e.lru)
	sh.updateOldest()
}

// queue asks the flusher to write e. Shard lock held.
func (t *Table) queue(sh *shard, e *entry) {
	sh.updateOldest()
	if !t.persist || sh.detached || e.flags&fQueued != 0 {
		return
	}
	e.flags |= fQueued
	t.queueOp(sh, op{k: e.k})
}

func (t *Table) queueOp(sh *shard, o op) {
	if !t.persist || sh.detached {
		return
	}
	sh.ops = append(sh.ops, o)
	if len(sh.ops) == FlushBatch/nShards && t.kick != nil {
		t.kick()
	}
}

// detach stops queueing changes for a store and drops those queued: the
// Manager closed, and nothing would write them.
func (t *Table) detach() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.detached = true
		sh.ops = nil
		sh.mu.Unlock()
	}
}

func (sh *shard) updateOldest() {
	if f := sh.lru.First(); f != nil {
		sh.oldest.Store(f.Key)
	} else {
		sh.oldest.Store(math.MaxInt64)
	}
}

// remove unlinks e. Shard lock held.
func (t *Table) remove(sh *shard, e *entry, forget bool) {
	if e.lru.Linked() {
		sh.lru.Delete(&e.lru)
	}
	delete(sh.m, e.k)
	t.count.Add(-1)
	sh.updateOldest()
	t.queueOp(sh, op{k: e.k, forget: forget})
}

// evict removes least recently seen records while there are more than max.
// Concurrent writers may overshoot or undershoot max by one each, briefly.
func (t *Table) evict(max int64) {
	for t.count.Load() > max {
		best, bv := -1, int64(math.MaxInt64)
		for i := range t.shards {
			if v := t.shards[i].oldest.Load(); v < bv {
				best, bv = i, v
			}
		}
		if best < 0 {
			return
		}
		sh := &t.shards[best]
		sh.mu.Lock()
		if t.count.Load() > max {
			if n := sh.lru.First(); n != nil {
				t.remove(sh, n.Value, false)
				t.evictions.Add(1)
			} else {
				sh.updateOldest() // a stale stamp: do not pick this shard again
			}
		}
		sh.mu.Unlock()
	}
}

// Forget removes client's record (in Redis too when shared) and reports
// whether there was one.
func (t *Table) Forget(client netip.Addr) bool {
	k, ok := t.set.Load().keyOf(client)
	if !ok {
		return false
	}
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e != nil {
		t.remove(sh, e, true)
	}
	return e != nil
}

// Expire removes the records last seen a TTL or more before now and
// returns how many. It holds a shard lock for at most expireChunk removals
// at a time. The Manager calls it every second; a table without a Manager
// needs its owner to (expired records are misses either way).
func (t *Table) Expire(now time.Time) int {
	const expireChunk = 1024
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		for more := true; more; {
			limit := now.Unix() - t.set.Load().ttl
			sh.mu.Lock()
			more = false
			for j := 0; ; j++ {
				f := sh.lru.First()
				if f == nil || f.Key > limit {
					break
				}
				if j == expireChunk {
					more = true
					break
				}
				t.remove(sh, f.Value, false)
				n++
			}
			sh.mu.Unlock()
		}
	}
	t.expirations.Add(uint64(n))
	return n
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	s := Stats{
		Records:     t.Len(),
		Evictions:   t.evictions.Load(),
		Expirations: t.expirations.Load(),
		SharedHits:  t.sharedHits.Load(),
		Conflicts:   t.conflicts.Load(),
	}
	for i := range t.shards {
		s.Hits += t.shards[i].hits.Load()
		s.Misses += t.shards[i].misses.Load()
	}
	return s
}
