// Package proxy accepts client connections, chooses a node for each,
// dials it (falling over down the chain when a dial fails) and hands the
// pair to a relay.Relay that moves the bytes.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/relay"
)

// Server runs the listeners of one configuration. Create it with New, start
// it with Start, stop it with Shutdown.
type Server struct {
	log      *slog.Logger
	relay    relay.Relay
	clusters map[string]*cluster.Cluster
	// listeners in configuration order.
	listeners []*Listener
	// global caps the process's concurrent connections (F13); nil = none.
	global *gate

	wg sync.WaitGroup // one per session and per accept loop
}

// Options are the process-level choices New does not find in the config.
type Options struct {
	Log   *slog.Logger
	Relay relay.Relay
	// MaxConns is the effective [global] max_conns (already derived from
	// the descriptor limit when the config says 0); 0 = no cap.
	MaxConns int
}

// New builds the clusters and listeners of cfg without opening sockets.
func New(cfg *config.Config, opt Options) (*Server, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Relay == nil {
		return nil, errors.New("proxy: no relay")
	}
	s := &Server{log: opt.Log, relay: opt.Relay, clusters: make(map[string]*cluster.Cluster)}
	if opt.MaxConns > 0 {
		s.global = newGate(opt.MaxConns)
	}
	for i := range cfg.Clusters {
		c, err := cluster.New(&cfg.Clusters[i])
		if err != nil {
			return nil, err
		}
		s.clusters[c.Name] = c
	}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		c := s.clusters[lc.Cluster]
		if c == nil {
			return nil, fmt.Errorf("listener %q: unknown cluster %q", lc.Name, lc.Cluster)
		}
		s.listeners = append(s.listeners, newListener(s, lc, c))
	}
	return s, nil
}

// Cluster returns the named cluster, or nil.
func (s *Server) Cluster(name string) *cluster.Cluster { return s.clusters[name] }

// Listeners returns the server's listeners in configuration order.
func (s *Server) Listeners() []*Listener { return s.listeners }

// Start opens every listener and starts accepting. When one cannot be
// opened, the ones already open are closed and the error names the listener.
func (s *Server) Start() error {
	for i, l := range s.listeners {
		if err := l.open(); err != nil {
			for _, o := range s.listeners[:i] {
				o.closeSockets()
			}
			return fmt.Errorf("listener %q: %w", l.cfg.Name, err)
		}
	}
	for _, l := range s.listeners {
		l.serve()
	}
	return nil
}

// Shutdown stops accepting, lets open connections finish until ctx is
// done, then closes the rest and waits for every goroutine to end.
func (s *Server) Shutdown(ctx context.Context) {
	for _, l := range s.listeners {
		l.closeSockets()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	for _, l := range s.listeners {
		l.closeSessions()
	}
	<-done
}

// gate is a counting cap that pauses accepting at its limit.
type gate struct{ slots chan struct{} }

func newGate(n int) *gate { return &gate{slots: make(chan struct{}, n)} }

// acquire blocks until a slot is free or stop is closed.
func (g *gate) acquire(stop <-chan struct{}) bool {
	if g == nil {
		return true
	}
	select {
	case g.slots <- struct{}{}:
		return true
	case <-stop:
		return false
	}
}

func (g *gate) release() {
	if g != nil {
		<-g.slots
	}
}

// backoff is the pause after a failed accept (EMFILE, ENFILE, ENOBUFS):
// doubling from 5ms to 1s so a starved process neither spins nor stalls.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	switch {
	case b.d == 0:
		b.d = 5 * time.Millisecond
	case b.d < time.Second:
		b.d *= 2
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
