package proxy

import (
	"context"
	"net/netip"
	"time"

	"github.com/protobalance/protobalance/internal/affinity"
	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
)

// tablePlan is one affinity table a configuration needs: the group (or
// the cluster, when it names no group) and the clusters sharing it.
type tablePlan struct {
	name     string
	opts     affinity.Options
	clusters []*cluster.Cluster
}

// planAffinity validates the affinity tables of a set of cluster versions
// and opens the store on first need ([store] path, and redis when set).
// It changes no table: applyAffinity does, once nothing can fail.
func (s *Server) planAffinity(cfg *config.Config, clusters map[string]*cluster.Cluster) ([]tablePlan, error) {
	var plans []tablePlan
	index := map[string]int{}
	var opts [][]affinity.Options
	for _, cc := range cfg.Clusters {
		if !cc.Affinity {
			continue
		}
		name := cc.AffinityGroup
		if name == "" {
			name = cc.Name
		}
		i, ok := index[name]
		if !ok {
			i = len(plans)
			index[name] = i
			plans = append(plans, tablePlan{name: name})
			opts = append(opts, nil)
		}
		plans[i].clusters = append(plans[i].clusters, clusters[cc.Name])
		opts[i] = append(opts[i], affinity.Options{MaskV4: cc.AffinityMaskV4, MaskV6: cc.AffinityMaskV6,
			TTL: cc.AffinityTTL, Max: cc.AffinityMax})
	}
	for i := range plans {
		o, err := affinity.GroupOptions(plans[i].name, opts[i]...)
		if err != nil {
			return nil, err
		}
		plans[i].opts = o
	}
	if len(plans) > 0 && s.aff == nil {
		m, err := affinity.Open(affinity.Config{Path: cfg.Store.Path, Redis: cfg.Store.Redis, Log: s.log})
		if err != nil {
			return nil, err
		}
		s.aff = m
		s.log.Info("affinity store open", "path", cfg.Store.Path, "redis", cfg.Store.Redis != "")
	}
	return plans, nil
}

// applyAffinity gives each planned cluster its view of its table, creating
// and restoring tables on first use. A record naming a node that this
// cluster lacks is a miss here, unless no cluster of the group has that
// node any more (then the client's record follows it to its new node).
func (s *Server) applyAffinity(plans []tablePlan) {
	for _, p := range plans {
		t, err := s.aff.Table(p.name, p.opts)
		if err != nil {
			s.log.Error("affinity table unavailable; clusters run without affinity", "table", p.name, "err", err)
			continue
		}
		inGroup := map[string]bool{}
		for _, c := range p.clusters {
			for _, n := range c.Nodes {
				inGroup[n.Name] = true
			}
		}
		for _, c := range p.clusters {
			if len(p.clusters) == 1 {
				c.Affinity = t.View(nil)
				continue
			}
			own := make(map[string]bool, len(c.Nodes))
			for _, n := range c.Nodes {
				own[n.Name] = true
			}
			c.Affinity = t.View(func(node string) bool { return own[node] || !inGroup[node] })
		}
	}
}

// lookupAffinity returns the node the client's record names, if any: the
// local table, then (shared mode) Redis once, briefly.
func (s *Server) lookupAffinity(c *cluster.Cluster, client netip.Addr, now time.Time) string {
	if c.Affinity == nil {
		return ""
	}
	node, ok := s.aff.LookupShared(context.Background(), c.Affinity, client, now)
	if !ok {
		return ""
	}
	return node
}

// closeAffinity flushes and closes the store, after the last connection.
func (s *Server) closeAffinity() {
	if s.aff == nil {
		return
	}
	if err := s.aff.Close(); err != nil {
		s.log.Error("closing the affinity store", "err", err)
	}
}

// DetachStore flushes and closes the affinity store (bbolt file, Redis)
// while the server keeps running: a binary upgrade calls it before the new
// process starts, which opens the file itself and cannot while it is
// locked. The tables stay in memory and keep serving; what they learn from
// now on is neither persisted nor shared. It reports whether a store was
// open (false on a second call). Shutdown closes nothing more.
func (s *Server) DetachStore() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aff == nil || s.detached {
		return false
	}
	s.detached = true
	s.closeAffinity()
	return true
}

// AffinityRecord is a client's record in one affinity table.
type AffinityRecord struct {
	Table    string // the affinity group, else the cluster
	Clusters []string
	affinity.Entry
}

// AffinityOf returns client's records, one per affinity table holding one.
func (s *Server) AffinityOf(client netip.Addr) []AffinityRecord {
	var out []AffinityRecord
	for t, clusters := range s.affinityTables() {
		if e, ok := t.Get(client); ok {
			out = append(out, AffinityRecord{Table: t.Name(), Clusters: clusters, Entry: e})
		}
	}
	return out
}

// ForgetAffinity removes client's records from every table and reports
// how many there were: its next connection is placed by the algorithm.
func (s *Server) ForgetAffinity(client netip.Addr) int {
	n := 0
	for t := range s.affinityTables() {
		if t.Forget(client) {
			n++
		}
	}
	if n > 0 {
		s.log.Info("affinity record forgotten", "client", client, "tables", n)
	}
	return n
}

// affinityTables maps the current clusters' tables to their clusters.
func (s *Server) affinityTables() map[*affinity.Table][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[*affinity.Table][]string{}
	for _, cc := range s.cfg.Clusters {
		if c := s.clusters[cc.Name]; c != nil && c.Affinity != nil {
			t := c.Affinity.Table()
			out[t] = append(out[t], c.Name)
		}
	}
	return out
}
