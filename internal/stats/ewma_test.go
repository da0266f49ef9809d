package stats

import (
	"sync"
	"testing"
	"time"
)

func TestEWMA(t *testing.T) {
	var e EWMA
	if e.Value() != 0 {
		t.Fatalf("zero EWMA reads %v", e.Value())
	}
	e.Observe(8 * time.Millisecond)
	if e.Value() != 8 {
		t.Fatalf("first observation: %v, want 8", e.Value())
	}
	e.Observe(16 * time.Millisecond)
	if e.Value() != 9 { // 8 + (16-8)/8
		t.Fatalf("second observation: %v, want 9", e.Value())
	}
	e.ObserveValue(-1) // ignored
	if e.Value() != 9 {
		t.Fatalf("negative observation changed the average to %v", e.Value())
	}
	for range 200 {
		e.Observe(500 * time.Microsecond)
	}
	near(t, "converged", e.Value(), 0.5, 1e-9)
}

func TestEWMAZeroObservation(t *testing.T) {
	var e EWMA
	e.Observe(0)
	e.Observe(8 * time.Millisecond)
	if e.Value() != 1 { // 0 + 8/8: the 0 counted as an observation
		t.Fatalf("after 0 then 8 ms: %v, want 1", e.Value())
	}
}

func TestEWMAConcurrent(t *testing.T) {
	var e EWMA
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				e.Observe(3 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if e.Value() != 3 {
		t.Fatalf("all observations 3 ms, average %v", e.Value())
	}
}
