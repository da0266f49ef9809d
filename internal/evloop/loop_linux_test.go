//go:build linux

package evloop

import (
	"testing"
	"time"
)

type chanOwner chan int64

func (c chanOwner) Timeout(now int64) { c <- now }

// A timer armed on the loop fires on the loop, at or after its time.
func TestLoopTimerFires(t *testing.T) {
	l, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	l.Start()
	defer l.Stop()
	fired := make(chanOwner, 1)
	var tm Timer
	var armedAt int64
	l.Post(func() { armedAt = l.Now(); l.Arm(&tm, fired, l.Now()+int64(50*time.Millisecond)) })
	select {
	case now := <-fired:
		if now-armedAt < int64(50*time.Millisecond) {
			t.Errorf("fired %v after arming, want ≥ 50ms", time.Duration(now-armedAt))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timer did not fire")
	}
}
