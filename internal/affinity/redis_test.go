package affinity

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const redisHost = "127.0.8.1"

// redisServer is a real redis-server on 127.0.8.1, killed at cleanup.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
	url  string
}

// startRedis starts redis-server on a free port below 32768. Without the
// binary it skips loudly, except under CI=true, where that is a failure.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found: CI must install it (apt-get install redis-server)")
		}
		t.Skip("SKIPPING shared-store test: redis-server not installed (apt-get install redis-server)")
	}
	r := &redisServer{t: t, bin: bin, dir: t.TempDir()}
	for p := 20000 + rand.IntN(10000); ; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort(redisHost, strconv.Itoa(p)))
		if err == nil {
			l.Close()
			r.port = p
			break
		}
		if p > 32000 {
			t.Fatal("no free port")
		}
	}
	r.url = fmt.Sprintf("redis://%s:%d/0", redisHost, r.port)
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", redisHost,
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(redisHost, strconv.Itoa(r.port)), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server did not listen: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *redisServer) kill() {
	if r.cmd != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *redisServer) get(key string) string {
	r.t.Helper()
	opt, _ := redis.ParseURL(r.url)
	c := redis.NewClient(opt)
	defer c.Close()
	v, _ := c.Get(context.Background(), key).Result()
	return v
}

// within polls cond every 2 ms and returns how long it took to hold,
// failing after limit.
func within(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func TestRedisFirstWriterWins(t *testing.T) {
	rs := startRedis(t)
	a, b := openT(t, Config{Redis: rs.url}), openT(t, Config{Redis: rs.url})
	defer a.Close()
	defer b.Close()
	o := Options{MaskV4: 24, MaskV6: 64, TTL: time.Hour}
	ta, tb := tableT(t, a, "web", o), tableT(t, b, "web", o)
	now := time.Now()
	c := ip("10.0.0.1")
	ta.Record(c, "n1", now)
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	tb.Record(ip("10.0.0.2"), "n2", now) // same /24, new to b: loses
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if v := rs.get("pb:aff:web:10.0.0.0"); !strings.HasPrefix(v, "n1\x1f") {
		t.Fatalf("redis holds %q, want the first writer's n1", v)
	}
	if node, _ := tb.Lookup(c, now); node != "n1" || tb.Stats().Conflicts != 1 {
		t.Fatalf("loser's local record %q, conflicts %d; want n1, 1", node, tb.Stats().Conflicts)
	}
	// A rewrite (stand-in) overwrites, and reaches the twin's local record.
	tb.Record(c, "n3", now.Add(time.Second))
	b.Flush()
	if v := rs.get("pb:aff:web:10.0.0.0"); !strings.HasPrefix(v, "n3\x1f") {
		t.Fatalf("redis holds %q after a rewrite, want n3", v)
	}
	within(t, 500*time.Millisecond, "pushed rewrite", func() bool {
		node, _ := ta.Lookup(c, now)
		return node == "n3"
	})
	// Forget is shared too.
	ta.Forget(c)
	a.Flush()
	within(t, 500*time.Millisecond, "pushed forget", func() bool { return tb.Len() == 0 })
	if v := rs.get("pb:aff:web:10.0.0.0"); v != "" {
		t.Fatalf("redis still holds %q", v)
	}
}

// TestRedisPropagation measures the DESIGN F5 bound with the real flusher:
// no manual Flush.
func TestRedisPropagation(t *testing.T) {
	rs := startRedis(t)
	a, b := openT(t, Config{Redis: rs.url}), openT(t, Config{Redis: rs.url})
	defer a.Close()
	defer b.Close()
	ta, tb := tableT(t, a, "web", DefaultOptions()), tableT(t, b, "web", DefaultOptions())
	vb := tb.View(nil)
	now := time.Now()
	c := ip("192.0.2.10")
	ta.Record(c, "n1", now)
	took := within(t, 500*time.Millisecond, "new record via miss lookup", func() bool {
		node, ok := b.LookupShared(context.Background(), vb, c, now)
		return ok && node == "n1"
	})
	t.Logf("new record usable on the twin after %v", took)
	ta.Record(c, "n2", now.Add(time.Second))
	took = within(t, 500*time.Millisecond, "rewrite pushed to a stale local record", func() bool {
		node, _ := tb.Lookup(c, now)
		return node == "n2"
	})
	t.Logf("rewrite reached the twin's local record after %v", took)
	if s := tb.Stats(); s.SharedHits != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRedisOutage(t *testing.T) {
	rs := startRedis(t)
	dir := t.TempDir()
	a := openT(t, Config{Path: dir + "/a.db", Redis: rs.url})
	b := openT(t, Config{Path: dir + "/b.db", Redis: rs.url})
	defer a.Close()
	defer b.Close()
	ta, tb := tableT(t, a, "web", DefaultOptions()), tableT(t, b, "web", DefaultOptions())
	va := ta.View(nil)
	now := time.Now()
	known := ip("10.0.0.1")
	ta.Record(known, "n1", now)
	a.Flush()

	rs.kill()
	var worst time.Duration
	start := time.Now()
	for i := range 1000 {
		t0 := time.Now()
		if _, ok := a.LookupShared(context.Background(), va, ip(fmt.Sprintf("10.9.%d.%d", i/256, i%256)), now); ok {
			t.Fatal("hit for an unknown client")
		}
		worst = max(worst, time.Since(t0))
		if node, ok := a.LookupShared(context.Background(), va, known, now); !ok || node != "n1" {
			t.Fatal("local record lost while redis is down")
		}
	}
	total := time.Since(start)
	t.Logf("2,000 lookups with redis down: %v in all, worst %v", total, worst)
	if worst > 100*time.Millisecond || total > time.Second {
		t.Fatalf("lookups blocked: worst %v, total %v", worst, total)
	}
	learnt := ip("10.0.5.5")
	ta.Record(learnt, "n2", now) // learnt while redis is away
	within(t, time.Second, "bbolt flush while redis is down", func() bool { return a.Stats().Flushes >= 2 })
	s := a.Stats()
	if s.RedisUp || s.RedisDowns != 1 || s.Errors == 0 || s.Errors > RedisBreakerFails+1 || s.Flushes < 2 {
		t.Fatalf("store stats while down %+v; want down once, a handful of errors, bbolt still flushed", s)
	}

	rs.start()
	took := within(t, 5*time.Second, "reconnect", func() bool { return a.Stats().RedisUp })
	t.Logf("reconnected %v after restart", took)
	within(t, time.Second, "write-back", func() bool { return a.Stats().WrittenBack >= 1 })
	within(t, 2*time.Second, "sharing resumes", func() bool {
		node, ok := b.LookupShared(context.Background(), tb.View(nil), learnt, now)
		return ok && node == "n2"
	})
	// Pushes resume once go-redis has re-subscribed.
	ta.Record(learnt, "n3", now.Add(time.Second))
	took = within(t, 5*time.Second, "pushes resume", func() bool {
		node, _ := tb.Lookup(learnt, now)
		return node == "n3"
	})
	t.Logf("pushes resumed %v after the rewrite", took)
	if s := a.Stats(); s.RedisDowns != 1 {
		t.Fatalf("store stats %+v", s)
	}
}

// TestRedisHungServer: a Redis that accepts connections and never answers
// costs a lookup at most the lookup timeout, and only RedisBreakerFails
// times before the breaker skips it.
func TestRedisHungServer(t *testing.T) {
	l, err := net.Listen("tcp", redisHost+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // read nothing, answer nothing
		}
	}()
	m := openT(t, Config{Redis: "redis://" + l.Addr().String()})
	tb := tableT(t, m, "web", DefaultOptions())
	m.redis.up.Store(true) // as if Redis had hung after a good start
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		if _, ok := m.LookupShared(context.Background(), tb.View(nil), ip(fmt.Sprintf("10.0.0.%d", i)), time.Now()); ok {
			t.Fatal("hit")
		}
		worst = max(worst, time.Since(start))
	}
	s := m.Stats()
	t.Logf("worst lookup %v; %+v", worst, s)
	if worst > RedisLookupTimeout+40*time.Millisecond || s.Errors != RedisBreakerFails || s.RedisUp {
		t.Fatalf("worst %v, stats %+v; want <= ~%v, %d errors, breaker open", worst, s, RedisLookupTimeout, RedisBreakerFails)
	}
	m.Close()
	l.Close()
	<-done
	for _, c := range conns {
		c.Close()
	}
}

// TestRedisWriteBackLoses: a client learnt while Redis was away from this
// balancer, and meanwhile recorded in Redis by the twin, takes the twin's
// node when Redis returns (the record already in Redis wins).
func TestRedisWriteBackLoses(t *testing.T) {
	rs := startRedis(t)
	a, b := openT(t, Config{Redis: rs.url}), openT(t, Config{Redis: rs.url})
	defer a.Close()
	defer b.Close()
	ta, tb := tableT(t, a, "web", DefaultOptions()), tableT(t, b, "web", DefaultOptions())
	now := time.Now()
	c := ip("10.7.7.7")
	tb.Record(c, "n2", now)
	b.Flush()
	a.redis.up.Store(false) // a's breaker open: a writes bbolt only, pings every second
	ta.Record(c, "n1", now)
	took := within(t, 3*time.Second, "write-back", func() bool { return a.Stats().WrittenBack == 1 })
	if node, _ := ta.Lookup(c, now); node != "n2" || ta.Stats().Conflicts != 1 {
		t.Fatalf("after write-back (%v): %q, conflicts %d; want the twin's n2", took, node, ta.Stats().Conflicts)
	}
	if v := rs.get("pb:aff:web:10.7.7.7"); !strings.HasPrefix(v, "n2\x1f") {
		t.Fatalf("redis holds %q", v)
	}
}
