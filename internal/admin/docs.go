package admin

// The documents of the API. Each type carries json and xml tags so that
// one value answers both encodings: JSON by default, XML when the client
// sends Accept: application/xml. Field names are snake_case in both.

// ClusterList answers GET /api/clusters.
type ClusterList struct {
	XMLName  struct{}  `json:"-" xml:"clusters"`
	Clusters []Cluster `json:"clusters" xml:"cluster"`
}

// Cluster is one cluster with its nodes' live figures.
type Cluster struct {
	XMLName   struct{} `json:"-" xml:"cluster"`
	Name      string   `json:"name" xml:"name,attr"`
	Algorithm string   `json:"algorithm" xml:"algorithm,attr"`
	Affinity  bool     `json:"affinity" xml:"affinity,attr"`
	// AffinitySize is the number of records in the cluster's affinity
	// table (shared by its affinity_group), absent without affinity.
	AffinitySize *int   `json:"affinity_size,omitempty" xml:"affinity_size,omitempty"`
	Nodes        []Node `json:"nodes" xml:"node"`
}

// Node is one node's configuration and live figures.
type Node struct {
	Name      string `json:"name" xml:"name,attr"`
	Address   string `json:"address" xml:"address"`
	State     string `json:"state" xml:"state"` // green | yellow | red
	Available bool   `json:"available" xml:"available"`
	// CheckError is the last active health check's error ("" when it
	// passed, or without a check).
	CheckError string `json:"check_error,omitempty" xml:"check_error,omitempty"`
	Weight     int    `json:"weight" xml:"weight"`
	// Fallover names the node that stands in for this one ("" = none).
	Fallover string `json:"fallover" xml:"fallover"`
	Standby  bool   `json:"standby" xml:"standby"`
	MaxConns int    `json:"max_conns" xml:"max_conns"`

	Active   int64  `json:"active" xml:"active"`
	Total    uint64 `json:"total" xml:"total"`
	Failures uint64 `json:"failures" xml:"failures"`
	// MarkedDown counts the times the node was marked unavailable;
	// FallIns the connections it took by fall-over for another node.
	MarkedDown uint64 `json:"marked_down" xml:"marked_down"`
	FallIns    uint64 `json:"fall_ins" xml:"fall_ins"`
	BytesIn    uint64 `json:"bytes_in" xml:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out" xml:"bytes_out"`
	// ConnRate is new connections per second as the conn-rate policy
	// counts them (0 under other algorithms); TrafficRate is bytes per
	// second both ways; ConnectMS the moving average connect time.
	ConnRate    float64 `json:"conn_rate" xml:"conn_rate"`
	TrafficRate float64 `json:"traffic_rate" xml:"traffic_rate"`
	ConnectMS   float64 `json:"connect_ms" xml:"connect_ms"`
}

// ListenerList answers GET /api/listeners.
type ListenerList struct {
	XMLName   struct{}   `json:"-" xml:"listeners"`
	Listeners []Listener `json:"listeners" xml:"listener"`
}

// Listener is one listener, the cluster it sends clients to now, and its
// counters.
type Listener struct {
	XMLName  struct{} `json:"-" xml:"listener"`
	Name     string   `json:"name" xml:"name,attr"`
	Bind     string   `json:"bind" xml:"bind"`
	Addrs    []string `json:"addrs" xml:"addr"`
	Cluster  string   `json:"cluster" xml:"cluster"`
	Accepted uint64   `json:"accepted" xml:"accepted"`
	Active   int64    `json:"active" xml:"active"`
	NoNode   uint64   `json:"no_node" xml:"no_node"`
	Refused  uint64   `json:"refused" xml:"refused"`
	// NoSourcePort counts connections closed because a dial ran out of
	// local ports or descriptors.
	NoSourcePort uint64 `json:"no_source_port" xml:"no_source_port"`
	// BadProxyHeader counts connections of an accept_proxy listener closed
	// because their PROXY header was malformed, missing or late.
	BadProxyHeader uint64 `json:"bad_proxy_header" xml:"bad_proxy_header"`
	// Guard counts connections the abuse guard refused at accept, by
	// reason: deny (allow/deny lists), rate (the connection that started a
	// ban), ban (during a ban), concurrency (max_client_conns).
	Guard GuardCounts `json:"guard" xml:"guard"`
}

// GuardCounts are a listener's abuse-guard refusals by reason.
type GuardCounts struct {
	Deny        uint64 `json:"deny" xml:"deny"`
	Rate        uint64 `json:"rate" xml:"rate"`
	Ban         uint64 `json:"ban" xml:"ban"`
	Concurrency uint64 `json:"concurrency" xml:"concurrency"`
}

// Total is the sum over reasons.
func (g GuardCounts) Total() uint64 { return g.Deny + g.Rate + g.Ban + g.Concurrency }

// AffinityRecord answers GET /api/affinity/{ip}.
type AffinityRecord struct {
	XMLName  struct{} `json:"-" xml:"affinity"`
	Client   string   `json:"client" xml:"client"`
	Cluster  string   `json:"cluster" xml:"cluster"`
	Node     string   `json:"node" xml:"node"`
	LastSeen string   `json:"last_seen" xml:"last_seen"`
}

// BanList answers GET /api/bans.
type BanList struct {
	XMLName struct{} `json:"-" xml:"bans"`
	Bans    []Ban    `json:"bans" xml:"ban"`
}

// Ban is one banned client.
type Ban struct {
	Client   string `json:"client" xml:"client"`
	Listener string `json:"listener" xml:"listener"`
	Until    string `json:"until" xml:"until"`
}

// Result answers a successful change: what was done, in words.
type Result struct {
	XMLName struct{} `json:"-" xml:"result"`
	OK      bool     `json:"ok" xml:"ok"`
	Message string   `json:"message" xml:"message"`
}

// ErrorDoc is every error answer:
// {"error": {"code": "not_found", "message": "...", "details": [...]}}, in
// XML <error><code>…</code><message>…</message><detail>…</detail></error>.
type ErrorDoc struct {
	XMLName   struct{}       `json:"-" xml:"error"`
	ErrorBody `json:"error"` // flattened into <error> by encoding/xml
}

// ErrorBody is the content of an ErrorDoc. Code is one of bad_request,
// unauthorized, forbidden, not_found, method_not_allowed, conflict,
// too_large, unsupported_media_type, reload_failed, not_implemented,
// internal; Details carries one line per problem (a rejected reload's
// FILE:LINE messages).
type ErrorBody struct {
	Code    string   `json:"code" xml:"code"`
	Message string   `json:"message" xml:"message"`
	Details []string `json:"details,omitempty" xml:"detail,omitempty"`
}

// NodeUpdate is the body of PUT /api/clusters/{cluster}/nodes/{node}: at
// least one of state and weight.
type NodeUpdate struct {
	State  *string `json:"state"`
	Weight *int    `json:"weight"`
}

// NodeSpec is the body of POST /api/clusters/{cluster}/nodes. Omitted keys
// take their config defaults (weight 1, state green, max_conns 0).
type NodeSpec struct {
	Name     string  `json:"name"`
	Address  string  `json:"address"`
	Weight   *int    `json:"weight"`
	Fallover string  `json:"fallover"`
	Standby  bool    `json:"standby"`
	MaxConns *int    `json:"max_conns"`
	State    *string `json:"state"`
}

// ListenerUpdate is the body of PUT /api/listeners/{listener}.
type ListenerUpdate struct {
	Cluster string `json:"cluster"`
}
