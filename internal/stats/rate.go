package stats

import (
	"math"
	"sync/atomic"
	"time"
)

// DefaultRateWindow is the decay time constant of a Rate whose window was
// never set (rate_window's default).
const DefaultRateWindow = 10 * time.Second

// Instant is a reading of the rate clock, in nanoseconds since the Unix
// epoch: the wall clock at process start, advanced by the monotonic clock
// since, so it never jumps with wall-clock changes. Only differences between
// instants matter to rates.
type Instant int64

// base anchors Instants; it carries a monotonic reading.
var (
	base     = time.Now()
	baseUnix = base.UnixNano()
)

// Now reads the rate clock. It costs one monotonic clock read (time.Since),
// about half of time.Now.
func Now() Instant { return Instant(baseUnix + int64(time.Since(base))) }

// InstantOf converts t to the rate clock. A time from time.Now (with a
// monotonic reading) converts by the monotonic clock, like Now; a time
// without one (time.Unix, t.Round(0)) is its UnixNano, so tests built on
// time.Unix(…).Add(…) are deterministic.
func InstantOf(t time.Time) Instant { return Instant(baseUnix + int64(t.Sub(base))) }

// Rate is an exponentially decaying rate of events per second: an event of
// size n at time t weighs n·e^(−(now−t)/w)/w at time now, where w is the
// window. A steady r events/s reads r; a single burst reads 1/e (37%) of its
// first value after one window and half of it after w·ln 2 (0.69 w).
//
// Representation (the reason reads are cheap): time is cut into epochs of
// epochWindows windows; the state is one atomic word holding S, the events
// scaled by e^((t−E)/w) relative to the start E of the epoch they were added
// in, and that epoch's number modulo 2^epochBits. Adding is one exp and a
// CAS loop; comparing the rates of many nodes at one instant (see Scale)
// needs no exp at all, since all rates of one window share the factor
// e^(−(now−E)/w).
//
// Rate is safe for concurrent use and lock-free; the zero value is ready
// with DefaultRateWindow. A Rate must not be copied after first use.
type Rate struct {
	cell atomic.Pointer[rateCell] // set by SetWindow; while nil, def serves
	def  rateCell
}

// rateCell is one window's state. Its window never changes, so a reader
// always decodes the state with the window it was written with.
type rateCell struct {
	window int64 // ns; 0 = DefaultRateWindow (see cellWindow)
	state  atomic.Uint64
}

const (
	// epochWindows is the length of an epoch in windows. e^256 ≈ 1.5e111:
	// a scaled sum of 1e13 events/s·window (10 GB/s over a 1000 s window)
	// stays below 1e125, far from float64's 1.8e308.
	epochWindows = 256
	// epochBits low bits of the state hold the epoch number; the other
	// 44 bits keep S to 2^-32 (2.3e-10) relative precision. The epoch number
	// wraps after 2^20 epochs (85 years at a 10 s window, 8.5 at 1 s): a
	// Rate left idle for within an epoch of a multiple of that would read
	// its old value again.
	epochBits = 20
	epochMask = 1<<epochBits - 1
	// maxScaled bounds S so that it never becomes Inf or NaN.
	maxScaled = 1e300
)

var (
	decayEpoch = math.Exp(-epochWindows) // one epoch of decay
	growEpoch  = math.Exp(epochWindows)
)

func (c *rateCell) windowNS() int64 {
	if c.window == 0 {
		return int64(DefaultRateWindow)
	}
	return c.window
}

func (r *Rate) load() *rateCell {
	if c := r.cell.Load(); c != nil {
		return c
	}
	return &r.def
}

// SetWindow sets the decay time constant; w <= 0 means DefaultRateWindow.
// The current value is carried over to the new window (it reads the same
// right after the change and then decays with w). Events added concurrently
// with the change may be lost: call it when the cluster is configured, not
// per connection. It allocates.
func (r *Rate) SetWindow(w time.Duration) { r.setWindowAt(Now(), w) }

func (r *Rate) setWindowAt(at Instant, w time.Duration) {
	old := r.load()
	c := &rateCell{window: cellWindow(w)}
	if old.window == c.window {
		return
	}
	if v := old.valueAt(at); v > 0 {
		s := c.scaleAt(at)
		c.state.Store(encode(v*float64(s.window)/1e9*s.grow, s.epoch))
	}
	r.cell.Store(c)
}

// Window returns the decay time constant.
func (r *Rate) Window() time.Duration { return time.Duration(r.load().windowNS()) }

// Add counts n events (n >= 0; others are ignored) now.
func (r *Rate) Add(n float64) { r.addAt(Now(), n) }

// AddAt counts n events at time now; see InstantOf for how now is read.
func (r *Rate) AddAt(now time.Time, n float64) { r.addAt(InstantOf(now), n) }

func (r *Rate) addAt(at Instant, n float64) {
	c := r.load()
	s := c.scaleAt(at)
	c.add(&s, n)
}

// Value returns the rate in events per second now.
func (r *Rate) Value() float64 { return r.load().valueAt(Now()) }

// ValueAt returns the rate in events per second at time now.
func (r *Rate) ValueAt(now time.Time) float64 { return r.load().valueAt(InstantOf(now)) }

// Scaled returns the rate at s's instant multiplied by a factor that is the
// same for every Rate read with s: comparing Scaled values of many rates
// compares their rates, without an exp per rate when their window is s's
// (the common case: one cluster, one window). s.Value converts back to
// events per second.
func (r *Rate) Scaled(s *Scale) float64 {
	if v, ok := r.Probe(s); ok {
		return v
	}
	return r.load().scaledSlow(s)
}

// Probe is Scaled's fast path, small enough for the compiler to inline into
// a policy's scan: when ok, v is what Scaled returns; when not (the window
// differs from s's, or the state is from another epoch), call Scaled.
func (r *Rate) Probe(s *Scale) (v float64, ok bool) {
	c := r.cell.Load()
	if c == nil {
		c = &r.def
	}
	b := c.state.Load()
	return math.Float64frombits(b &^ epochMask), c.window == s.cellWindow && (b^uint64(s.epoch))&epochMask == 0
}

func (c *rateCell) scaledSlow(s *Scale) float64 {
	if c.window != s.cellWindow {
		return c.valueAt(s.at) * float64(s.window) / 1e9 * s.grow
	}
	return c.scaled(s)
}

// AddScaled counts n events at s's instant, reusing s's exp when the window
// matches. It is how a policy counts a pick "at once" with the clock reading
// it compared with.
func (r *Rate) AddScaled(s *Scale, n float64) {
	c := r.load()
	if c.window != s.cellWindow {
		t := c.scaleAt(s.at)
		c.add(&t, n)
		return
	}
	c.add(s, n)
}

// Scale is one clock reading prepared for one window: the epoch it falls in
// and the growth factor e^x, x being its offset into that epoch in windows.
type Scale struct {
	at     Instant
	window int64 // ns
	// cellWindow is window as a rateCell stores it: 0 for the default.
	cellWindow int64
	epoch      int64
	grow       float64
}

// NewScale prepares instant at for rates with window w (<= 0: the default).
// It costs one exp.
func NewScale(w time.Duration, at Instant) Scale {
	c := rateCell{window: cellWindow(w)}
	return c.scaleAt(at)
}

// cellWindow is how a rateCell stores window w: 0 for the default, so that
// every Rate of the default window, set or not, takes the fast paths.
func cellWindow(w time.Duration) int64 {
	if w <= 0 || w == DefaultRateWindow {
		return 0
	}
	return int64(w)
}

// At returns the instant s was prepared for.
func (s *Scale) At() Instant { return s.at }

// Value converts a Scaled value back to events per second.
func (s *Scale) Value(scaled float64) float64 {
	return scaled / s.grow * 1e9 / float64(s.window)
}

func (c *rateCell) scaleAt(at Instant) Scale {
	w := c.windowNS()
	span := w * epochWindows
	ep := int64(at) / span
	off := int64(at) - ep*span
	if off < 0 { // floor division for instants before the base
		ep--
		off += span
	}
	return Scale{at: at, window: w, cellWindow: c.window, epoch: ep, grow: math.Exp(float64(off) / float64(w))}
}

// epochDelta is how many epochs s lies after the stored epoch number, read
// as a signed epochBits-bit difference. 0 and 1 are the common cases; −1 is
// an adder racing with one that already moved the state into the next
// epoch. Anything else is a stale state: its events are at least an epoch
// old (e^-256 of their rate or less is left), or the clock ran backwards by
// more than an epoch (256 windows), and the state counts as empty.
func epochDelta(s *Scale, stored uint64) int64 {
	d := int64((uint64(s.epoch) - stored) & epochMask)
	if d >= 1<<(epochBits-1) {
		d -= 1 << epochBits
	}
	return d
}

func decode(v uint64) (float64, uint64) {
	return math.Float64frombits(v &^ epochMask), v & epochMask
}

// encode packs S (rounded half up to 44 bits) and the epoch number.
func encode(sum float64, epoch int64) uint64 {
	if !(sum < maxScaled) { // also catches NaN
		sum = maxScaled
	}
	b := math.Float64bits(sum) + 1<<(epochBits-1)
	return b&^epochMask | uint64(epoch)&epochMask
}

// scaled is the state relative to s's epoch; s.window must be c's.
func (c *rateCell) scaled(s *Scale) float64 {
	sum, ep := decode(c.state.Load())
	switch epochDelta(s, ep) {
	case 0:
		return sum
	case 1:
		return sum * decayEpoch
	case -1:
		return sum * growEpoch
	}
	return 0 // stale
}

func (c *rateCell) valueAt(at Instant) float64 {
	s := c.scaleAt(at)
	return s.Value(c.scaled(&s))
}

// add counts n events at s; s.window must be c's.
func (c *rateCell) add(s *Scale, n float64) {
	if !(n > 0) {
		return
	}
	for {
		old := c.state.Load()
		sum, ep := decode(old)
		var next uint64
		switch d := epochDelta(s, ep); {
		case sum == 0: // empty (the zero state says epoch 0)
			next = encode(n*s.grow, s.epoch)
		case d == 0:
			next = encode(sum+n*s.grow, s.epoch)
		case d == 1:
			next = encode(sum*decayEpoch+n*s.grow, s.epoch)
		case d == -1: // a racing adder already moved the state into the next epoch
			next = encode(sum+n*s.grow*decayEpoch, int64(ep))
		default: // stale: start afresh
			next = encode(n*s.grow, s.epoch)
		}
		if c.state.CompareAndSwap(old, next) {
			return
		}
	}
}
