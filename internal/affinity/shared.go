package affinity

// The Manager's shared mode: lookups on a miss, writes, write-back and
// pushed changes. The rules are in the Manager's doc comment.

import (
	"context"
	"net/netip"
	"time"
)

// LookupShared is v.Lookup, then on a miss one Redis lookup bounded by
// RedisLookupTimeout (and ctx). A record found there is kept locally and
// counted in Stats.SharedHits. While Redis is down (the breaker is open)
// the Redis lookup is skipped and a miss costs nothing more.
func (m *Manager) LookupShared(ctx context.Context, v *View, client netip.Addr, now time.Time) (node string, ok bool) {
	if node, ok = v.Lookup(client, now); ok {
		return node, true
	}
	r := m.redis
	if r == nil || !r.up.Load() {
		return "", false
	}
	t := v.t
	s := t.set.Load()
	k, valid := s.keyOf(client)
	if !valid {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, RedisLookupTimeout)
	node, seen, found, err := r.get(ctx, t.name, k)
	cancel()
	if err != nil {
		r.fail(err, false)
		return "", false
	}
	if !found || seen+s.ttl <= now.Unix() {
		return "", false
	}
	t.adopt(k, node, seen, true, false)
	t.sharedHits.Add(1)
	if v.has != nil && !v.has(node) {
		return "", false
	}
	return node, true
}

// reconnect pings Redis every RedisRetryInterval while the breaker is
// open, apart from the flusher so that a slow ping never delays a flush.
func (m *Manager) reconnect() {
	defer m.wg.Done()
	tick := time.NewTicker(RedisRetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		if !m.redis.up.Load() && m.redis.ping() {
			m.writeBack(time.Now())
		}
	}
}

// redisWrite writes cs's Redis part and adopts the records that won.
func (m *Manager) redisWrite(t *Table, cs []change, now time.Time) error {
	var rcs []change
	for _, c := range cs {
		if c.redis {
			rcs = append(rcs, c)
		}
	}
	if len(rcs) == 0 {
		return nil
	}
	winners, err := m.redis.write(t.name, t.set.Load().TTL, rcs, now)
	if err != nil {
		m.redis.fail(err, true)
		for _, c := range rcs {
			if !c.del {
				t.remark(c)
			}
		}
		return err
	}
	for i, v := range winners {
		if node, seen, ok := parseValue(v); ok && node != rcs[i].node {
			t.adopt(rcs[i].k, node, seen, false, false)
		}
	}
	return nil
}

// writeBack writes the records changed while Redis was away.
func (m *Manager) writeBack(now time.Time) {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	for _, t := range m.snapshot() {
		cs := t.pendingRedis(nil)
		for len(cs) > 0 {
			n := min(len(cs), FlushBatch)
			if m.redisWrite(t, cs[:n], now) != nil {
				for _, c := range cs[n:] {
					t.remark(c)
				}
				return
			}
			m.writtenBack.Add(uint64(n))
			cs = cs[n:]
		}
	}
}

// onPush applies another balancer's change (a rewrite or a Forget).
func (m *Manager) onPush(table string, k key, node string, seen int64) {
	t := m.table(table)
	switch {
	case t == nil:
	case node == "":
		t.drop(k)
	default:
		t.adopt(k, node, seen, false, true)
	}
}

// Shared reports whether records are shared through Redis: a local miss
// may then be answered by LookupShared, which waits up to
// RedisLookupTimeout.
func (m *Manager) Shared() bool { return m.redis != nil }
