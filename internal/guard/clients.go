package guard

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/protobalance/protobalance/ebtree"
)

// The rate window: windowSlots slots of slotNS each (see the package doc).
const (
	windowSlots = 10
	slotNS      = int64(100 * time.Millisecond)
)

// entry is one tracked client. It is linked in its shard's LRU tree, keyed
// by seen, exactly while it has no open connection.
type entry struct {
	lru    ebtree.Node[int64, *entry]
	key    netip.Addr
	seen   int64 // last Admit, ns
	banEnd int64 // ns; 0 = not banned
	cur    int64 // index of the newest window slot
	active int32
	sum    uint32 // sum of slots
	slots  [windowSlots]uint32
}

// advance drops the window slots that fall out of the window ending at t.
// A t earlier than the newest slot counts into the newest slot.
func (e *entry) advance(t int64) {
	idx := floorDiv(t, slotNS)
	if idx <= e.cur {
		return
	}
	if idx-e.cur >= windowSlots {
		e.slots, e.sum = [windowSlots]uint32{}, 0
	} else {
		for i := e.cur + 1; i <= idx; i++ {
			s := &e.slots[i%windowSlots]
			e.sum -= *s
			*s = 0
		}
	}
	e.cur = idx
}

// count adds one connection to the newest slot (after advance).
func (e *entry) count() {
	e.slots[e.cur%windowSlots]++
	e.sum++
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// shard is one lock's worth of clients.
type shard struct {
	mu    sync.Mutex
	m     map[netip.Addr]*entry
	lru   ebtree.Tree[int64, *entry] // idle clients by last Admit
	cap   int                        // clients kept before evicting
	moved *Guard                     // non-nil: CarryOver moved this shard there
	_     [40]byte                   // keep neighbouring shards' locks apart
}

func (g *Guard) initShards(o Options) {
	maxClients := o.MaxClients
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	want := o.Shards
	if want <= 0 {
		want = defaultShards
	}
	n := 1
	for n < want {
		n <<= 1
	}
	for n > 1 && n > maxClients {
		n >>= 1
	}
	g.shards = make([]shard, n)
	g.smask = uint64(n - 1)
	for i := range g.shards {
		g.shards[i].m = make(map[netip.Addr]*entry)
		g.shards[i].cap = maxClients / n
	}
}

// shardOf picks a key's shard with a keyed mix of its 128 bits, so that a
// flood cannot aim at one shard to evict the clients there.
func (g *Guard) shardOf(k netip.Addr) *shard {
	b := k.As16()
	h := (binary.BigEndian.Uint64(b[:8]) ^ g.seed) * 0x9e3779b97f4a7c15
	h = (h ^ h>>29 ^ binary.BigEndian.Uint64(b[8:])) * 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return &g.shards[h&g.smask]
}

// get returns k's entry, adding it (and evicting if the shard is full) when
// absent. s.mu must be held.
func (g *Guard) get(s *shard, k netip.Addr, t int64) *entry {
	if e := s.m[k]; e != nil {
		return e
	}
	// Evict down to below the cap (more than one only after the shard grew
	// while all its clients held connections), reusing the first victim.
	var e *entry
	for len(s.m) >= s.cap {
		v := s.lru.PopFirst()
		if v == nil {
			break
		}
		delete(s.m, v.Value.key)
		g.ctr.evicted.Add(1)
		if e == nil {
			e = v.Value
			*e = entry{}
		}
	}
	if e == nil {
		e = new(entry)
	}
	e.key, e.seen, e.cur = k, t, floorDiv(t, slotNS)
	e.lru.Key, e.lru.Value = t, e
	s.lru.Insert(&e.lru)
	s.m[k] = e
	return e
}

// touch moves an idle entry to the young end of the LRU order.
func (s *shard) touch(e *entry) {
	if e.active == 0 {
		s.lru.Delete(&e.lru)
		e.lru.Key = e.seen
		s.lru.Insert(&e.lru)
	}
}

// admitClient applies ban, rate and concurrency to key k at t (ns).
func (g *Guard) admitClient(k netip.Addr, t int64) Verdict {
	s := g.shardOf(k)
	s.mu.Lock()
	if next := s.moved; next != nil {
		s.mu.Unlock()
		return next.admitClient(k, t)
	}
	e := g.get(s, k, t)
	e.seen = t
	if e.banEnd != 0 {
		if t < e.banEnd {
			s.touch(e)
			s.mu.Unlock()
			g.ctr.ban.Add(1)
			return Verdict{Reason: ReasonBan}
		}
		e.banEnd = 0
	}
	if g.rate > 0 {
		e.advance(t)
		if e.sum >= g.rate {
			banEnd := int64(0)
			if g.banTime > 0 {
				banEnd = t + g.banTime
				e.banEnd = banEnd
				e.slots, e.sum = [windowSlots]uint32{}, 0
			}
			s.touch(e)
			s.mu.Unlock()
			g.ctr.rate.Add(1)
			if banEnd != 0 {
				g.banned(k, banEnd)
			}
			return Verdict{Reason: ReasonRate}
		}
		e.count()
	}
	if g.maxConns > 0 && e.active >= g.maxConns {
		s.touch(e)
		s.mu.Unlock()
		g.ctr.conc.Add(1)
		return Verdict{Reason: ReasonConcurrency}
	}
	if e.active == 0 {
		s.lru.Delete(&e.lru)
	}
	e.active++
	s.mu.Unlock()
	return Verdict{OK: true}
}

// Release ends one connection Admit let through for client. It must be
// called exactly once per OK verdict; extra calls are ignored once the
// client's count reaches zero.
func (g *Guard) Release(client netip.Addr) {
	if g == nil || !g.track {
		return
	}
	client = client.Unmap()
	if !client.IsValid() {
		return
	}
	g.release(g.key(client))
}

func (g *Guard) release(k netip.Addr) {
	s := g.shardOf(k)
	s.mu.Lock()
	if next := s.moved; next != nil {
		s.mu.Unlock()
		next.release(k)
		return
	}
	if e := s.m[k]; e != nil && e.active > 0 {
		e.active--
		if e.active == 0 {
			e.lru.Key = e.seen
			s.lru.Insert(&e.lru)
		}
	}
	s.mu.Unlock()
}

// Ban is one running ban.
type Ban struct {
	Client netip.Prefix // the masked client key, e.g. 198.51.100.7/32 or 2001:db8:1:2::/64
	Until  time.Time
	Reason Reason // ReasonRate
}

// Bans lists the bans running at now, ordered by end then client.
func (g *Guard) Bans(now time.Time) []Ban {
	if g == nil {
		return nil
	}
	t := now.UnixNano()
	var out []Ban
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			if e.banEnd > t {
				out = append(out, Ban{Client: g.keyPrefix(e.key), Until: time.Unix(0, e.banEnd), Reason: ReasonRate})
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Ban) int {
		return cmp.Or(a.Until.Compare(b.Until), a.Client.Addr().Compare(b.Client.Addr()))
	})
	return out
}

// Lift ends the ban of client's key (any address inside the masked client
// prefix names it) and reports whether a ban was running.
func (g *Guard) Lift(client netip.Addr) bool { return g.liftAt(client, time.Now()) }

func (g *Guard) liftAt(client netip.Addr, now time.Time) bool {
	client = client.Unmap()
	if g == nil || !g.track || !client.IsValid() {
		return false
	}
	k := g.key(client)
	for g != nil {
		s := g.shardOf(k)
		s.mu.Lock()
		if next := s.moved; next != nil {
			s.mu.Unlock()
			g = next
			continue
		}
		e := s.m[k]
		running := e != nil && e.banEnd > now.UnixNano()
		if e != nil {
			e.banEnd = 0
		}
		s.mu.Unlock()
		return running
	}
	return false
}

// CarryOver hands old's run-time state to g, the guard built from a reloaded
// config for the same listener. It must be called once, before g is
// published to any accept loop; old may still be in use meanwhile.
//
// The refusal counters become shared with old. When both guards track
// clients with the same masks, every client entry (window, ban, open
// connections) moves to g and old forwards later Admit, Release and Lift
// calls to g, so connections opened before the reload are released against
// the counts that hold them. Otherwise only running bans move, re-keyed
// under g's masks, and old keeps its own open-connection counts (new
// connections are then limited without counting the old ones). A g that
// tracks no client (no rate or concurrency limit) drops the bans.
func (g *Guard) CarryOver(old *Guard) {
	if g == nil || old == nil || g == old {
		return
	}
	g.ctr = old.ctr
	if !g.track || !old.track {
		return
	}
	same := g.mask4 == old.mask4 && g.mask6 == old.mask6
	for i := range old.shards {
		s := &old.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if same {
				if e.active == 0 {
					s.lru.Delete(&e.lru)
				}
				g.adopt(e)
			} else if e.banEnd != 0 {
				g.adoptBan(g.key(k), e.banEnd, e.seen)
			}
		}
		if same {
			clear(s.m)
			s.moved = g
		}
		s.mu.Unlock()
	}
}

// adopt takes over an unlinked entry from a previous guard.
func (g *Guard) adopt(e *entry) {
	s := g.shardOf(e.key)
	s.mu.Lock()
	if s.m[e.key] == nil {
		if e.active == 0 {
			e.lru.Key = e.seen
			s.lru.Insert(&e.lru)
		}
		s.m[e.key] = e
		for len(s.m) > s.cap {
			v := s.lru.PopFirst()
			if v == nil {
				break
			}
			delete(s.m, v.Value.key)
		}
	}
	s.mu.Unlock()
}

// adoptBan records a ban ending at end for key k, last seen at seen.
func (g *Guard) adoptBan(k netip.Addr, end, seen int64) {
	s := g.shardOf(k)
	s.mu.Lock()
	e := g.get(s, k, seen)
	e.banEnd = max(e.banEnd, end)
	s.mu.Unlock()
}
