// Package proxy accepts client connections, chooses a node for each,
// dials it (falling over down the chain when a dial fails) and hands the
// pair to a relay.Relay that moves the bytes.
package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/protobalance/protobalance/internal/affinity"
	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/guard"
	"github.com/protobalance/protobalance/internal/health"
	"github.com/protobalance/protobalance/internal/relay"
)

// Server runs the listeners and clusters of a configuration, which Apply
// replaces on the fly. Create it with New, start it with Start, stop it with
// Shutdown.
type Server struct {
	log    *slog.Logger
	relay  relay.Relay
	listen func(network, addr string) (net.Listener, error) // Options.Listen
	// global caps the process's concurrent connections (F13).
	global *gate
	// fdPause holds accepts back while descriptors are short.
	fdPause fdPause

	mu        sync.Mutex // serialises Start, Apply and Shutdown; guards the fields below
	cfg       *config.Config
	clusters  map[string]*cluster.Cluster
	listeners []*Listener // in configuration order
	retired   []*Listener // removed by a reload; their sessions may still run
	started   bool

	aff      *affinity.Manager // opened when a cluster first needs affinity
	detached bool              // DetachStore closed aff
	dispatch *dispatchers
	quit     chan struct{} // closed by Shutdown
	// dataPath is "loop" or "goroutine"; loops run from Start on the
	// event-loop data path.
	dataPath string
	loops    *loops

	wg sync.WaitGroup // one per session, accept loop and dispatch worker
}

// Options are the process-level choices New does not find in the config.
type Options struct {
	Log   *slog.Logger
	Relay relay.Relay
	// MaxConns is the effective [global] max_conns (already derived from
	// the descriptor limit when the config says 0); 0 = no cap.
	MaxConns int
	// Listen, when set, opens every listening socket (one per port, network
	// "tcp", addr "host:port" as in the configuration) in place of
	// net.ListenConfig: `protobalance run` passes tableflip's, which hands
	// the sockets over at a binary upgrade. It must return a
	// *net.TCPListener. The hook may keep its own copy of each socket: a
	// listener that a reload removes or rebinds is therefore shut down
	// (it stops listening for every copy) rather than only closed.
	Listen func(network, addr string) (net.Listener, error)
	// DataPath overrides [global] data_path ("auto", "loop", "goroutine").
	DataPath string
}

// New builds the clusters and listeners of cfg without opening sockets.
func New(cfg *config.Config, opt Options) (*Server, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Relay == nil {
		return nil, errors.New("proxy: no relay")
	}
	dp, err := chooseDataPath(cmp.Or(opt.DataPath, cfg.Global.DataPath))
	if err != nil {
		return nil, err
	}
	s := &Server{log: opt.Log, relay: opt.Relay, listen: opt.Listen, cfg: cfg, quit: make(chan struct{}), dataPath: dp}
	s.dispatch = newDispatchers(s.quit, &s.wg)
	s.global = newGate(max(opt.MaxConns, 0))
	clusters, err := buildClusters(cfg, nil, opt.Log)
	if err != nil {
		return nil, err
	}
	s.clusters = clusters
	guards, err := buildGuards(cfg, opt.Log)
	if err != nil {
		return nil, err
	}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		s.listeners = append(s.listeners, newListener(s, lc, guards[i], clusters[lc.Cluster]))
	}
	return s, nil
}

// buildGuards builds each listener's abuse guard (reading allow_file and
// deny_file: a bad line is an error naming file and line).
func buildGuards(cfg *config.Config, log *slog.Logger) ([]*guard.Guard, error) {
	out := make([]*guard.Guard, len(cfg.Listeners))
	for i := range cfg.Listeners {
		g, err := guard.New(&cfg.Listeners[i], log.With("listener", cfg.Listeners[i].Name))
		if err != nil {
			return nil, err
		}
		out[i] = g
	}
	return out, nil
}

// buildClusters builds every cluster of cfg, carrying nodes over from prev.
func buildClusters(cfg *config.Config, prev map[string]*cluster.Cluster, log *slog.Logger) (map[string]*cluster.Cluster, error) {
	if err := checkSources(cfg); err != nil {
		return nil, err
	}
	out := make(map[string]*cluster.Cluster, len(cfg.Clusters))
	for i := range cfg.Clusters {
		c, err := cluster.New(&cfg.Clusters[i], prev[cfg.Clusters[i].Name], log)
		if err != nil {
			return nil, err
		}
		out[c.Name] = c
	}
	for _, lc := range cfg.Listeners {
		if out[lc.Cluster] == nil {
			return nil, fmt.Errorf("listener %q: unknown cluster %q", lc.Name, lc.Cluster)
		}
	}
	return out, nil
}

// Cluster returns the current version of the named cluster, or nil.
func (s *Server) Cluster(name string) *cluster.Cluster {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clusters[name]
}

// Clusters returns the current cluster versions in configuration order.
func (s *Server) Clusters() []*cluster.Cluster {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*cluster.Cluster, 0, len(s.cfg.Clusters))
	for _, c := range s.cfg.Clusters {
		out = append(out, s.clusters[c.Name])
	}
	return out
}

// Listeners returns the server's listeners in configuration order.
func (s *Server) Listeners() []*Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.listeners)
}

// Listener returns the named listener, or nil.
func (s *Server) Listener(name string) *Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.Name() == name {
			return l
		}
	}
	return nil
}

// SwitchListener points the named listener at the named cluster (the
// controller deployment): new connections go there, open ones stay.
func (s *Server) SwitchListener(listener, clusterName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clusters[clusterName]
	if c == nil {
		return fmt.Errorf("%w: cluster %q", ErrNotFound, clusterName)
	}
	for _, l := range s.listeners {
		if l.Name() == listener {
			l.cluster.Store(c)
			s.log.Info("listener switched", "listener", listener, "cluster", clusterName)
			return nil
		}
	}
	return fmt.Errorf("%w: listener %q", ErrNotFound, listener)
}

// Start opens every listener and starts accepting. When one cannot be
// opened, the ones already open are closed and the error names the listener.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Affinity tables are restored before any listener opens.
	plans, err := s.planAffinity(s.cfg, s.clusters)
	if err != nil {
		return err
	}
	s.applyAffinity(plans)
	if s.dataPath == "loop" {
		if s.loops, err = newLoops(s, 0); err != nil {
			s.closeAffinity()
			return err
		}
		s.global.onFree = s.loops.resume
		for _, l := range s.listeners {
			l.cap.onFree = s.loops.resume
		}
	}
	if err := openAll(s.listeners); err != nil {
		s.closeAffinity()
		if s.loops != nil {
			s.loops.stop()
			s.loops = nil
		}
		return err
	}
	for _, l := range s.listeners {
		l.serve()
	}
	for _, c := range s.clusters {
		c.StartHealth()
	}
	s.started = true
	return nil
}

// swapHealth starts the checkers the new cluster versions brought and
// stops those no version uses any more.
func swapHealth(old, next map[string]*cluster.Cluster) {
	kept := make(map[*health.Checker]bool)
	for _, c := range next {
		kept[c.Health] = true
	}
	for _, c := range old {
		if c.Health != nil && !kept[c.Health] {
			c.Health.Stop()
		}
	}
	for _, c := range next {
		c.StartHealth()
	}
}

// openAll binds every listener or, on the first failure, none.
func openAll(ls []*Listener) error {
	for i, l := range ls {
		if err := l.open(); err != nil {
			for _, o := range ls[:i] {
				o.releaseSockets()
			}
			return fmt.Errorf("listener %q (%s): %w", l.Name(), l.settings.Load().cfg.Bind, err)
		}
	}
	return nil
}

// Shutdown stops accepting, lets open connections finish until ctx is
// done, then closes the rest and waits for every goroutine to end.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	all := append(slices.Clone(s.listeners), s.retired...)
	swapHealth(s.clusters, nil)
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	s.mu.Unlock()
	for _, l := range all {
		l.closeSockets()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, l := range all {
			l.closeSessions()
		}
		<-done
	}
	if s.loops != nil {
		s.loops.stop()
	}
	s.closeAffinity()
}

// backoff is the pause after a failed accept (EMFILE, ENFILE, ENOBUFS):
// doubling from first (5ms when unset) to 1s so a starved process neither
// spins nor stalls.
type backoff struct{ d, first time.Duration }

func (b *backoff) next() time.Duration {
	switch {
	case b.d == 0:
		b.d = cmp.Or(b.first, 5*time.Millisecond)
	default:
		b.d = min(2*b.d, time.Second)
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// DataPath is the data path the server runs: "loop" or "goroutine".
func (s *Server) DataPath() string { return s.dataPath }

// autoLoops makes "auto" choose the event loops where available.
const autoLoops = true

// chooseDataPath resolves a data_path setting for this platform.
func chooseDataPath(want string) (string, error) {
	switch want {
	case "", "auto":
		if loopsAvailable && autoLoops {
			return "loop", nil
		}
		return "goroutine", nil
	case "loop":
		if !loopsAvailable {
			return "", errors.New("data_path = \"loop\": the event loops need Linux; use \"goroutine\" or \"auto\"")
		}
		return "loop", nil
	case "goroutine":
		return "goroutine", nil
	}
	return "", fmt.Errorf("data_path %q: must be one of auto, loop, goroutine", want)
}
