package affinity

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

// restore inserts a stored record without queueing it for any store.
func (t *Table) restore(k key, node string, seen int64) {
	id := t.nameID(node)
	sh := t.shard(k)
	sh.mu.Lock()
	if sh.m[k] == nil {
		e := &entry{k: k, node: id}
		e.lru.Key, e.lru.Value = seen, e
		sh.m[k] = e
		sh.lru.Insert(&e.lru)
		t.count.Add(1)
		sh.updateOldest()
	}
	sh.mu.Unlock()
}
