package proxy

import "sync"

// gate is a counting cap on concurrent connections. Accept loops take a
// slot before accepting, so at the cap accepting pauses and the kernel's
// backlog queues new clients instead of us accepting and dropping them. The
// limit can change at run time (a reload); lowering it below the current
// count closes nothing, it only holds new accepts back until enough end.
type gate struct {
	mu    sync.Mutex
	cond  sync.Cond
	n     int
	limit int // 0 = unlimited
	// Event loops cannot wait in acquire: they tryAcquire, and when that
	// fails, starved is set and the next release calls onFree (set once,
	// before any use), which tells the loops to accept again.
	starved bool
	onFree  func()
}

func newGate(limit int) *gate {
	g := &gate{limit: limit}
	g.cond.L = &g.mu
	return g
}

// acquire blocks until a slot is free or stopped() reports true; stopping
// callers must call wake so waiters re-check. A nil gate never blocks.
func (g *gate) acquire(stopped func() bool) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.limit > 0 && g.n >= g.limit {
		if stopped() {
			return false
		}
		g.cond.Wait()
	}
	if stopped() {
		return false
	}
	g.n++
	return true
}

func (g *gate) release() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.n--
	starved := g.starved
	g.starved = false
	g.mu.Unlock()
	g.cond.Signal()
	if starved && g.onFree != nil {
		g.onFree()
	}
}

// tryAcquire takes a slot without waiting; on failure the next release
// calls onFree.
func (g *gate) tryAcquire() bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.limit > 0 && g.n >= g.limit {
		g.starved = true
		return false
	}
	g.n++
	return true
}

// setLimit changes the cap and wakes every waiter to re-check.
func (g *gate) setLimit(limit int) {
	g.mu.Lock()
	g.limit = limit
	starved := g.starved
	g.starved = false
	g.mu.Unlock()
	g.cond.Broadcast()
	if starved && g.onFree != nil {
		g.onFree()
	}
}

// wake makes every waiter re-check its stop condition.
func (g *gate) wake() {
	if g == nil {
		return
	}
	// Taking the lock orders this after any waiter's check of its stop
	// condition: the waiter is either before the check or inside Wait.
	g.mu.Lock()
	g.cond.Broadcast()
	g.mu.Unlock()
}

// limitNow is the current cap (0 = unlimited).
func (g *gate) limitNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.limit
}
