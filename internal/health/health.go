// Package health runs active health checks (F10) against a fixed set of
// targets and reports when one turns down or back up.
//
// It knows nothing of clusters or proxies: the caller resolves each node to
// a "host:port" (the check's port for port-less nodes), hands the list to
// New, and reacts to the transitions passed to onChange. Checks run in
// their own goroutines, so they never block the data path.
//
// Semantics, in one place:
//   - A target starts Up, so a fresh balancer serves at once; fall
//     consecutive failures turn it down, then rise consecutive successes
//     turn it up again (see step).
//   - The first check of each target runs after a random delay within the
//     first interval, so the targets of a cluster do not check in step;
//     every later pause is interval ±20% (see jitter), measured from the
//     end of one check to the start of the next, so checks never overlap.
//   - Each check, connect included, is bounded by the check's timeout and
//     reads at most maxReply bytes; Stop aborts checks in flight.
//   - tcp passes when the connection opens. send-expect writes Send (none
//     when empty, for banner protocols) and matches Expect, a regular
//     expression anchored at the start of the reply (config's choice: a
//     plain prefix such as "220" is one), deciding as soon as the bytes so
//     far match or can no longer match (see expectation); an empty Expect
//     passes on any first byte. http sends "GET Path HTTP/1.1" with Host
//     the target address and Connection: close, and compares the status
//     line's code with Status.
package health

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

// Target is one node to check.
type Target struct {
	// Node names the target in Status and onChange; unique per Checker.
	Node string
	// Addr is the "host:port" to check, already resolved by the caller.
	Addr string
}

// Status is what the checker knows of one target.
type Status struct {
	// Up is the checked state: true from New until fall consecutive
	// failures, then false until rise consecutive successes.
	Up bool
	// LastErr is the error of the most recent check, "" when it passed or
	// no check has run yet.
	LastErr string
	// LastCheck is when the most recent check ended; zero before the first.
	LastCheck time.Time
	// LastChange is when Up last changed; until the first transition, the
	// time New assumed the target up.
	LastChange time.Time
	// Successes and Failures count the consecutive passes or failures up
	// to the last check; at most one of them is non-zero.
	Successes, Failures int
}

// Checker checks a fixed set of targets with one check configuration. Its
// methods are safe for concurrent use.
type Checker struct {
	cfg      config.Check // defaults applied
	targets  []Target
	onChange func(node string, up bool, err error)
	log      *slog.Logger

	// Seams for tests, set before Start.
	probe   probeFunc                    // one check; run adds the timeout
	rand    func() float64               // uniform in [0, 1)
	observe func(node string, st Status) // after every recorded check

	mu      sync.Mutex
	status  map[string]*Status
	cancel  context.CancelFunc // nil until Start
	stopped bool
	wg      sync.WaitGroup
}

// New returns a checker for targets; nothing runs until Start.
//
// cfg is a validated config.Check: a zero Interval, Timeout, Rise, Fall,
// Status or Path, or an empty Type, takes its config.DefaultCheck value.
// Expect is matched through cfg.ExpectRE when set (anchored, as config
// builds it), else compiled here as `^(?:Expect)`. New panics on an unknown
// Type, an Expect that does not compile, or a duplicate node name: config
// rules all three out.
//
// onChange (nil = none) is called on every transition of a target, with err
// the failure that turned it down or nil when it comes up. It runs on the
// target's checking goroutine: calls for one node are sequential, calls for
// different nodes may be concurrent, and it must not call Stop. Status
// already reflects the transition when it runs. Transitions are also
// logged at Info on log (nil = discard); failed checks at Debug.
func New(cfg config.Check, targets []Target, onChange func(node string, up bool, err error), log *slog.Logger) *Checker {
	cfg = withDefaults(cfg)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(string, bool, error) {}
	}
	c := &Checker{
		cfg:      cfg,
		targets:  append([]Target(nil), targets...),
		onChange: onChange,
		log:      log,
		rand:     rand.Float64,
		status:   make(map[string]*Status, len(targets)),
	}
	now := time.Now()
	for _, t := range targets {
		if _, dup := c.status[t.Node]; dup {
			panic(fmt.Sprintf("health: duplicate node %q", t.Node))
		}
		c.status[t.Node] = &Status{Up: true, LastChange: now}
	}
	switch cfg.Type {
	case "tcp":
		c.probe = checkTCP
	case "send-expect":
		c.probe = newSendExpect(cfg).check
	case "http":
		c.probe = newHTTPCheck(cfg).check
	default:
		panic(fmt.Sprintf("health: unknown check type %q", cfg.Type))
	}
	return c
}

// withDefaults fills the zero fields of cfg from config.DefaultCheck.
func withDefaults(cfg config.Check) config.Check {
	d := config.DefaultCheck()
	if cfg.Type == "" {
		cfg.Type = d.Type
	}
	if cfg.Interval <= 0 {
		cfg.Interval = d.Interval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.Rise <= 0 {
		cfg.Rise = d.Rise
	}
	if cfg.Fall <= 0 {
		cfg.Fall = d.Fall
	}
	if cfg.Path == "" {
		cfg.Path = d.Path
	}
	if cfg.Status == 0 {
		cfg.Status = d.Status
	}
	return cfg
}

// Start launches one checking goroutine per target. It returns at once;
// calls after the first, or after Stop, do nothing.
func (c *Checker) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil || c.stopped {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(len(c.targets))
	for _, t := range c.targets {
		go c.run(ctx, t)
	}
}

// Stop cancels every check, in-flight ones included, and returns once all
// checking goroutines have exited; onChange is never called after Stop
// returns. A check aborted by Stop is not recorded. Stop may be called more
// than once, and without Start.
func (c *Checker) Stop() {
	c.mu.Lock()
	c.stopped = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
}

// Status returns a copy of node's status, and false when node is not one
// of the checker's targets.
func (c *Checker) Status(node string) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.status[node]
	if !ok {
		return Status{}, false
	}
	return *st, true
}

// run checks t until ctx is cancelled.
func (c *Checker) run(ctx context.Context, t Target) {
	defer c.wg.Done()
	timer := time.NewTimer(firstDelay(c.cfg.Interval, c.rand()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		err := c.probe(cctx, t.Addr)
		cancel()
		if ctx.Err() != nil {
			return // aborted by Stop: the result says nothing of the node
		}
		c.record(t, err, time.Now())
		timer.Reset(jitter(c.cfg.Interval, c.rand()))
	}
}

// record folds one result into t's status and reports a transition.
func (c *Checker) record(t Target, err error, now time.Time) {
	c.mu.Lock()
	st, changed := step(*c.status[t.Node], err, now, c.cfg.Rise, c.cfg.Fall)
	*c.status[t.Node] = st
	c.mu.Unlock()

	if err != nil {
		c.log.Debug("health check failed", "node", t.Node, "addr", t.Addr,
			"check", c.cfg.Type, "failures", st.Failures, "err", err)
	}
	if changed {
		if st.Up {
			c.log.Info("node up", "node", t.Node, "addr", t.Addr, "check", c.cfg.Type)
			c.onChange(t.Node, true, nil)
		} else {
			c.log.Info("node down", "node", t.Node, "addr", t.Addr, "check", c.cfg.Type, "err", err)
			c.onChange(t.Node, false, err)
		}
	}
	if c.observe != nil {
		c.observe(t.Node, st)
	}
}
