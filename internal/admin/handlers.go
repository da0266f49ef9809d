package admin

import (
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"time"
)

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	writeDoc(w, r, http.StatusOK, s.status())
}

// status is the Controller's Status with the process figures measured here.
func (s *Server) status() Status {
	st := s.ctl.Status()
	if !st.Started.IsZero() {
		st.UptimeSeconds = time.Since(st.Started).Seconds()
	}
	st.Goroutines = runtime.NumGoroutine()
	st.RSSBytes = residentBytes()
	st.OpenFDs = openFDs()
	return st
}

func (s *Server) getClusters(w http.ResponseWriter, r *http.Request) {
	writeDoc(w, r, http.StatusOK, ClusterList{Clusters: s.ctl.Clusters()})
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	c, err := s.ctl.Cluster(r.PathValue("cluster"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeDoc(w, r, http.StatusOK, c)
}

// nodeDoc wraps a Node as its own XML document (<node>).
type nodeDoc struct {
	XMLName struct{} `json:"-" xml:"node"`
	Node
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.node(r.PathValue("cluster"), r.PathValue("node"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeDoc(w, r, http.StatusOK, nodeDoc{Node: n})
}

func (s *Server) node(cluster, name string) (Node, error) {
	c, err := s.ctl.Cluster(cluster)
	if err != nil {
		return Node{}, err
	}
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("%w: cluster %q has no node %q", ErrNotFound, cluster, name)
}

// putNode changes a node's state and/or weight. The body is checked whole
// before anything changes; with both keys the weight is set first, so
// {"state": "green", "weight": 2} never lets traffic in at the old weight.
func (s *Server) putNode(w http.ResponseWriter, r *http.Request) {
	cl, name := r.PathValue("cluster"), r.PathValue("node")
	var u NodeUpdate
	if err := decodeBody(w, r, &u); err != nil {
		writeError(w, r, err)
		return
	}
	if err := u.check(); err != nil {
		writeError(w, r, err)
		return
	}
	if _, err := s.node(cl, name); err != nil {
		writeError(w, r, err)
		return
	}
	var done []string
	if u.Weight != nil {
		if err := s.ctl.SetNodeWeight(cl, name, *u.Weight); err != nil {
			writeError(w, r, err)
			return
		}
		s.changed(r, "node weight set", "cluster", cl, "node", name, "weight", *u.Weight)
		done = append(done, fmt.Sprintf("weight %d", *u.Weight))
	}
	if u.State != nil {
		if err := s.ctl.SetNodeState(cl, name, *u.State); err != nil {
			writeError(w, r, err)
			return
		}
		s.changed(r, "node state set", "cluster", cl, "node", name, "state", *u.State)
		done = append(done, "state "+*u.State)
	}
	s.result(w, r, http.StatusOK, "cluster %q: node %q: %s", cl, name, joinAnd(done))
}

// check validates a NodeUpdate without looking at the running cluster.
func (u *NodeUpdate) check() error {
	if u.State == nil && u.Weight == nil {
		return errorf(http.StatusBadRequest, "bad_request", `expected "state" and/or "weight"`)
	}
	if u.State != nil {
		switch *u.State {
		case "green", "yellow", "red":
		default:
			return errorf(http.StatusBadRequest, "bad_request", "state %q: must be green, yellow or red", *u.State)
		}
	}
	if u.Weight != nil && (*u.Weight < 0 || *u.Weight > maxWeight) {
		return errorf(http.StatusBadRequest, "bad_request", "weight %d: must be between 0 and %d", *u.Weight, maxWeight)
	}
	return nil
}

// maxWeight bounds weights set through the API: node weights are held in
// 32 bits, and a cluster sums its slots' weights.
const maxWeight = 1 << 20

func (s *Server) postNode(w http.ResponseWriter, r *http.Request) {
	cl := r.PathValue("cluster")
	var n NodeSpec
	if err := decodeBody(w, r, &n); err != nil {
		writeError(w, r, err)
		return
	}
	if n.Weight != nil && *n.Weight > maxWeight {
		writeError(w, r, errorf(http.StatusBadRequest, "bad_request", "weight %d: must be at most %d", *n.Weight, maxWeight))
		return
	}
	if err := s.ctl.AddNode(cl, n); err != nil {
		writeError(w, r, err)
		return
	}
	s.changed(r, "node added", "cluster", cl, "node", n.Name, "address", n.Address)
	s.result(w, r, http.StatusCreated, "cluster %q: node %q added (%s)", cl, n.Name, n.Address)
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	cl, name := r.PathValue("cluster"), r.PathValue("node")
	if err := s.ctl.RemoveNode(cl, name); err != nil {
		writeError(w, r, err)
		return
	}
	s.changed(r, "node removed", "cluster", cl, "node", name)
	s.result(w, r, http.StatusOK, "cluster %q: node %q removed; its open connections continue", cl, name)
}

func (s *Server) getListeners(w http.ResponseWriter, r *http.Request) {
	writeDoc(w, r, http.StatusOK, ListenerList{Listeners: s.ctl.Listeners()})
}

func (s *Server) getListener(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("listener")
	for _, l := range s.ctl.Listeners() {
		if l.Name == name {
			writeDoc(w, r, http.StatusOK, l)
			return
		}
	}
	writeError(w, r, fmt.Errorf("%w: listener %q", ErrNotFound, name))
}

func (s *Server) putListener(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("listener")
	var u ListenerUpdate
	if err := decodeBody(w, r, &u); err != nil {
		writeError(w, r, err)
		return
	}
	if u.Cluster == "" {
		writeError(w, r, errorf(http.StatusBadRequest, "bad_request", `expected {"cluster": "NAME"}`))
		return
	}
	if err := s.ctl.SwitchListener(name, u.Cluster); err != nil {
		writeError(w, r, err)
		return
	}
	s.changed(r, "listener switched", "listener", name, "cluster", u.Cluster)
	s.result(w, r, http.StatusOK, "listener %q: new connections go to cluster %q", name, u.Cluster)
}

func (s *Server) postReload(w http.ResponseWriter, r *http.Request) {
	if err := s.ctl.Reload(); err != nil {
		s.log.Warn("admin: reload rejected", "via", "api", "remote", r.RemoteAddr, "err", err)
		writeError(w, r, err)
		return
	}
	s.changed(r, "configuration reloaded")
	s.result(w, r, http.StatusOK, "configuration reloaded")
}

// clientIP parses the {ip} path value.
func clientIP(r *http.Request) (netip.Addr, error) {
	a, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, errorf(http.StatusBadRequest, "bad_request", "%q is not an IP address", r.PathValue("ip"))
	}
	return a.Unmap(), nil
}

func (s *Server) getAffinity(w http.ResponseWriter, r *http.Request) {
	ip, err := clientIP(r)
	if err == nil {
		var rec AffinityRecord
		if rec, err = s.ctl.Affinity(ip); err == nil {
			writeDoc(w, r, http.StatusOK, rec)
			return
		}
	}
	writeError(w, r, err)
}

func (s *Server) deleteAffinity(w http.ResponseWriter, r *http.Request) {
	ip, err := clientIP(r)
	if err == nil {
		if err = s.ctl.ForgetAffinity(ip); err == nil {
			s.changed(r, "affinity forgotten", "client", ip.String())
			s.result(w, r, http.StatusOK, "client %s: affinity record removed", ip)
			return
		}
	}
	writeError(w, r, err)
}

func (s *Server) getBans(w http.ResponseWriter, r *http.Request) {
	bans, err := s.ctl.Bans()
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeDoc(w, r, http.StatusOK, BanList{Bans: bans})
}

func (s *Server) deleteBan(w http.ResponseWriter, r *http.Request) {
	ip, err := clientIP(r)
	if err == nil {
		if err = s.ctl.LiftBan(ip); err == nil {
			s.changed(r, "ban lifted", "client", ip.String())
			s.result(w, r, http.StatusOK, "client %s: ban lifted", ip)
			return
		}
	}
	writeError(w, r, err)
}

// changed logs an administrative change at info: what, through the API,
// from where.
func (s *Server) changed(r *http.Request, what string, attrs ...any) {
	s.log.Info(what, append([]any{"via", "api", "remote", r.RemoteAddr}, attrs...)...)
}

func (s *Server) result(w http.ResponseWriter, r *http.Request, status int, format string, args ...any) {
	writeDoc(w, r, status, Result{OK: true, Message: fmt.Sprintf(format, args...)})
}

func joinAnd(xs []string) string {
	switch len(xs) {
	case 0:
		return "unchanged"
	case 1:
		return xs[0]
	}
	return xs[0] + " and " + xs[1]
}
