// Package control adapts the running balancer (*proxy.Server plus the
// reload function that SIGHUP uses) to the admin API's Controller
// interface. It translates between the admin documents and the proxy,
// cluster and config types, and maps their errors onto admin's sentinels.
package control

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/adminstate"
	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/proxy"
)

var _ admin.Controller = (*Controller)(nil)

// Controller implements admin.Controller over a running proxy.Server. Its
// methods are safe for concurrent use; changes are serialised, so two API
// requests never interleave their checks and edits.
type Controller struct {
	srv     *proxy.Server
	reload  func() error
	started time.Time
	version string
	state   *adminstate.State // nil: run-time changes are not persisted

	mu sync.Mutex // serialises changes (node edits, switches, reloads)
}

// Options are the parts of the process the Controller reports or calls.
type Options struct {
	// Reload reloads the configuration file, the same function SIGHUP
	// calls; nil answers POST /api/reload with 501.
	Reload func() error
	// Started is the process start time (uptime and per-second figures);
	// zero means now.
	Started time.Time
	Version string
	// State persists node states, weights and listener switches made
	// through the API across restarts; nil keeps them in memory only.
	State *adminstate.State
}

// New returns a Controller over srv.
func New(srv *proxy.Server, opt Options) *Controller {
	if opt.Started.IsZero() {
		opt.Started = time.Now()
	}
	return &Controller{srv: srv, reload: opt.Reload, started: opt.Started, version: opt.Version, state: opt.State}
}

// Status implements admin.Controller.
func (c *Controller) Status() admin.Status {
	return admin.Status{Version: c.version, Started: c.started}
}

// Clusters implements admin.Controller.
func (c *Controller) Clusters() []admin.Cluster {
	cs := c.srv.Clusters()
	out := make([]admin.Cluster, 0, len(cs))
	for _, cl := range cs {
		out = append(out, clusterDoc(cl))
	}
	return out
}

// Cluster implements admin.Controller.
func (c *Controller) Cluster(name string) (admin.Cluster, error) {
	cl := c.srv.Cluster(name)
	if cl == nil {
		return admin.Cluster{}, fmt.Errorf("%w: no cluster %q", admin.ErrNotFound, name)
	}
	return clusterDoc(cl), nil
}

func clusterDoc(cl *cluster.Cluster) admin.Cluster {
	d := admin.Cluster{Name: cl.Name, Algorithm: cl.Config.Algorithm, Affinity: cl.Config.Affinity,
		Nodes: make([]admin.Node, 0, len(cl.Nodes))}
	if cl.Affinity != nil {
		size := cl.Affinity.Table().Len()
		d.AffinitySize = &size
	}
	for i, n := range cl.Nodes {
		nc := cl.Config.Nodes[i]
		checkErr := ""
		if cl.Health != nil {
			if st, ok := cl.Health.Status(n.Name); ok {
				checkErr = st.LastErr
			}
		}
		d.Nodes = append(d.Nodes, admin.Node{
			CheckError:  checkErr,
			Name:        n.Name,
			Address:     nc.Address(),
			State:       n.State().String(),
			Available:   n.Available(),
			Weight:      n.Weight(),
			Fallover:    cl.Fallover(i),
			Standby:     nc.Standby,
			MaxConns:    nc.MaxConns,
			Active:      n.Stats.Active.Load(),
			Total:       n.Stats.Total.Load(),
			Failures:    n.Stats.Failures.Load(),
			MarkedDown:  n.Stats.MarkedDown.Load(),
			FallIns:     n.Stats.FallIns.Load(),
			BytesIn:     n.Stats.BytesIn.Load(),
			BytesOut:    n.Stats.BytesOut.Load(),
			ConnRate:    n.Stats.ConnRate.Value(),
			TrafficRate: n.Stats.TrafficRate.Value(),
			ConnectMS:   n.Stats.ConnectMS.Value(),
		})
	}
	return d
}

// Listeners implements admin.Controller.
func (c *Controller) Listeners() []admin.Listener {
	ls := c.srv.Listeners()
	out := make([]admin.Listener, 0, len(ls))
	for _, l := range ls {
		d := admin.Listener{Name: l.Name(), Bind: l.Bind().String(), Cluster: l.Cluster().Name,
			Accepted: l.Stats.Accepted.Load(), Active: l.Stats.Active.Load(),
			NoNode: l.Stats.NoNode.Load(), Refused: l.Stats.Refused.Load(),
			NoSourcePort: l.Stats.NoSourcePort.Load(), BadProxyHeader: l.Stats.BadProxyHeader.Load(), Addrs: []string{}}
		g := l.Guard().Counters()
		d.Guard = admin.GuardCounts{Deny: g.Deny, Rate: g.Rate, Ban: g.Ban, Concurrency: g.Concurrency}
		for _, a := range l.Addrs() {
			d.Addrs = append(d.Addrs, a.String())
		}
		out = append(out, d)
	}
	return out
}

// node finds a node of the current version of a cluster.
func (c *Controller) node(clusterName, name string) (*cluster.Node, error) {
	cl := c.srv.Cluster(clusterName)
	if cl == nil {
		return nil, fmt.Errorf("%w: no cluster %q", admin.ErrNotFound, clusterName)
	}
	n, _ := cl.Node(name)
	if n == nil {
		return nil, fmt.Errorf("%w: cluster %q has no node %q", admin.ErrNotFound, clusterName, name)
	}
	return n, nil
}

// SetNodeState implements admin.Controller. The node is changed in place:
// a reload carries the same node over and keeps the state unless the file
// changed that node's state key.
func (c *Controller) SetNodeState(clusterName, name, state string) error {
	st, err := cluster.ParseState(state)
	if err != nil {
		return fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.node(clusterName, name)
	if err != nil {
		return err
	}
	n.SetState(st)
	return c.persist(adminstate.Override{Kind: "state", Cluster: clusterName, Node: name, Value: st.String()})
}

// persist keeps a change made through the API across restarts. The change
// is in force either way; a failure to save it is reported.
func (c *Controller) persist(o adminstate.Override) error {
	if err := c.state.Record(c.srv.Config(), o); err != nil {
		return fmt.Errorf("applied, but not saved for the next start: %w", err)
	}
	return nil
}

// SetNodeWeight implements admin.Controller (in place, like SetNodeState).
func (c *Controller) SetNodeWeight(clusterName, name string, weight int) error {
	if weight < 0 {
		return fmt.Errorf("%w: weight %d: must be >= 0", admin.ErrInvalid, weight)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.node(clusterName, name)
	if err != nil {
		return err
	}
	n.SetWeight(weight)
	return c.persist(adminstate.Override{Kind: "weight", Cluster: clusterName, Node: name, Value: strconv.Itoa(weight)})
}

// AddNode implements admin.Controller: the node is validated like a
// [[cluster.node]] table (config.NodeFromAPI), then checked against the
// running cluster (unique name, existing fall-over node).
func (c *Controller) AddNode(clusterName string, spec admin.NodeSpec) error {
	n, err := config.NodeFromAPI(config.APINode{Name: spec.Name, Address: spec.Address, Weight: spec.Weight,
		Fallover: spec.Fallover, Standby: spec.Standby, MaxConns: spec.MaxConns, State: spec.State})
	if err != nil {
		return fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.srv.Cluster(clusterName)
	if cl == nil {
		return fmt.Errorf("%w: no cluster %q", admin.ErrNotFound, clusterName)
	}
	if old, _ := cl.Node(n.Name); old != nil {
		return fmt.Errorf("%w: cluster %q already has a node %q", admin.ErrConflict, clusterName, n.Name)
	}
	if n.Fallover != "" {
		if fo, _ := cl.Node(n.Fallover); fo == nil {
			return fmt.Errorf("%w: fallover %q: cluster %q has no such node", admin.ErrInvalid, n.Fallover, clusterName)
		}
	}
	return mapProxyErr(c.srv.AddNode(clusterName, n))
}

// RemoveNode implements admin.Controller.
func (c *Controller) RemoveNode(clusterName, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.srv.Cluster(clusterName)
	if cl == nil {
		return fmt.Errorf("%w: no cluster %q", admin.ErrNotFound, clusterName)
	}
	if n, _ := cl.Node(name); n == nil {
		return fmt.Errorf("%w: cluster %q has no node %q", admin.ErrNotFound, clusterName, name)
	}
	if len(cl.Nodes) == 1 {
		return fmt.Errorf("%w: cluster %q: cannot remove its last node", admin.ErrConflict, clusterName)
	}
	return mapProxyErr(c.srv.RemoveNode(clusterName, name))
}

// SwitchListener implements admin.Controller.
func (c *Controller) SwitchListener(listener, clusterName string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv.Listener(listener) == nil {
		return fmt.Errorf("%w: no listener %q", admin.ErrNotFound, listener)
	}
	if c.srv.Cluster(clusterName) == nil {
		// A 400, not a 404: the resource addressed (the listener) exists.
		return fmt.Errorf("%w: no cluster %q to switch listener %q to", admin.ErrInvalid, clusterName, listener)
	}
	if err := c.srv.SwitchListener(listener, clusterName); err != nil {
		return mapProxyErr(err)
	}
	return c.persist(adminstate.Override{Kind: "listener", Listener: listener, Value: clusterName})
}

// Reload implements admin.Controller: the same function as SIGHUP. A file
// that does not validate is reported problem by problem (FILE:LINE:
// message); any other failure (a port that cannot be bound) as one.
func (c *Controller) Reload() error {
	if c.reload == nil {
		return fmt.Errorf("%w: this process has no configuration file to reload", admin.ErrUnsupported)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.reload()
	if err == nil {
		return nil
	}
	var errs config.Errors
	if errors.As(err, &errs) {
		re := &admin.ReloadError{}
		for _, e := range errs {
			re.Problems = append(re.Problems, e.Error())
		}
		return re
	}
	return &admin.ReloadError{Problems: []string{err.Error()}}
}

// mapProxyErr maps proxy errors onto admin's sentinels.
func mapProxyErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, proxy.ErrNotFound):
		return fmt.Errorf("%w: %v", admin.ErrNotFound, err)
	}
	return err
}

// Affinity implements admin.Controller: the client's record (the first
// table holding one, in configuration order of its clusters).
func (c *Controller) Affinity(ip netip.Addr) (admin.AffinityRecord, error) {
	if err := c.noAffinity(); err != nil {
		return admin.AffinityRecord{}, err
	}
	recs := c.srv.AffinityOf(ip)
	if len(recs) == 0 {
		return admin.AffinityRecord{}, fmt.Errorf("%w: no affinity record for %s", admin.ErrNotFound, ip)
	}
	r := recs[0]
	return admin.AffinityRecord{Client: r.Prefix.String(), Cluster: strings.Join(r.Clusters, ","), Node: r.Node,
		LastSeen: r.LastSeen.UTC().Format(time.RFC3339)}, nil
}

// ForgetAffinity implements admin.Controller: the record is removed from
// every table (and, in shared mode, from Redis at the next flush).
func (c *Controller) ForgetAffinity(ip netip.Addr) error {
	if err := c.noAffinity(); err != nil {
		return err
	}
	if c.srv.ForgetAffinity(ip) == 0 {
		return fmt.Errorf("%w: no affinity record for %s", admin.ErrNotFound, ip)
	}
	return nil
}

// noAffinity is the error when no cluster keeps affinity records.
func (c *Controller) noAffinity() error {
	for _, cl := range c.srv.Config().Clusters {
		if cl.Affinity {
			return nil
		}
	}
	return fmt.Errorf("%w: no cluster has affinity enabled", admin.ErrNotFound)
}

// Bans implements admin.Controller: the running bans of every listener.
func (c *Controller) Bans() ([]admin.Ban, error) {
	if err := c.noBans(); err != nil {
		return nil, err
	}
	now := time.Now()
	out := []admin.Ban{}
	for _, l := range c.srv.Listeners() {
		for _, b := range l.Guard().Bans(now) {
			out = append(out, admin.Ban{Client: b.Client.String(), Listener: l.Name(),
				Until: b.Until.UTC().Format(time.RFC3339)})
		}
	}
	return out, nil
}

// LiftBan implements admin.Controller: the client's ban is lifted on every
// listener that holds one.
func (c *Controller) LiftBan(ip netip.Addr) error {
	if err := c.noBans(); err != nil {
		return err
	}
	lifted := 0
	for _, l := range c.srv.Listeners() {
		if l.Guard().Lift(ip) {
			lifted++
		}
	}
	if lifted == 0 {
		return fmt.Errorf("%w: %s is not banned", admin.ErrNotFound, ip)
	}
	return nil
}

// noBans is the error when no listener bans clients.
func (c *Controller) noBans() error {
	for _, l := range c.srv.Config().Listeners {
		if l.MaxConnRate > 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: no listener bans clients (max_conn_rate is 0 everywhere)", admin.ErrNotFound)
}
