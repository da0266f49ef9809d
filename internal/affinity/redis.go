package affinity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis timing. The lookup timeout bounds what a local miss can cost a
// connection; RedisBreakerFails consecutive failed lookups (or one failed
// background write) open the breaker, after which lookups skip Redis
// entirely until a ping every RedisRetryInterval succeeds.
const (
	RedisLookupTimeout  = 10 * time.Millisecond
	RedisWriteTimeout   = time.Second
	RedisRetryInterval  = time.Second
	RedisBreakerFails   = 3
	redisChannel        = "pb:aff"
	redisKeyPrefix      = "pb:aff:"
	sep                 = "\x1f"
	redisDialTimeout    = 250 * time.Millisecond
	redisPingTimeout    = 250 * time.Millisecond
	redisSubscribeRetry = RedisRetryInterval
)

// writeScript stores one record: KEYS[1] the record's key; ARGV node, seen,
// expiry (ms), nx ("1": only if absent), moved ("1": publish), channel,
// message. It returns nil when it wrote, else the record that won: the
// existing one for nx (first writer wins), or an existing one seen more
// recently. A write that changes the stored node is published, so twins
// holding the old node in their local tables replace it.
var writeScript = `
local cur = redis.call('GET', KEYS[1])
local pub = ARGV[5] == '1'
if cur then
  if ARGV[4] == '1' then return cur end
  local n, s = string.match(cur, '^(.*)\031(%d+)$')
  if s and tonumber(s) > tonumber(ARGV[2]) then return cur end
  if n ~= ARGV[1] then pub = true end
end
redis.call('SET', KEYS[1], ARGV[1] .. '\031' .. ARGV[2], 'PX', ARGV[3])
if pub then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return false`

// deleteScript deletes KEYS[1] and publishes ARGV[2] on ARGV[1].
var deleteScript = `
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`

// redisStore shares records between twin balancers. The zero breaker
// state is down; open brings it up when the first ping succeeds.
type redisStore struct {
	c      *redis.Client
	log    *slog.Logger
	origin string // this process, to skip its own pushes
	up     atomic.Bool
	fails  atomic.Int32
	errs   *atomic.Uint64
	downs  atomic.Uint64
	ps     *redis.PubSub
	done   chan struct{}
	// onPush applies another balancer's change; node "" is a delete.
	onPush func(table string, k key, node string, seen int64)
}

func openRedis(url string, log *slog.Logger, errs *atomic.Uint64) (*redisStore, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("store redis: %w", err) // not the URL: it may hold a password
	}
	opt.MaxRetries = -1 // a retry would double the lookup bound
	opt.ContextTimeoutEnabled = true
	opt.DialTimeout = redisDialTimeout
	opt.ReadTimeout, opt.WriteTimeout = RedisWriteTimeout, RedisWriteTimeout
	opt.DisableIdentity = true
	var id [8]byte
	rand.Read(id[:])
	r := &redisStore{c: redis.NewClient(opt), log: log, origin: hex.EncodeToString(id[:]),
		errs: errs, done: make(chan struct{})}
	if !r.ping() {
		r.downs.Add(1)
		r.log.Warn("affinity: redis store unreachable, continuing on the local table", "redis", opt.Addr)
	}
	return r, nil
}

// ping brings the breaker up if Redis answers.
func (r *redisStore) ping() bool {
	ctx, cancel := context.WithTimeout(context.Background(), redisPingTimeout)
	defer cancel()
	if err := r.c.Ping(ctx).Err(); err != nil {
		return false
	}
	r.fails.Store(0)
	if r.up.CompareAndSwap(false, true) && r.downs.Load() > 0 {
		r.log.Info("affinity: redis store reachable again")
	}
	return true
}

// fail counts a failed operation; hard opens the breaker at once.
func (r *redisStore) fail(err error, hard bool) {
	r.errs.Add(1)
	if r.fails.Add(1) < RedisBreakerFails && !hard {
		return
	}
	if r.up.CompareAndSwap(true, false) {
		r.downs.Add(1)
		r.log.Warn("affinity: redis store failed, continuing on the local table until it returns", "err", err)
	}
}

func redisKey(table string, k key) string {
	return redisKeyPrefix + table + ":" + k.addr().String()
}

// get fetches the record of k, reporting found == false when there is none.
func (r *redisStore) get(ctx context.Context, table string, k key) (node string, seen int64, found bool, err error) {
	v, err := r.c.Get(ctx, redisKey(table, k)).Result()
	if errors.Is(err, redis.Nil) {
		r.fails.Store(0)
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	r.fails.Store(0)
	node, seen, ok := parseValue(v)
	return node, seen, ok, nil
}

func parseValue(v string) (string, int64, bool) {
	i := strings.LastIndex(v, sep)
	if i < 0 {
		return "", 0, false
	}
	seen, err := strconv.ParseInt(v[i+1:], 10, 64)
	return v[:i], seen, err == nil
}

// write sends one table's Redis changes in one pipeline. It returns the
// records that won against ours, indexed like cs, and whether the whole
// batch failed (then nothing is known to be written).
func (r *redisStore) write(table string, ttl time.Duration, cs []change, now time.Time) (winners map[int]string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), RedisWriteTimeout)
	defer cancel()
	pipe := r.c.Pipeline()
	cmds := make([]*redis.Cmd, len(cs))
	for i, c := range cs {
		a := c.k.addr().String()
		rk := redisKeyPrefix + table + ":" + a
		if c.del {
			msg := strings.Join([]string{r.origin, table, a, "", "0"}, sep)
			cmds[i] = pipe.Eval(ctx, deleteScript, []string{rk}, redisChannel, msg)
			continue
		}
		left := time.Unix(c.seen, 0).Add(ttl).Sub(now)
		if left <= 0 {
			continue
		}
		seen := strconv.FormatInt(c.seen, 10)
		msg := strings.Join([]string{r.origin, table, a, c.node, seen}, sep)
		cmds[i] = pipe.Eval(ctx, writeScript, []string{rk}, c.node, seen, left.Milliseconds(),
			b01(c.nx), b01(c.moved), redisChannel, msg)
	}
	pipe.Exec(ctx) // errors are the commands' own, checked below
	for _, cmd := range cmds {
		if cmd != nil && cmd.Err() != nil && !errors.Is(cmd.Err(), redis.Nil) {
			return nil, cmd.Err() // the batch is retried whole: the rules make that harmless
		}
	}
	for i, cmd := range cmds {
		if cmd == nil || cs[i].del {
			continue
		}
		if v, err := cmd.Text(); err == nil {
			if winners == nil {
				winners = map[int]string{}
			}
			winners[i] = v
		}
	}
	return winners, nil
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// subscribe starts the goroutine applying other balancers' pushed changes.
// go-redis re-subscribes by itself after Redis comes back.
func (r *redisStore) subscribe() {
	r.ps = r.c.Subscribe(context.Background(), redisChannel)
	ch := r.ps.Channel(redis.WithChannelHealthCheckInterval(redisSubscribeRetry))
	go func() {
		defer close(r.done)
		for m := range ch {
			f := strings.Split(m.Payload, sep)
			if len(f) != 5 || f[0] == r.origin {
				continue
			}
			a, err := parseAddr(f[2])
			if err != nil {
				continue
			}
			seen, _ := strconv.ParseInt(f[4], 10, 64)
			r.onPush(f[1], a, f[3], seen)
		}
	}()
}

func parseAddr(s string) (key, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return key{}, err
	}
	b := a.As16()
	k, _ := keyFromBytes(b[:])
	return k, nil
}

func (r *redisStore) close() error {
	var err error
	if r.ps != nil {
		err = r.ps.Close()
		<-r.done
	}
	return errors.Join(err, r.c.Close())
}
