package health

import (
	"errors"
	"testing"
	"time"
)

// TestStep runs result sequences through the rise/fall machine. results:
// '+' a pass, '-' a failure. want, one letter per result: the state after
// it, upper case when that result changed it ('U' came up, 'D' went down).
func TestStep(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		results    string
		want       string
	}{
		{"starts up, passes keep it", 2, 2, "+++", "uuu"},
		{"fall 1 rise 1 flips on each change", 1, 1, "-+-+", "DUDU"},
		{"fall 2: one failure keeps it up", 2, 2, "-", "u"},
		{"fall 2: a pass resets the count", 2, 2, "-+-+-", "uuuuu"},
		{"fall 2: two failures turn it down", 2, 2, "--", "uD"},
		{"down stays down, one transition", 2, 2, "-----", "uDddd"},
		{"rise 2: one pass keeps it down", 2, 2, "--+", "uDd"},
		{"rise 2: a failure resets the count", 2, 2, "--+-+-", "uDdddd"},
		{"rise 2: two passes bring it up", 2, 2, "--++", "uDdU"},
		{"fall 3 rise 1", 1, 3, "--+---+", "uuuuuDU"},
		{"rise 3 fall 1", 3, 1, "-++-+++", "DdddddU"},
		{"full cycle twice", 2, 2, "--++--++", "uDdUuDdU"},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fail := errors.New("connect: connection refused")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := Status{Up: true, LastChange: t0}
			var got []byte
			for i, r := range tt.results {
				now := t0.Add(time.Duration(i+1) * time.Second)
				var err error
				if r == '-' {
					err = fail
				}
				var changed bool
				st, changed = step(st, err, now, tt.rise, tt.fall)
				c := byte('d')
				if st.Up {
					c = 'u'
				}
				if changed {
					c -= 'a' - 'A'
					if !st.LastChange.Equal(now) {
						t.Errorf("result %d: LastChange %v, want %v", i, st.LastChange, now)
					}
				}
				got = append(got, c)
				if !st.LastCheck.Equal(now) {
					t.Errorf("result %d: LastCheck %v, want %v", i, st.LastCheck, now)
				}
				if st.Successes != 0 && st.Failures != 0 {
					t.Errorf("result %d: Successes %d and Failures %d both set", i, st.Successes, st.Failures)
				}
			}
			if string(got) != tt.want {
				t.Errorf("states %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStepCounters(t *testing.T) {
	t0 := time.Unix(100, 0)
	st := Status{Up: true, LastChange: t0}
	fail := errors.New(`expect "220": got "554 go away"`)

	st, _ = step(st, fail, t0.Add(1), 2, 2)
	st, _ = step(st, fail, t0.Add(2), 2, 2)
	st, _ = step(st, fail, t0.Add(3), 2, 2)
	want := Status{Up: false, LastErr: fail.Error(), LastCheck: t0.Add(3), LastChange: t0.Add(2), Failures: 3}
	if st != want {
		t.Fatalf("after three failures: %+v, want %+v", st, want)
	}
	st, _ = step(st, nil, t0.Add(4), 2, 2)
	want = Status{Up: false, LastCheck: t0.Add(4), LastChange: t0.Add(2), Successes: 1}
	if st != want {
		t.Fatalf("after a pass: %+v, want %+v", st, want)
	}
}

func TestJitter(t *testing.T) {
	const d = time.Second
	tests := []struct {
		u           float64
		next, first time.Duration
	}{
		{0, 800 * time.Millisecond, 0},
		{0.25, 900 * time.Millisecond, 250 * time.Millisecond},
		{0.5, d, 500 * time.Millisecond},
		{0.75, 1100 * time.Millisecond, 750 * time.Millisecond},
		{0.999999, 1200*time.Millisecond - 400*time.Nanosecond, d - time.Microsecond},
	}
	for _, tt := range tests {
		if got := jitter(d, tt.u); got != tt.next {
			t.Errorf("jitter(%v, %v) = %v, want %v", d, tt.u, got, tt.next)
		}
		if got := firstDelay(d, tt.u); got != tt.first {
			t.Errorf("firstDelay(%v, %v) = %v, want %v", d, tt.u, got, tt.first)
		}
	}
}
