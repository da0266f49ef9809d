package health

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

type change struct {
	node string
	up   bool
	err  error
}

// watch starts a checker on targets and reports its transitions on
// changes and every recorded check on checks. Cleanup stops it.
func watch(t *testing.T, cfg config.Check, targets ...Target) (c *Checker, changes <-chan change, checks <-chan Status) {
	t.Helper()
	ch := make(chan change, 16)
	st := make(chan Status)
	done := make(chan struct{})
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	c = New(cfg, targets, func(node string, up bool, err error) {
		select {
		case ch <- change{node, up, err}:
		case <-done:
		}
	}, log)
	c.observe = func(_ string, s Status) {
		select {
		case st <- s:
		case <-done:
		}
	}
	c.Start()
	t.Cleanup(func() { close(done); c.Stop() })
	return c, ch, st
}

// waitFor returns the first check that satisfies ok.
func waitFor(t *testing.T, checks <-chan Status, what string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case st := <-checks:
			if ok(st) {
				return st
			}
		case <-deadline:
			t.Fatalf("no check with %s within 10s", what)
		}
	}
}

func noChange(t *testing.T, changes <-chan change, when string) {
	t.Helper()
	select {
	case c := <-changes:
		t.Fatalf("%s: unexpected transition %+v", when, c)
	default:
	}
}

// downAndBack takes the node at addr down with setUp(false) and back with
// setUp(true), checking that rise = fall = 2 is honoured on the way.
func downAndBack(t *testing.T, cfg config.Check, addr string, setUp func(bool), wantErr string) {
	cfg.Interval, cfg.Timeout, cfg.Rise, cfg.Fall = 20*time.Millisecond, time.Second, 2, 2
	c, changes, checks := watch(t, cfg, Target{Node: "n1", Addr: addr})

	st := waitFor(t, checks, "a pass", func(s Status) bool { return s.Successes > 0 })
	if !st.Up {
		t.Fatalf("healthy node is down: %+v", st)
	}
	noChange(t, changes, "healthy")

	setUp(false)
	st = waitFor(t, checks, "a failure", func(s Status) bool { return s.Failures == 1 })
	if !st.Up || st.LastErr != wantErr {
		t.Fatalf("after one failure: %+v; want up, LastErr %q", st, wantErr)
	}
	noChange(t, changes, "one failure of fall=2")
	st = waitFor(t, checks, "a check", func(Status) bool { return true })
	if st.Up || st.Failures != 2 || !st.LastChange.Equal(st.LastCheck) {
		t.Fatalf("after two failures: %+v; want down, changed at the last check", st)
	}
	if ch := <-changes; ch.node != "n1" || ch.up || ch.err == nil || ch.err.Error() != wantErr {
		t.Fatalf("transition %+v, want n1 down with %q", ch, wantErr)
	}
	if got, _ := c.Status("n1"); got != st {
		t.Fatalf("Status %+v, want %+v", got, st)
	}

	setUp(true)
	st = waitFor(t, checks, "a pass", func(s Status) bool { return s.Successes == 1 })
	if st.Up || st.LastErr != "" {
		t.Fatalf("after one pass: %+v; want still down, no LastErr", st)
	}
	noChange(t, changes, "one pass of rise=2")
	st = waitFor(t, checks, "a check", func(Status) bool { return true })
	if !st.Up || st.Successes != 2 || !st.LastChange.Equal(st.LastCheck) {
		t.Fatalf("after two passes: %+v; want up, changed at the last check", st)
	}
	if ch := <-changes; ch.node != "n1" || !ch.up || ch.err != nil {
		t.Fatalf("transition %+v, want n1 up", ch)
	}
}

func TestDownAndBackTCP(t *testing.T) {
	s := serve(t, hold)
	addr := s.Addr()
	downAndBack(t, config.Check{Type: "tcp"}, addr, func(up bool) {
		if !up {
			s.Close()
			return
		}
		s = serveAt(t, addr, hold)
	}, "connect: connection refused")
}

// smtp greets with 220 while healthy, else 554.
func smtp(healthy *atomic.Bool) func(net.Conn) {
	return func(c net.Conn) {
		msg := "554 go away\r\n"
		if healthy.Load() {
			msg = "220 mx.test ESMTP ready\r\n"
		}
		if _, err := io.WriteString(c, msg); err == nil {
			hold(c)
		}
	}
}

func TestDownAndBackSendExpectPrefix(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	s := serve(t, smtp(&healthy))
	cfg := config.Check{Type: "send-expect", Expect: "220", ExpectRE: anchored("220")}
	downAndBack(t, cfg, s.Addr(), healthy.Store, `expect "220": got "554 go away"`)
}

func TestDownAndBackSendExpectRegexp(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	s := serve(t, smtp(&healthy))
	cfg := config.Check{Type: "send-expect", Send: "", Expect: `2\d\d [\w.]+ ESMTP`, ExpectRE: anchored(`2\d\d [\w.]+ ESMTP`)}
	downAndBack(t, cfg, s.Addr(), healthy.Store, `expect "2\\d\\d [\\w.]+ ESMTP": got "554 go away"`)
}

func TestDownAndBackHTTP(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	ln, err := net.Listen("tcp", nodeIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	cfg := config.Check{Type: "http", Path: "/healthz", Status: 200}
	downAndBack(t, cfg, ln.Addr().String(), healthy.Store, "status 503, want 200")
}

// Targets are checked concurrently and independently: one dead node does
// not hold up or affect the others.
func TestTargetsIndependent(t *testing.T) {
	s1, s2 := serve(t, hold), serve(t, hold)
	cfg := config.Check{Type: "tcp", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
	c, changes, checks := watch(t, cfg,
		Target{Node: "n1", Addr: s1.Addr()}, Target{Node: "n2", Addr: s2.Addr()}, Target{Node: "n3", Addr: closedAddr(t)})
	if ch := <-changes; ch.node != "n3" || ch.up {
		t.Fatalf("transition %+v, want n3 down", ch)
	}
	waitFor(t, checks, "three passes", func(Status) bool {
		a, _ := c.Status("n1")
		b, _ := c.Status("n2")
		return a.Successes >= 3 && b.Successes >= 3
	})
	noChange(t, changes, "n1 and n2 healthy")
	for _, n := range []string{"n1", "n2"} {
		if st, _ := c.Status(n); !st.Up || st.LastErr != "" {
			t.Errorf("%s: %+v, want up", n, st)
		}
	}
	if st, _ := c.Status("n3"); st.Up || st.LastErr != "connect: connection refused" {
		t.Errorf("n3: %+v, want down, refused", st)
	}
}

func TestStatusBeforeStart(t *testing.T) {
	before := time.Now()
	c := New(config.Check{Type: "tcp"}, []Target{{Node: "n1", Addr: closedAddr(t)}}, nil, nil)
	st, ok := c.Status("n1")
	if !ok || !st.Up || st.LastErr != "" || !st.LastCheck.IsZero() || st.LastChange.Before(before) {
		t.Errorf("fresh status %+v, %v; want up since New, never checked", st, ok)
	}
	if _, ok := c.Status("nope"); ok {
		t.Error("Status of an unknown node reported ok")
	}
	c.Stop() // without Start
	c.Stop()
	c.Start() // after Stop: nothing runs
	c.Stop()
}

func TestNewPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"duplicate node": func() {
			New(config.Check{}, []Target{{Node: "n1", Addr: "a:1"}, {Node: "n1", Addr: "b:1"}}, nil, nil)
		},
		"unknown type": func() { New(config.Check{Type: "udp"}, nil, nil, nil) },
		"bad expect":   func() { New(config.Check{Type: "send-expect", Expect: "("}, nil, nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: New did not panic", name)
				}
			}()
			f()
		}()
	}
}
