package health

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

// The checking loop is tested in a synctest bubble with a scripted probe:
// time is fake, so intervals and timeouts are exact and nothing sleeps.

// script is a probe whose results are set by the test; it records when
// each check of each address started.
type script struct {
	mu      sync.Mutex
	results []error // consumed in order; nil (pass) once exhausted
	starts  map[string][]time.Time
}

func (s *script) probe(ctx context.Context, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starts == nil {
		s.starts = map[string][]time.Time{}
	}
	s.starts[addr] = append(s.starts[addr], time.Now())
	if len(s.results) == 0 {
		return nil
	}
	err := s.results[0]
	s.results = s.results[1:]
	return err
}

func (s *script) times(addr string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.starts[addr]...)
}

// Targets started together are spread over the first interval and keep
// drifting: every later check comes interval ±20% after the previous one,
// the gaps vary, and no two checks coincide.
func TestLoopSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		var s script
		var targets []Target
		for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
			targets = append(targets, Target{Node: n, Addr: n + ":25"})
		}
		c := New(config.Check{Type: "tcp", Interval: interval}, targets, nil, nil)
		c.probe = s.probe
		start := time.Now()
		c.Start()
		time.Sleep(100 * interval)
		c.Stop()

		seen := map[time.Time]string{}
		for _, tg := range targets {
			got := s.times(tg.Addr)
			if len(got) < 80 {
				t.Fatalf("%s: %d checks in 100 intervals, want ~100", tg.Node, len(got))
			}
			if first := got[0].Sub(start); first >= interval {
				t.Errorf("%s: first check after %v, want within the first interval", tg.Node, first)
			}
			gaps := map[time.Duration]bool{}
			for i, at := range got {
				if other, dup := seen[at]; dup {
					t.Errorf("%s and %s both checked at %v", other, tg.Node, at.Sub(start))
				}
				seen[at] = tg.Node
				if i == 0 {
					continue
				}
				if gap := at.Sub(got[i-1]); gap < 800*time.Millisecond || gap > 1200*time.Millisecond {
					t.Errorf("%s: gap %d is %v, want interval ±20%%", tg.Node, i, gap)
				}
				gaps[at.Sub(got[i-1])] = true
			}
			if len(gaps) < len(got)/2 {
				t.Errorf("%s: %d distinct gaps between %d checks: not jittered", tg.Node, len(gaps), len(got))
			}
		}
	})
}

// With fixed randomness the schedule is exact: first check at interval/2,
// then one per interval; fall=2 and rise=2 change state at the 2nd and
// 4th checks, and onChange runs at those instants.
func TestLoopTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fail := errors.New("connect: connection refused")
		s := script{results: []error{fail, fail, nil, nil}}
		type event struct {
			up  bool
			err error
			at  time.Duration
		}
		var events []event
		start := time.Now()
		c := New(config.Check{Type: "tcp", Interval: time.Second, Rise: 2, Fall: 2}, []Target{{Node: "n1"}},
			func(node string, up bool, err error) {
				events = append(events, event{up, err, time.Since(start)})
			}, nil)
		c.probe = s.probe
		c.rand = func() float64 { return 0.5 }
		c.Start()

		time.Sleep(2 * time.Second) // checks at 0.5s and 1.5s
		synctest.Wait()
		st, _ := c.Status("n1")
		want := Status{Up: false, LastErr: fail.Error(), LastCheck: start.Add(1500 * time.Millisecond),
			LastChange: start.Add(1500 * time.Millisecond), Failures: 2}
		if st != want {
			t.Errorf("at 2s: %+v\nwant %+v", st, want)
		}
		time.Sleep(2 * time.Second) // checks at 2.5s and 3.5s
		synctest.Wait()
		c.Stop()

		wantEvents := []event{{false, fail, 1500 * time.Millisecond}, {true, nil, 3500 * time.Millisecond}}
		if len(events) != len(wantEvents) {
			t.Fatalf("events %+v, want %+v", events, wantEvents)
		}
		for i := range events {
			if events[i] != wantEvents[i] {
				t.Errorf("event %d: %+v, want %+v", i, events[i], wantEvents[i])
			}
		}
		st, _ = c.Status("n1")
		if !st.Up || !st.LastChange.Equal(start.Add(3500*time.Millisecond)) || st.Successes != 2 {
			t.Errorf("at 4s: %+v, want up since 3.5s", st)
		}
	})
}

// A check that outlives its timeout fails with the deadline, and the next
// check starts an interval after it ended: checks never overlap.
func TestLoopTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var starts []time.Duration
		start := time.Now()
		c := New(config.Check{Type: "tcp", Interval: time.Second, Timeout: 300 * time.Millisecond, Fall: 1},
			[]Target{{Node: "n1"}}, nil, nil)
		c.probe = func(ctx context.Context, _ string) error {
			starts = append(starts, time.Since(start))
			<-ctx.Done()
			return ctx.Err()
		}
		c.rand = func() float64 { return 0.5 }
		c.Start()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		c.Stop()

		st, _ := c.Status("n1")
		if st.Up || st.LastErr != context.DeadlineExceeded.Error() {
			t.Errorf("status %+v, want down by the deadline", st)
		}
		want := []time.Duration{500 * time.Millisecond, 1800 * time.Millisecond}
		if len(starts) != 2 || starts[0] != want[0] || starts[1] != want[1] {
			t.Errorf("checks started at %v, want %v", starts, want)
		}
	})
}

// Stop aborts an in-flight check, waits for it, and records nothing: no
// failure, no onChange, then or later.
func TestStopAbortsCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		var aborted error
		changes := 0
		c := New(config.Check{Type: "tcp", Interval: time.Second, Timeout: time.Hour, Fall: 1},
			[]Target{{Node: "n1"}}, func(string, bool, error) { changes++ }, nil)
		c.probe = func(ctx context.Context, _ string) error {
			close(started)
			<-ctx.Done()
			aborted = ctx.Err()
			return errors.New("read: i/o timeout")
		}
		c.Start()
		<-started
		c.Stop()
		if !errors.Is(aborted, context.Canceled) {
			t.Errorf("in-flight check ended with %v, want cancelled", aborted)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if st, _ := c.Status("n1"); changes != 0 || !st.Up || st.Failures != 0 || !st.LastCheck.IsZero() {
			t.Errorf("after Stop: %d changes, status %+v; want nothing recorded", changes, st)
		}
	})
}

// Start twice runs one loop per target, not two.
func TestStartTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s script
		c := New(config.Check{Type: "tcp", Interval: time.Second}, []Target{{Node: "n1"}}, nil, nil)
		c.probe = s.probe
		c.rand = func() float64 { return 0.5 }
		c.Start()
		c.Start()
		time.Sleep(10 * time.Second) // checks at 0.5s, 1.5s, ... 9.5s
		synctest.Wait()
		c.Stop()
		if n := len(s.times("")); n != 10 {
			t.Errorf("%d checks in 10 intervals, want 10", n)
		}
	})
}
