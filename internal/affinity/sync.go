package affinity

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
)

// The store side of a Table: what the Manager's flusher, restore and Redis
// code call. Every function takes the shard locks itself.

// change is one record's state to write: a put of node/seen, or a delete.
type change struct {
	k     key
	node  string
	seen  int64
	bolt  bool // write to bbolt
	del   bool // the record is gone (bbolt delete)
	redis bool // write to Redis: a put, or with forget a delete
	nx    bool // Redis put: set only if absent (a client new to this balancer)
	moved bool // Redis put: the node changed, publish it
	fgt   bool // deleted by Forget: delete in Redis too
}

// drain takes the queued ops of every shard and resolves them against the
// current state. With redisUp, records changed locally since their last
// Redis write (and Forgets) are marked for Redis and their flags cleared;
// otherwise those flags stay set for writeBack.
func (t *Table) drain(redisUp bool, out []change) []change {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		ops := sh.ops
		sh.ops = nil
		for _, o := range ops {
			e := sh.m[o.k]
			if e == nil {
				out = append(out, change{k: o.k, bolt: true, del: true, fgt: o.forget, redis: o.forget && redisUp})
				continue
			}
			if e.flags&fQueued == 0 {
				continue // already resolved by an earlier op on the same key
			}
			e.flags &^= fQueued
			c := change{k: o.k, node: t.nameOf(e.node), seen: e.lru.Key, bolt: true}
			if redisUp && e.flags&fRedis != 0 {
				c.redis, c.nx, c.moved = true, e.flags&fNew != 0, e.flags&fMoved != 0
				e.flags &^= fRedis | fNew | fMoved
			}
			out = append(out, c)
		}
		sh.mu.Unlock()
	}
	return out
}

// pendingRedis collects every record changed locally while Redis was away
// (one pass over the table) and clears their flags.
func (t *Table) pendingRedis(out []change) []change {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			if e.flags&fRedis != 0 {
				out = append(out, change{k: e.k, node: t.nameOf(e.node), seen: e.lru.Key,
					redis: true, nx: e.flags&fNew != 0, moved: e.flags&fMoved != 0})
				e.flags &^= fRedis | fNew | fMoved
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// remark restores the Redis flags of a put that Redis did not take.
func (t *Table) remark(c change) {
	sh := t.shard(c.k)
	sh.mu.Lock()
	if e := sh.m[c.k]; e != nil {
		e.flags |= fRedis
		if c.nx {
			e.flags |= fNew
		}
		if c.moved {
			e.flags |= fMoved
		}
	}
	sh.mu.Unlock()
}

// requeue queues c again after a failed bbolt write.
func (t *Table) requeue(c change) {
	sh := t.shard(c.k)
	sh.mu.Lock()
	if e := sh.m[c.k]; e != nil {
		t.queue(sh, e)
	} else {
		t.queueOp(sh, op{k: c.k})
	}
	sh.mu.Unlock()
}

// adopt replaces the local record of k by another balancer's. With create
// it inserts one if absent (a Redis lookup); with newerOnly it yields to a
// local record seen more recently (a pushed change). The record is queued
// for bbolt but not for Redis, which already holds it.
func (t *Table) adopt(k key, node string, seen int64, create, newerOnly bool) {
	id := t.nameID(node)
	sh := t.shard(k)
	sh.mu.Lock()
	e := sh.m[k]
	if e == nil {
		sh.mu.Unlock()
		if create {
			t.put(k, id, seen, 0, nil)
		}
		return
	}
	if newerOnly && seen < e.lru.Key {
		sh.mu.Unlock()
		return
	}
	if e.node != id {
		e.node = id
		e.flags &^= fRedis | fNew | fMoved
		t.conflicts.Add(1)
	}
	t.touch(sh, e, seen)
	t.queue(sh, e)
	sh.mu.Unlock()
}

// drop removes k's record without forgetting it in Redis (a pushed delete).
func (t *Table) drop(k key) {
	sh := t.shard(k)
	sh.mu.Lock()
	if e := sh.m[k]; e != nil {
		t.remove(sh, e, false)
	}
	sh.mu.Unlock()
}

// stored is a record read from bbolt.
type stored struct {
	k    key
	seen int64
	node uint32
}

// nameIDBytes is nameID without allocating for a known name.
func (t *Table) nameIDBytes(b []byte) uint32 {
	if id, ok := (*t.nameIdx.Load())[string(b)]; ok {
		return id
	}
	return t.nameID(string(b))
}

// restoreAll inserts stored records without queueing them for any store.
// The records are sorted oldest first and partitioned by shard, and each
// shard is filled under one lock hold: its expiry tree grows on its
// recently touched right spine and its map stays in cache, which makes a
// 1,000,000-record restore several times faster than inserting in key
// order. Shards are filled by GOMAXPROCS goroutines.
func (t *Table) restoreAll(recs []stored) {
	slices.SortFunc(recs, func(a, b stored) int { return cmp.Compare(a.seen, b.seen) })
	var start [nShards + 1]int
	for _, r := range recs {
		start[shardOf(r.k)+1]++
	}
	for i := range nShards {
		start[i+1] += start[i]
	}
	parts := make([]stored, len(recs))
	next := start
	for _, r := range recs {
		i := shardOf(r.k)
		parts[next[i]] = r
		next[i]++
	}
	var wg sync.WaitGroup
	work := make(chan int, nShards)
	for i := range nShards {
		work <- i
	}
	close(work)
	for range min(runtime.GOMAXPROCS(0), nShards) {
		wg.Go(func() {
			for i := range work {
				t.fillShard(&t.shards[i], parts[start[i]:start[i+1]])
			}
		})
	}
	wg.Wait()
}

func (t *Table) fillShard(sh *shard, recs []stored) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) == 0 {
		sh.m = make(map[key]*entry, len(recs))
	}
	for _, r := range recs {
		if _, dup := sh.m[r.k]; dup {
			continue
		}
		e := &entry{k: r.k, node: r.node}
		e.lru.Key, e.lru.Value = r.seen, e
		sh.m[r.k] = e
		sh.lru.Insert(&e.lru)
		t.count.Add(1)
	}
	sh.updateOldest()
}
