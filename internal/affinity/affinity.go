// Package affinity is the client→node table of Proto Balance (DESIGN F5, F9,
// F11) and its stores.
//
// A Table maps a client address, masked to a prefix (Options.MaskV4 and
// MaskV6; an IPv4-mapped IPv6 address counts as IPv4), to the name of the
// node that last served it and when, in whole seconds. It is bounded by
// Options.Max (the least recently seen record is evicted first) and
// Options.TTL (an older record is a miss and is removed by Expire). Clusters
// that name the same affinity group share one Table; each cluster looks at it
// through a View, which treats a record naming a node the cluster does not
// have as a miss and never overwrites it.
//
// Concurrency: every method of Table, View and Manager is safe for
// concurrent use. The table is split into 64 shards, each a map guarded by
// its own RWMutex plus an ebtree of its records ordered by last seen. A
// lookup takes one shard's read lock for a map probe and allocates nothing;
// a Record of a client already recorded with the same node within the same
// second takes only the read lock as well, so the per-connection cost of
// keeping a record fresh is one probe. Other writes take one shard's write
// lock; eviction finds the globally oldest record through a per-shard atomic
// "oldest" stamp and locks only that shard. No lock is ever held across I/O.
//
// Persistence (Manager): records are written to an embedded bbolt file in
// the background, in one transaction per FlushInterval (100 ms) or earlier
// when FlushBatch changes are pending; a crash loses at most the records
// learnt or refreshed in the last interval. With Redis configured the same
// batches are written to Redis, and a local miss asks Redis once, within
// RedisLookupTimeout, before the algorithm decides (Manager.LookupShared).
// See manager.go and redis.go for the conflict rule and propagation bound.
package affinity

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// Defaults for the zero fields of Options, as in the config file.
const (
	DefaultMaskV4 = 32
	DefaultMaskV6 = 128
	DefaultTTL    = 720 * time.Hour
	DefaultMax    = 1000000
)

// Options are one table's settings. All clusters of one affinity group must
// use equal Options: Manager.Table refuses a second, different set for the
// same table name (the config loader should report it as a config error).
type Options struct {
	// MaskV4 and MaskV6 are the prefix lengths clients are grouped by
	// (0–32 and 0–128). They are taken as given: 0 puts every client of
	// the family in one record (start from DefaultOptions).
	MaskV4, MaskV6 int
	// TTL is how long a record lives after the client was last seen;
	// 0 means DefaultTTL. It is kept in whole seconds (at least one).
	TTL time.Duration
	// Max bounds the number of records; 0 means DefaultMax.
	Max int
}

// DefaultOptions are the config file's defaults: /32, /128, 30 days, 1,000,000.
func DefaultOptions() Options {
	return Options{MaskV4: DefaultMaskV4, MaskV6: DefaultMaskV6, TTL: DefaultTTL, Max: DefaultMax}
}

// withDefaults fills zero TTL and Max and checks ranges.
func (o Options) withDefaults() (Options, error) {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.Max == 0 {
		o.Max = DefaultMax
	}
	switch {
	case o.MaskV4 < 0 || o.MaskV4 > 32:
		return o, fmt.Errorf("affinity_mask_v4 %d: must be 0..32", o.MaskV4)
	case o.MaskV6 < 0 || o.MaskV6 > 128:
		return o, fmt.Errorf("affinity_mask_v6 %d: must be 0..128", o.MaskV6)
	case o.TTL < 0:
		return o, fmt.Errorf("affinity_ttl %v: must be > 0", o.TTL)
	case o.Max < 0:
		return o, fmt.Errorf("affinity_max %d: must be > 0", o.Max)
	}
	if o.TTL < time.Second {
		o.TTL = time.Second
	}
	return o, nil
}

// key is a masked client address as 128 bits; IPv4 is kept in its
// IPv4-mapped form (::ffff:a.b.c.d), so v4 and v6 keys never collide. A
// fixed-size, pointer-free key keeps the maps cheap for the garbage
// collector (netip.Addr holds a pointer).
type key struct{ hi, lo uint64 }

// keyOf masks a, reporting false for an invalid address.
func (o *Options) keyOf(a netip.Addr) (key, bool) {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) & (^uint32(0) << (32 - o.MaskV4))
		return key{0, 0xffff<<32 | uint64(v)}, true
	case a.Is6():
		b := a.As16()
		hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
		if o.MaskV6 <= 64 {
			hi &= ^uint64(0) << (64 - o.MaskV6)
			lo = 0
		} else {
			lo &= ^uint64(0) << (128 - o.MaskV6)
		}
		return key{hi, lo}, true
	}
	return key{}, false
}

// bytes is the 16-byte big-endian form stored in bbolt.
func (k key) bytes() [16]byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return b
}

func keyFromBytes(b []byte) (key, bool) {
	if len(b) != 16 {
		return key{}, false
	}
	return key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}, true
}

// addr is the masked address the key stands for (IPv4 unmapped).
func (k key) addr() netip.Addr {
	return netip.AddrFrom16(k.bytes()).Unmap()
}

// Stats are a table's counters since it was created. Records is the current
// count; the others only grow.
type Stats struct {
	Records     int
	Hits        uint64 // Lookup found a live record
	Misses      uint64 // Lookup found none, or an expired one
	Evictions   uint64 // removed because the table was full (least recently seen)
	Expirations uint64 // removed because older than the TTL
	SharedHits  uint64 // a local miss answered by Redis
	Conflicts   uint64 // a local record replaced by another balancer's (Redis)
}

// StoreStats are the Manager's store counters.
type StoreStats struct {
	Flushes     uint64 // bbolt write transactions
	Written     uint64 // records put or deleted in bbolt
	Errors      uint64 // failed store operations (bbolt or Redis)
	RedisUp     bool   // Redis configured and currently reachable
	RedisDowns  uint64 // times Redis was found unreachable (each logged once)
	WrittenBack uint64 // records written to Redis after it came back
}
