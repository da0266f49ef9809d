// Package guard is a listener's abuse guard (F13): an allow/deny
// longest-prefix table and per-client limits on connection rate and
// concurrency, with bans.
//
// The accept path calls Admit for every accepted connection and, when the
// verdict is OK, Release exactly once when that connection ends. Nothing
// runs in the background: bans and rate windows expire lazily, on the next
// Admit of the client they concern.
//
// Concurrency contract: every method is safe for concurrent use. The
// allow/deny table is read-only after New and read without a lock. Client
// state lives in shards, each behind its own mutex, chosen by a keyed hash of
// the masked client address; Admit and Release lock exactly one shard for a
// few map and tree operations and never block on I/O (a ban is logged after
// the lock is released). Guards of different listeners share nothing but
// the counters a reload carries over. Bans and Counters lock the shards one
// at a time. A nil *Guard is valid: it admits everything.
//
// Semantics (see Admit for the order of checks):
//
//   - allow and deny prefixes (inline, and allow_file/deny_file) form one
//     longest-prefix table: the longest prefix containing the client decides,
//     a prefix present in both lists denies, and an address no prefix
//     contains is admitted exactly when the allow list is empty.
//     IPv4-mapped IPv6 clients (and list entries) are unmapped first.
//   - Per-client state keys on the client address masked to client_mask_v4
//     or client_mask_v6 bits.
//   - Rate: a sliding window of ten 100 ms slots. A new connection is the
//     offending one when the client already made max_conn_rate counted
//     connections in the current slot and the nine before it, that is since
//     a point between 900 ms and 1 s ago. So a ban always means more than
//     max_conn_rate connections within less than one second, and more than
//     max_conn_rate connections within 900 ms always ban. The offending
//     connection is refused (ReasonRate) and starts a ban of ban_time; its
//     connections during the ban are refused (ReasonBan) and do not extend it.
//     Every connection that is not refused by the list or a ban counts,
//     including ones refused for concurrency. With ban_time = 0 the
//     offending connection is refused and not counted, so the guard is a
//     plain limiter of max_conn_rate per window.
//   - Concurrency: a connection that would give the client more than
//     max_client_conns open connections is refused (ReasonConcurrency), with
//     no ban.
//   - Memory: at most MaxClients (default 100,000) clients are tracked,
//     split evenly over the shards; a new client in a full shard evicts that
//     shard's least recently seen client (by its last Admit) that has no open
//     connection. Clients with open connections are never evicted, so their
//     counts stay exact; if every client of a full shard holds a connection,
//     the shard grows past its share and shrinks back as soon as they go
//     idle and new clients arrive. The table never holds more than
//     MaxClients plus (number of clients holding open connections) entries;
//     open connections are capped by max_conns and the descriptor limit.
//     An evicted client that was banned loses its ban; an attacker that
//     keeps connecting stays recently seen.
//   - Time is the caller's: Admit takes now, and only the wall-clock
//     reading is used, so a clock step moves ban ends and windows with it.
package guard

import (
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

// DefaultMaxClients bounds the clients one Guard tracks when Options leaves
// it 0: about 20 MB of client state at ~200 bytes per client.
const DefaultMaxClients = 100_000

// defaultShards spreads clients over enough locks that two or more accept
// loops rarely contend; 32 shards of a 100,000 bound hold 3,125 each.
const defaultShards = 32

// Reason says why a connection was refused.
type Reason uint8

const (
	ReasonNone        Reason = iota // admitted
	ReasonDeny                      // the allow/deny table refused the address
	ReasonRate                      // this connection exceeded max_conn_rate and started a ban
	ReasonConcurrency               // the client already holds max_client_conns connections
	ReasonBan                       // the client is banned
)

// String returns the reason as used in logs and metrics labels.
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonDeny:
		return "deny"
	case ReasonRate:
		return "rate"
	case ReasonConcurrency:
		return "concurrency"
	case ReasonBan:
		return "ban"
	}
	return "unknown"
}

// Verdict is Admit's answer. The zero Verdict refuses with ReasonNone and is
// never returned.
type Verdict struct {
	OK     bool
	Reason Reason // ReasonNone when OK
}

// Counters are cumulative refusal counts by reason, plus the current number
// of tracked clients. They survive reloads through CarryOver.
type Counters struct {
	Deny, Rate, Concurrency, Ban uint64
	Evicted                      uint64 // clients dropped to keep the bound
	Tracked                      int    // clients tracked now
}

type counters struct {
	deny, rate, conc, ban, evicted atomic.Uint64
}

// Options tune a Guard beyond the listener's config.
type Options struct {
	// MaxClients bounds tracked clients; 0 = DefaultMaxClients.
	MaxClients int
	// Shards is the number of client shards, rounded up to a power of two
	// and lowered until each shard holds at least one client; 0 = 32.
	Shards int
}

// Guard is one listener's abuse guard. Build it with New; see the package
// doc for the semantics and the concurrency contract.
type Guard struct {
	name     string
	log      *slog.Logger
	list     *table // nil = no allow/deny rule
	track    bool   // a per-client limit is on
	rate     uint32 // max_conn_rate; 0 = off
	maxConns int32  // max_client_conns; 0 = off
	banTime  int64  // ns
	mask4    int
	mask6    int
	seed     uint64
	shards   []shard
	smask    uint64
	ctr      *counters
}

// New builds the guard of one listener, reading its allow_file and
// deny_file. It returns a nil *Guard (which admits everything) when the
// listener has no list and no per-client limit. A malformed list line is an
// error: a config.Errors whose entries name FILE:LINE.
func New(cfg *config.Listener, log *slog.Logger) (*Guard, error) {
	return NewWith(cfg, log, Options{})
}

// NewWith is New with Options.
func NewWith(cfg *config.Listener, log *slog.Logger, o Options) (*Guard, error) {
	if cfg == nil {
		return nil, nil
	}
	list, err := buildTable(cfg)
	if err != nil {
		return nil, err
	}
	track := cfg.MaxConnRate > 0 || cfg.MaxClientConns > 0
	if list == nil && !track {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{
		name:     cfg.Name,
		log:      log,
		list:     list,
		track:    track,
		rate:     uint32(min(cfg.MaxConnRate, math.MaxUint32)),
		maxConns: int32(min(cfg.MaxClientConns, math.MaxInt32)),
		banTime:  int64(cfg.BanTime),
		mask4:    cfg.ClientMaskV4,
		mask6:    cfg.ClientMaskV6,
		seed:     rand.Uint64(),
		ctr:      new(counters),
	}
	if track {
		g.initShards(o)
	}
	return g, nil
}

// Admit decides whether a connection from client may proceed, at time now.
// Checks run in this order: the allow/deny table; a running ban; the rate
// (which may start a ban); the concurrency limit. On an OK verdict the
// caller must call Release(client) once when the connection ends, on this
// Guard (a Guard replaced by a reload forwards it; see CarryOver). Admit of
// a known client allocates nothing. An invalid client address (not an IP
// connection) is checked against the table as matching no prefix and is not
// tracked.
func (g *Guard) Admit(client netip.Addr, now time.Time) Verdict {
	if g == nil {
		return Verdict{OK: true}
	}
	client = client.Unmap()
	if g.list != nil && !g.list.permits(client) {
		g.ctr.deny.Add(1)
		return Verdict{Reason: ReasonDeny}
	}
	if !g.track || !client.IsValid() {
		return Verdict{OK: true}
	}
	return g.admitClient(g.key(client), now.UnixNano())
}

// Permits reports whether the allow/deny table alone admits client.
func (g *Guard) Permits(client netip.Addr) bool {
	return g == nil || g.list == nil || g.list.permits(client.Unmap())
}

// Counters returns the refusal counts and the number of tracked clients.
func (g *Guard) Counters() Counters {
	if g == nil {
		return Counters{}
	}
	c := Counters{
		Deny:        g.ctr.deny.Load(),
		Rate:        g.ctr.rate.Load(),
		Concurrency: g.ctr.conc.Load(),
		Ban:         g.ctr.ban.Load(),
		Evicted:     g.ctr.evicted.Load(),
	}
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		c.Tracked += len(s.m)
		s.mu.Unlock()
	}
	return c
}

// key masks an unmapped, valid client address to its per-client key.
func (g *Guard) key(a netip.Addr) netip.Addr {
	bits := g.mask6
	if a.Is4() {
		bits = g.mask4
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a.WithZone("")
	}
	return p.Addr()
}

// keyPrefix is the prefix a key stands for, as shown in Bans.
func (g *Guard) keyPrefix(k netip.Addr) netip.Prefix {
	if k.Is4() {
		return netip.PrefixFrom(k, g.mask4)
	}
	return netip.PrefixFrom(k, g.mask6)
}

// banned logs the start of a ban, once per ban, outside any lock.
func (g *Guard) banned(k netip.Addr, until int64) {
	g.log.Warn("guard: client banned", "listener", g.name, "client", g.keyPrefix(k).String(),
		"until", time.Unix(0, until).UTC(), "reason", ReasonRate.String(), "max_conn_rate", g.rate)
}
