package proxy

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// fdPause stops accepting for a while after a node socket could not be
// opened for want of a descriptor (EMFILE, ENFILE). Accepting more clients
// then would only close them one by one, draining the listen backlog;
// paused, they wait in it until descriptors free up, as they do when
// accept itself fails. Both data paths honour it.
type fdPause struct {
	until atomic.Int64 // unix ns the pause ends; 0 = none under way

	mu   sync.Mutex
	last int64 // when the latest pause ended (unix ns)
	bo   backoff
}

// fdPauseFirst is the first pause: long enough for a few connections to
// end, so that each retry does not cost one more client.
const fdPauseFirst = 100 * time.Millisecond

// start begins a pause, or reports the one under way. It returns how long
// accepts pause and whether this call began the pause (to log it once).
func (p *fdPause) start(now time.Time) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := now.UnixNano()
	if u := p.until.Load(); u > n {
		return time.Duration(u - n), false
	}
	if n-p.last > int64(time.Second) {
		p.bo = backoff{first: fdPauseFirst} // the shortage was over: start short again
	}
	d := p.bo.next()
	p.last = n + int64(d)
	p.until.Store(p.last)
	return d, true
}

// left is how much longer accepts pause; 0 (one atomic load) when no pause
// is under way.
func (p *fdPause) left() time.Duration {
	u := p.until.Load()
	if u == 0 {
		return 0
	}
	if d := u - time.Now().UnixNano(); d > 0 {
		return time.Duration(d)
	}
	p.until.CompareAndSwap(u, 0)
	return 0
}

// outOfDescriptors reports whether err says the process or the system ran
// out of descriptors.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// noSourcePort books a connection ended for want of a local resource (an
// ephemeral port, a source address of the node's family, a descriptor),
// on either data path; running out of descriptors also pauses accepts.
func (l *Listener) noSourcePort(err error) {
	l.Stats.NoSourcePort.Add(1)
	if !outOfDescriptors(err) {
		return
	}
	if d, began := l.s.fdPause.start(time.Now()); began {
		l.s.log.Warn("out of descriptors; accepting paused", "err", err, "pause", d)
	}
}
