package proxy

import (
	"testing"
	"time"
)

func TestFdPause(t *testing.T) {
	var p fdPause
	if d := p.left(); d != 0 {
		t.Fatalf("no pause yet, left %v", d)
	}
	now := time.Now()
	if d, began := p.start(now); !began || d != fdPauseFirst {
		t.Fatalf("first pause %v began %v, want %v began", d, began, fdPauseFirst)
	}
	if d, began := p.start(now.Add(time.Millisecond)); began || d != fdPauseFirst-time.Millisecond {
		t.Fatalf("during a pause: %v began %v, want the rest of the one under way", d, began)
	}
	if d := p.left(); d <= 0 || d > fdPauseFirst {
		t.Fatalf("left %v, want (0, %v]", d, fdPauseFirst)
	}
	// Shortage again soon after the pause: the next one is longer, up to 1s.
	at, want := now.Add(fdPauseFirst), fdPauseFirst
	for range 6 {
		want = min(2*want, time.Second)
		d, began := p.start(at)
		if !began || d != want {
			t.Fatalf("repeated shortage: pause %v began %v, want %v", d, began, want)
		}
		at = at.Add(d)
	}
	// More than a second without a shortage: short again.
	if d, _ := p.start(at.Add(2 * time.Second)); d != fdPauseFirst {
		t.Fatalf("after a quiet second: pause %v, want %v", d, fdPauseFirst)
	}
	// A pause that ended reads as none, and stops costing a clock read.
	p.until.Store(time.Now().Add(-time.Millisecond).UnixNano())
	if d := p.left(); d != 0 || p.until.Load() != 0 {
		t.Fatalf("ended pause: left %v, until %d", d, p.until.Load())
	}
}

func TestBackoffCapped(t *testing.T) {
	var b backoff
	var d time.Duration
	for range 20 {
		d = b.next()
	}
	if d != time.Second {
		t.Fatalf("backoff grew to %v, want a 1s cap", d)
	}
	b.reset()
	if d := b.next(); d != 5*time.Millisecond {
		t.Fatalf("after reset %v", d)
	}
}
