package stats

import (
	"math"
	"sync/atomic"
	"time"
)

// ewmaShift sets the weight of a new observation to 1/2^ewmaShift = 1/8,
// as TCP's smoothed RTT (RFC 6298): the average forgets an old value to
// 1/e in about 8 observations.
const ewmaShift = 3

// EWMA is an exponentially weighted moving average of observations (not of
// time: an idle node keeps its last average). The first observation sets
// the average.
//
// EWMA is safe for concurrent use and lock-free; the zero value has no
// observation and reads 0.
type EWMA struct {
	bits atomic.Uint64 // float64 bits of the average; 0 = no observation yet
}

// Observe records a duration, in milliseconds.
func (e *EWMA) Observe(d time.Duration) {
	e.ObserveValue(float64(d) / float64(time.Millisecond))
}

// ObserveValue records one observation (v >= 0; others are ignored).
func (e *EWMA) ObserveValue(v float64) {
	if !(v >= 0) || math.IsInf(v, 1) {
		return
	}
	for {
		old := e.bits.Load()
		avg := v
		if old != 0 {
			prev := math.Float64frombits(old)
			avg = prev + (v-prev)/(1<<ewmaShift)
		}
		next := math.Float64bits(avg)
		if next == 0 { // keep "has an observation" when the average is 0
			next = 1 // the smallest denormal, 5e-324
		}
		if e.bits.CompareAndSwap(old, next) {
			return
		}
	}
}

// Value returns the average (0 before the first observation).
func (e *EWMA) Value() float64 {
	b := e.bits.Load()
	if b <= 1 {
		return 0
	}
	return math.Float64frombits(b)
}
