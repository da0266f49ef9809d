package proxy

import (
	"errors"
	"fmt"
	"slices"

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
	clusters, err := buildClusters(cfg, s.clusters, s.log)
	if err != nil {
		return err
	}
	guards, err := buildGuards(cfg, s.log)
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
		l := newListener(s, lc, guards[i], clusters[lc.Cluster])
		next = append(next, l)
		opened = append(opened, l)
	}
	var plans []tablePlan
	if s.started {
		if plans, err = s.planAffinity(cfg, clusters); err != nil {
			return err
		}
		if err := openAll(opened); err != nil {
			return err
		}
	}
	s.applyAffinity(plans)

	// Commit: nothing below fails.
	for i, l := range next {
		lc := &cfg.Listeners[i]
		if o := old[lc.Name]; o == l {
			l.cluster.Store(s.clusterFor(l, lc, clusters))
			guards[i].CarryOver(l.Guard()) // bans and per-client counts survive
			l.settings.Store(&listenerSettings{cfg: *lc, guard: guards[i]})
			l.cap.setLimit(lc.MaxConns)
			delete(old, lc.Name)
		}
	}
	for _, l := range old { // removed or rebound
		l.releaseSockets()
		s.retired = append(s.retired, l)
	}
	s.global.setLimit(maxConns)
	if s.started {
		swapHealth(s.clusters, clusters)
	}
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

// ErrNotFound marks a run-time change naming an unknown listener, cluster
// or node.
var ErrNotFound = errors.New("not found")

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

// AddNode adds a node to the named cluster at run time (a new cluster
// version; nothing established is touched). The node must be valid: its
// name unique in the cluster, its fall-over naming an existing node. A
// reload from the file replaces the node set with the file's.
func (s *Server) AddNode(clusterName string, n config.Node) error {
	return s.editCluster(clusterName, func(c *config.Cluster) error {
		for _, o := range c.Nodes {
			if o.Name == n.Name {
				return fmt.Errorf("cluster %q already has a node %q", clusterName, n.Name)
			}
		}
		if n.Fallover != "" && !hasNode(c, n.Fallover) {
			return fmt.Errorf("fallover: cluster %q has no node %q", clusterName, n.Fallover)
		}
		c.Nodes = append(c.Nodes, n)
		return nil
	})
}

// RemoveNode removes a node from the named cluster at run time. Its open
// connections continue (set it red first to close them); fall-over links to
// it from other nodes are dropped.
func (s *Server) RemoveNode(clusterName, node string) error {
	return s.editCluster(clusterName, func(c *config.Cluster) error {
		if !hasNode(c, node) {
			return fmt.Errorf("%w: cluster %q has no node %q", ErrNotFound, clusterName, node)
		}
		if len(c.Nodes) == 1 {
			return fmt.Errorf("cluster %q: cannot remove its last node", clusterName)
		}
		kept := make([]config.Node, 0, len(c.Nodes)-1)
		for _, n := range c.Nodes {
			if n.Name == node {
				continue
			}
			if n.Fallover == node {
				n.Fallover = ""
			}
			kept = append(kept, n)
		}
		c.Nodes = kept
		return nil
	})
}

// editCluster applies edit to a copy of the named cluster's configuration
// and runs the result, leaving everything else as it is.
func (s *Server) editCluster(name string, edit func(*config.Cluster) error) error {
	s.mu.Lock()
	cfg := *s.cfg
	s.mu.Unlock()
	cfg.Clusters = slices.Clone(cfg.Clusters)
	c := cfg.Cluster(name)
	if c == nil {
		return fmt.Errorf("%w: cluster %q", ErrNotFound, name)
	}
	c.Nodes = slices.Clone(c.Nodes)
	if err := edit(c); err != nil {
		return err
	}
	return s.Apply(&cfg, s.global.limitNow())
}

func hasNode(c *config.Cluster, name string) bool {
	for _, n := range c.Nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}
