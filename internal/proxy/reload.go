package proxy

import (
	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
)

// Apply replaces the running configuration with cfg, in process and
// without dropping an established connection (F8):
//   - clusters are rebuilt; nodes with the same name and address keep their
//     live state (connections, statistics, availability), and a weight or
//     state changed at run time holds unless the file changed that key;
//   - listeners with an unchanged bind keep their sockets and take the new
//     settings; new or rebound listeners are opened before anything
//     changes, so a port that cannot be bound rejects the whole reload;
//   - removed listeners stop accepting; their open connections continue,
//     as do connections to removed nodes.
//
// A listener pointed at another cluster at run time stays there unless the
// file changes its cluster key (or that cluster is gone). On error nothing
// has changed. maxConns is the new effective global cap (0 = none).
func (s *Server) Apply(cfg *config.Config, maxConns int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clusters, err := buildClusters(cfg, s.clusters)
	if err != nil {
		return err
	}
	old := make(map[string]*Listener, len(s.listeners))
	for _, l := range s.listeners {
		old[l.Name()] = l
	}
	var next, opened []*Listener
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		if l := old[lc.Name]; l != nil && l.sameBind(lc.Bind) {
			next = append(next, l)
			continue
		}
		l := newListener(s, lc, clusters[lc.Cluster])
		next = append(next, l)
		opened = append(opened, l)
	}
	if s.started {
		if err := openAll(opened); err != nil {
			return err
		}
	}

	// Commit: nothing below fails.
	for i, l := range next {
		lc := &cfg.Listeners[i]
		if o := old[lc.Name]; o == l {
			l.cluster.Store(s.clusterFor(l, lc, clusters))
			l.settings.Store(&listenerSettings{cfg: *lc})
			l.cap.setLimit(lc.MaxConns)
			delete(old, lc.Name)
		}
	}
	for _, l := range old { // removed or rebound
		l.closeSockets()
		s.retired = append(s.retired, l)
	}
	s.global.setLimit(maxConns)
	s.cfg, s.clusters, s.listeners = cfg, clusters, next
	if s.started {
		for _, l := range opened {
			l.serve()
		}
	}
	s.log.Info("configuration applied", "listeners", len(next), "clusters", len(clusters),
		"opened", len(opened), "retired", len(old))
	return nil
}

// clusterFor is the cluster a kept listener points at after a reload: the
// new version of the cluster it points at now, unless the file changed the
// listener's cluster key or that cluster is gone.
func (s *Server) clusterFor(l *Listener, lc *config.Listener, clusters map[string]*cluster.Cluster) *cluster.Cluster {
	name := l.Cluster().Name
	if was := s.cfg.Listener(lc.Name); was != nil && was.Cluster != lc.Cluster {
		name = lc.Cluster
	}
	if c := clusters[name]; c != nil {
		return c
	}
	return clusters[lc.Cluster]
}

// Config is the configuration the server runs.
func (s *Server) Config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}
