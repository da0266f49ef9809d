package evloop

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/protobalance/protobalance/ebtree"
)

// recorder is a timer owner that notes when it fired.
type recorder struct {
	t     Timer
	fired []int64
}

func (r *recorder) Timeout(now int64) { r.fired = append(r.fired, now) }

// The wheel against a model: random arms, re-arms and stops over several
// turns of the wheel, expired at random steps. Every timer fires exactly
// once, at or after its time and no later than the first expire past it.
func TestWheelModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var w wheel
	w.init(0)
	const n = 500
	rs := make([]*recorder, n)
	want := make([]int64, n) // armed time, -1 = not armed
	for i := range rs {
		rs[i] = &recorder{}
		want[i] = -1
	}
	tick := int64(1) << tickShift
	now := int64(0)
	for step := 0; step < 5000; step++ {
		i := rng.IntN(n)
		r := rs[i]
		switch rng.IntN(4) {
		case 0, 1: // arm or re-arm, up to two turns of the wheel ahead
			when := now + rng.Int64N(2*wheelSize*tick)
			r.t.owner = r
			w.arm(&r.t, when)
			want[i] = when
		case 2:
			w.stop(&r.t)
			want[i] = -1
		case 3:
			prev := now
			now += rng.Int64N(64 * tick)
			w.expire(now)
			for j, rj := range rs {
				switch {
				case want[j] >= 0 && want[j] <= now:
					if len(rj.fired) != 1 || rj.fired[0] < want[j] {
						t.Fatalf("step %d: timer %d armed for %d, fired %v (expire %d→%d)", step, j, want[j], rj.fired, prev, now)
					}
					want[j] = -1
				case len(rj.fired) != 0:
					t.Fatalf("step %d: timer %d armed for %d fired early: %v at now %d", step, j, want[j], rj.fired, now)
				}
				rj.fired = rj.fired[:0]
				if want[j] < 0 && rj.t.Armed() {
					t.Fatalf("step %d: timer %d fired or stopped but still queued", step, j)
				}
			}
		}
		armed := 0
		for j := range rs {
			if want[j] >= 0 {
				armed++
			}
		}
		if w.n != armed {
			t.Fatalf("step %d: wheel holds %d timers, want %d", step, w.n, armed)
		}
		if armed > 0 {
			next, ok := w.next()
			earliest := slices.Min(func() []int64 {
				var ws []int64
				for _, x := range want {
					if x >= 0 {
						ws = append(ws, x)
					}
				}
				return ws
			}())
			// A timer armed within the tick already expired waits for
			// the next one: at most a tick late.
			if !ok || next > max(earliest, now)+tick {
				t.Fatalf("step %d: next %d (ok %v) is more than a tick after the earliest timer %d", step, next, ok, earliest)
			}
		}
	}
}

// Arming, re-arming and stopping allocate nothing.
func TestWheelNoAlloc(t *testing.T) {
	var w wheel
	w.init(0)
	r := &recorder{}
	r.t.owner = r
	allocs := testing.AllocsPerRun(1000, func() {
		w.arm(&r.t, 5<<tickShift)
		w.arm(&r.t, 900<<tickShift)
		w.stop(&r.t)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per arm/re-arm/stop", allocs)
	}
}

func BenchmarkWheelRearm(b *testing.B) {
	var w wheel
	w.init(0)
	rs := make([]recorder, 10000)
	for i := range rs {
		rs[i].t.owner = &rs[i]
		w.arm(&rs[i].t, int64(i)<<tickShift)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := &rs[i%len(rs)]
		w.arm(&r.t, int64(i%3000+1)<<tickShift)
	}
}

// The same re-arm pattern on an elastic binary tree keyed by tick, the
// alternative the loop's timer queue was measured against.
func BenchmarkEbtreeRearm(b *testing.B) {
	var t ebtree.Tree[uint64, *recorder]
	rs := make([]ebtree.Node[uint64, *recorder], 10000)
	for i := range rs {
		rs[i].Key = uint64(i)
		t.Insert(&rs[i])
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		n := &rs[i%len(rs)]
		t.Delete(n)
		n.Key = uint64(i%3000 + 1)
		t.Insert(n)
	}
}

// Size of a timer in a connection: wheel vs tree node.
func TestTimerSizes(t *testing.T) {
	t.Logf("wheel Timer %d bytes, ebtree.Node %d bytes",
		unsafe.Sizeof(Timer{}), unsafe.Sizeof(ebtree.Node[uint64, *recorder]{}))
}
