package proxy

import (
	"sync"
	"time"
)

// dispatchers run session dispatches on reused goroutines. Dialling grows
// a goroutine's stack to about 8 KiB, and growing a fresh 2 KiB stack that
// far costs two stack copies per connection; a worker that has dialled
// once keeps its grown stack for the next connection. The pool is elastic:
// a session goes to an idle worker when one is waiting, else to a new one,
// so a dial that hangs (a blackholed node) never holds anyone else up. A
// worker idle for workerIdle exits, and all exit when quit is closed.
type dispatchers struct {
	sessions chan *session
	quit     <-chan struct{}
	wg       *sync.WaitGroup
}

// workerIdle is how long a worker waits for its next session.
const workerIdle = 10 * time.Second

func newDispatchers(quit <-chan struct{}, wg *sync.WaitGroup) *dispatchers {
	return &dispatchers{sessions: make(chan *session), quit: quit, wg: wg}
}

// run dispatches ss on an idle worker, or on a new one.
func (d *dispatchers) run(ss *session) {
	select {
	case d.sessions <- ss:
	default:
		d.wg.Add(1)
		go d.work(ss)
	}
}

func (d *dispatchers) work(ss *session) {
	defer d.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		ss.dispatch()
		idle.Reset(workerIdle)
		select {
		case ss = <-d.sessions:
		case <-idle.C:
			return
		case <-d.quit:
			return
		}
	}
}
