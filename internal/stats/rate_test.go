package stats

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// t0 is an explicit wall-clock origin: rates read time through InstantOf, so
// tests drive time without sleeping. It is a multiple of 2,560 s, so epochs
// (256 windows) of 10 s and 1 s windows start at t0.
var t0 = time.Unix(1_800_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

func near(t *testing.T, what string, got, want, rel float64) {
	t.Helper()
	if math.Abs(got-want) > rel*math.Abs(want) {
		t.Errorf("%s = %.12g, want %.12g (±%g relative)", what, got, want, rel)
	}
}

func TestRateZeroValue(t *testing.T) {
	var r Rate
	if v := r.ValueAt(t0); v != 0 {
		t.Errorf("zero Rate reads %v", v)
	}
	if w := r.Window(); w != DefaultRateWindow {
		t.Errorf("zero Rate window %v, want %v", w, DefaultRateWindow)
	}
}

func TestRateDecay(t *testing.T) {
	var r Rate // 10 s window
	r.AddAt(at(0), 10)
	near(t, "value at once", r.ValueAt(at(0)), 1, 1e-9) // 10 events / 10 s
	ln2 := math.Ln2
	half := time.Duration(float64(10*time.Second) * ln2)
	near(t, "value after w·ln2", r.ValueAt(at(half)), 0.5, 1e-9)
	near(t, "value after one window", r.ValueAt(at(10*time.Second)), math.Exp(-1), 1e-9)
	near(t, "value after three windows", r.ValueAt(at(30*time.Second)), math.Exp(-3), 1e-9)
	// The state is untouched by reads: the first instant still reads 1.
	near(t, "value at once, again", r.ValueAt(at(0)), 1, 1e-9)
}

func TestRateSteady(t *testing.T) {
	var r Rate
	r.SetWindow(2 * time.Second)
	// 100 events/s for 30 s (15 windows: what is left of the ramp-up is
	// e^-15 ≈ 3e-7 of the rate).
	for i := range 3000 {
		r.AddAt(at(time.Duration(i)*10*time.Millisecond), 1)
	}
	// Between two events the value saws by 1/w·(1−e^(−0.01/2)): compare at
	// an event, against the exact sum of the geometric series.
	const w, dt = 2.0, 0.01
	want := 1 / w / (1 - math.Exp(-dt/w)) * (1 - math.Exp(-3000*dt/w))
	near(t, "steady rate", r.ValueAt(at(29990*time.Millisecond)), want, 1e-7)
	near(t, "steady rate ≈ 100/s", want, 100, 0.01)
}

// reference is the rate by its definition: Σ n·e^(−(now−t)/w) / w.
type event struct {
	t time.Duration
	n float64
}

func reference(events []event, now, w time.Duration) float64 {
	var sum float64
	for _, e := range events {
		sum += e.n * math.Exp(-(now-e.t).Seconds()/w.Seconds())
	}
	return sum / w.Seconds()
}

func TestRateAcrossEpochs(t *testing.T) {
	const w = time.Second // epochs of 256 s
	src := rand.New(rand.NewPCG(1, 2))
	var r Rate
	r.SetWindow(w)
	var events []event
	now := time.Duration(0)
	for range 5000 {
		// Mostly small steps, sometimes a gap of a few windows: the run
		// crosses several epoch boundaries (~1,700 s in all).
		now += time.Duration(src.ExpFloat64() * float64(300*time.Millisecond))
		if src.IntN(50) == 0 {
			now += time.Duration(src.IntN(5)) * w
		}
		n := 1 + src.Float64()*1000
		r.AddAt(at(now), n)
		events = append(events, event{now, n})
		if len(events)%250 == 0 {
			near(t, "value at "+now.String(), r.ValueAt(at(now)), reference(events, now, w), 1e-6)
		}
	}
	if now < 4*256*w {
		t.Fatalf("run ended at %v: crossed too few epochs", now)
	}
	// Read across the next boundary, then long after.
	for _, later := range []time.Duration{w / 2, 100 * w, 200 * w} {
		near(t, "value later", r.ValueAt(at(now+later)), reference(events, now+later, w), 1e-6)
	}
	// Two epochs on, what is left (e^-256 of the rate or less) reads 0.
	if v := r.ValueAt(at(now + 600*w)); v != 0 {
		t.Errorf("value 600 windows later = %g, want 0", v)
	}
}

func TestRateBeforeBase(t *testing.T) {
	// Instants before the process started are negative: floor division
	// keeps epochs consistent across zero.
	old := time.Unix(1_000_000_000, 0)
	var r Rate
	r.SetWindow(time.Second)
	r.AddAt(old, 5)
	near(t, "old instant", r.ValueAt(old.Add(time.Second)), 5*math.Exp(-1), 1e-9)
	r.AddAt(old.Add(300*time.Second), 1) // next epoch
	near(t, "old instant, next epoch", r.ValueAt(old.Add(300*time.Second)), 1+5*math.Exp(-300), 1e-9)
}

func TestRateBackwardsAcrossBoundary(t *testing.T) {
	// A racing adder may count an event at an instant just before the
	// epoch the state already moved to: it still lands exactly.
	const w = time.Second
	span := 256 * w
	var r Rate
	r.SetWindow(w)
	// Align to an epoch start on the rate clock.
	b := InstantOf(t0)
	start := time.Duration((int64(b)/int64(span) + 1) * int64(span))
	edge := t0.Add(start - time.Duration(b))
	r.AddAt(edge.Add(time.Millisecond), 1)  // next epoch first
	r.AddAt(edge.Add(-time.Millisecond), 1) // then one just before it
	want := math.Exp(-0.001) + math.Exp(-0.003)
	near(t, "backwards add", r.ValueAt(edge.Add(2*time.Millisecond)), want, 1e-9)
}

func TestRateIgnoresBadCounts(t *testing.T) {
	var r Rate
	r.AddAt(t0, -1)
	r.AddAt(t0, math.NaN())
	r.AddAt(t0, 0)
	if v := r.ValueAt(t0); v != 0 {
		t.Errorf("value %v after negative, NaN and zero counts", v)
	}
	r.AddAt(t0, math.Inf(1))
	if v := r.ValueAt(t0); math.IsNaN(v) || v <= 0 {
		t.Errorf("value %v after +Inf, want a large finite number", v)
	}
}

func TestRateSetWindowKeepsValue(t *testing.T) {
	var r Rate
	r.AddAt(at(0), 10)
	b := InstantOf(at(time.Second))
	r.setWindowAt(b, time.Second)
	near(t, "value after window change", r.ValueAt(at(time.Second)), math.Exp(-0.1), 1e-9)
	near(t, "decay with the new window", r.ValueAt(at(2*time.Second)), math.Exp(-0.1)*math.Exp(-1), 1e-9)
	if r.Window() != time.Second {
		t.Errorf("window %v", r.Window())
	}
	r.setWindowAt(b, 0) // back to the default
	if r.Window() != DefaultRateWindow {
		t.Errorf("window %v, want default", r.Window())
	}
}

func TestScaleComparesRates(t *testing.T) {
	var a, b, other Rate
	other.SetWindow(3 * time.Second) // read through the slow path
	a.AddAt(at(0), 30)
	b.AddAt(at(5*time.Second), 20)
	other.AddAt(at(1*time.Second), 25)
	for _, d := range []time.Duration{5 * time.Second, 9 * time.Second, 40 * time.Second} {
		s := NewScale(0, InstantOf(at(d)))
		for name, r := range map[string]*Rate{"a": &a, "b": &b, "other": &other} {
			near(t, name+" via Scale at "+d.String(), s.Value(r.Scaled(&s)), r.ValueAt(at(d)), 1e-9)
		}
	}
	// At 5 s: a = 3·e^-0.5 = 1.82, b = 2: b is higher; at 9 s a = 1.22 and
	// b = 2·e^-0.4 = 1.34: still b. The ordering of Scaled values is the
	// ordering of the rates without converting.
	s := NewScale(0, InstantOf(at(9*time.Second)))
	if !(a.Scaled(&s) < b.Scaled(&s)) {
		t.Errorf("Scaled: a %g should be below b %g", a.Scaled(&s), b.Scaled(&s))
	}
}

func TestAddScaled(t *testing.T) {
	var a, b, other Rate
	other.SetWindow(time.Second)
	s := NewScale(0, InstantOf(at(3*time.Second)))
	a.AddScaled(&s, 7)
	b.AddAt(at(3*time.Second), 7)
	other.AddScaled(&s, 7) // window differs from s's: slow path
	near(t, "AddScaled", a.ValueAt(at(4*time.Second)), b.ValueAt(at(4*time.Second)), 1e-9)
	near(t, "AddScaled, other window", other.ValueAt(at(4*time.Second)), 7*math.Exp(-1), 1e-9)
	if s.At() != InstantOf(at(3*time.Second)) {
		t.Errorf("Scale.At = %v", s.At())
	}
}

func TestRateConcurrentAdds(t *testing.T) {
	var r Rate
	var wg sync.WaitGroup
	const goroutines, each = 8, 1000
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				// Instants interleave and cross the epoch boundary at
				// t0 + 2,560 s (default window) in both orders.
				r.AddAt(at(2559*time.Second+time.Duration((i+g)%3)*time.Second), 1)
			}
		})
	}
	wg.Wait()
	// Every event counted once: the value at 2,561 s is the exact sum.
	var want float64
	for g := range goroutines {
		for i := range each {
			age := 2 - (i+g)%3
			want += math.Exp(-float64(age) / 10)
		}
	}
	near(t, "concurrent adds", r.ValueAt(at(2561*time.Second)), want/10, 1e-6)
}

func TestNowIsMonotonic(t *testing.T) {
	a := Now()
	b := InstantOf(time.Now())
	if b < a {
		t.Errorf("InstantOf(time.Now()) %d before an earlier Now() %d", b, a)
	}
	var r Rate
	r.Add(10)
	if v := r.Value(); v <= 0 || v > 1 {
		t.Errorf("Value right after Add(10) = %v, want just under 1", v)
	}
}

func TestRateStaleState(t *testing.T) {
	var r Rate
	r.SetWindow(time.Second) // epochs of 256 s
	r.AddAt(at(0), 5)
	// The clock running backwards by more than an epoch finds a state it
	// cannot place: it reads as empty rather than as a huge extrapolation.
	if v := r.ValueAt(at(-600 * time.Second)); v != 0 {
		t.Errorf("600 s before the state: %g, want 0", v)
	}
	// Two epochs on, an add starts afresh.
	r.AddAt(at(600*time.Second), 1)
	near(t, "after a fresh start", r.ValueAt(at(600*time.Second)), 1, 1e-9)
}

func TestProbe(t *testing.T) {
	var a, other, empty Rate
	other.SetWindow(time.Second)
	s := NewScale(0, InstantOf(at(time.Second)))
	a.AddScaled(&s, 4)
	other.AddScaled(&s, 4)
	if v, ok := a.Probe(&s); !ok || v != a.Scaled(&s) {
		t.Errorf("same window and epoch: Probe = %v, %v; Scaled %v", v, ok, a.Scaled(&s))
	}
	if _, ok := other.Probe(&s); ok {
		t.Error("Probe ok for a rate of another window")
	}
	later := NewScale(0, InstantOf(at(3000*time.Second))) // the next epoch
	if _, ok := a.Probe(&later); ok {
		t.Error("Probe ok for a state of an earlier epoch")
	}
	if v := empty.Scaled(&later); v != 0 {
		t.Errorf("empty rate: Scaled %v", v)
	}
}
