package admin

import (
	"errors"
	"net/netip"
	"strconv"
	"time"
)

// Controller is everything the admin API may read or change: a narrow
// view of the running balancer (STYLE practice 9). The admin package never
// touches the proxy, the clusters or the configuration directly; an
// adapter (internal/control) implements this over them.
//
// Every method is called concurrently from HTTP handlers and must be safe
// for that. Reads return snapshots: documents the handler may keep and
// encode after the call. Errors wrap one of the sentinels below (ErrNotFound,
// ErrInvalid, ErrConflict, ErrUnsupported) or are a *ReloadError; anything
// else is answered as an internal error.
type Controller interface {
	// Status describes the process: version and start time.
	Status() Status
	// Clusters lists every cluster with its nodes, in configuration order.
	Clusters() []Cluster
	// Cluster returns one cluster (ErrNotFound when unknown).
	Cluster(name string) (Cluster, error)
	// Listeners lists every listener in configuration order.
	Listeners() []Listener

	// SetNodeState and SetNodeWeight change one node for the very next
	// connection; the change holds until a reload changes that same key in
	// the file (DESIGN F8). state is "green", "yellow" or "red".
	SetNodeState(cluster, node, state string) error
	SetNodeWeight(cluster, node string, weight int) error
	// AddNode adds a node to a running cluster; RemoveNode removes one
	// (its open connections continue).
	AddNode(cluster string, n NodeSpec) error
	RemoveNode(cluster, node string) error
	// SwitchListener points a listener at another cluster: new connections
	// go there, open ones stay where they are.
	SwitchListener(listener, cluster string) error
	// Reload reloads the configuration file exactly as SIGHUP does. A file
	// that does not validate changes nothing and yields a *ReloadError.
	Reload() error

	// Affinity returns the client record for ip; ForgetAffinity drops it.
	Affinity(ip netip.Addr) (AffinityRecord, error)
	ForgetAffinity(ip netip.Addr) error
	// Bans lists banned clients; LiftBan lifts one ban.
	Bans() ([]Ban, error)
	LiftBan(ip netip.Addr) error
}

var (
	// ErrNotFound: the named cluster, node, listener or record does not
	// exist (404).
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request is well-formed but a value is refused (400).
	ErrInvalid = errors.New("invalid")
	// ErrConflict: the change contradicts the running state, e.g. adding a
	// node whose name is taken or removing a cluster's last node (409).
	ErrConflict = errors.New("conflict")
	// ErrUnsupported: the feature exists in the API but not (yet) in this
	// balancer (501).
	ErrUnsupported = errors.New("not implemented")
)

// ReloadError is a rejected reload: the running configuration is
// unchanged. Problems are the individual messages, "FILE:LINE: message"
// for problems in the file.
type ReloadError struct {
	Problems []string
}

func (e *ReloadError) Error() string {
	if len(e.Problems) == 1 {
		return "reload rejected: " + e.Problems[0]
	}
	return "reload rejected: " + strconv.Itoa(len(e.Problems)) + " problems"
}

// Status describes the running process. The Controller fills Version and
// Started; the admin server adds the process figures it measures itself.
type Status struct {
	XMLName       struct{}  `json:"-" xml:"status"`
	Version       string    `json:"version" xml:"version"`
	Started       time.Time `json:"started" xml:"started"`
	UptimeSeconds float64   `json:"uptime_seconds" xml:"uptime_seconds"`
	Goroutines    int       `json:"goroutines" xml:"goroutines"`
	RSSBytes      int64     `json:"rss_bytes" xml:"rss_bytes"`
	OpenFDs       int       `json:"open_fds" xml:"open_fds"`
}
