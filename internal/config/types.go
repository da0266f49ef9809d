// Package config turns a Proto Balance TOML file into validated, typed values.
//
// Everything is parsed once: durations become time.Duration, addresses
// netip values, names are checked for uniqueness and references resolved.
// A Config returned without error is complete: every omitted key holds its
// default (see defaults.go, the one place defaults live).
package config

import (
	"net/netip"
	"regexp"
	"strconv"
	"time"
)

// Config is one validated configuration file.
type Config struct {
	// File is the path the config was read from ("" when parsed from memory).
	File string
	// Dir is the directory relative paths are resolved against.
	Dir string

	Global    Global
	Admin     Admin
	Store     Store
	Listeners []Listener
	Clusters  []Cluster
}

// Global holds process-wide settings.
type Global struct {
	// MaxConns caps concurrent proxied connections; 0 = derived from the
	// descriptor limit at start.
	MaxConns        int
	ShutdownTimeout time.Duration
	// DataPath chooses how bytes move: "loop" (per-CPU event loops on
	// raw sockets; Linux), "goroutine" (two goroutines per connection; the
	// portable fallback), or "auto" (loop where available).
	DataPath string
}

// Admin configures the management HTTP server.
type Admin struct {
	// Listen is "" when the admin server is disabled.
	Listen string
	// TokenFile is resolved against Config.Dir; "" = none. The file holds
	// the bearer token (surrounding whitespace trimmed); it is read when the
	// admin server starts, which refuses an empty one.
	TokenFile string
	// TLSCert and TLSKey are PEM files, resolved against Config.Dir; both
	// set serve HTTPS, both "" plain HTTP (the loader refuses one alone).
	TLSCert string
	TLSKey  string
}

// Store configures persistence of affinity and administrative state.
type Store struct {
	// Path is resolved against Config.Dir.
	Path  string
	Redis string
}

// Listener accepts client connections on one address or port range.
type Listener struct {
	Name           string
	Bind           Bind
	Cluster        string
	AcceptProxy    bool
	Allow          []netip.Prefix
	Deny           []netip.Prefix
	AllowFile      string // resolved against Config.Dir
	DenyFile       string // resolved against Config.Dir
	MaxConns       int
	MaxConnRate    int
	MaxClientConns int
	ClientMaskV4   int
	ClientMaskV6   int
	BanTime        time.Duration

	// Line is the line of the [[listener]] header, for later error messages.
	Line int
}

// Bind is a listen address with an inclusive port range; FirstPort ==
// LastPort for a single port.
type Bind struct {
	Addr      netip.Addr
	FirstPort uint16
	LastPort  uint16
}

// IsRange reports whether the bind covers more than one port.
func (b Bind) IsRange() bool { return b.FirstPort != b.LastPort }

// String formats the bind as it is written in the config file.
func (b Bind) String() string {
	s := netip.AddrPortFrom(b.Addr, b.FirstPort).String()
	if b.IsRange() {
		s += "-" + strconv.Itoa(int(b.LastPort))
	}
	return s
}

// Cluster is a named group of nodes and how to balance over them.
type Cluster struct {
	Name             string
	Algorithm        string
	LoadRating       string
	HashKey          string // as written; "" = derived (see EffectiveHashKey)
	Affinity         bool
	AffinityGroup    string
	AffinityTTL      time.Duration
	AffinityMax      int
	AffinityMaskV4   int
	AffinityMaskV6   int
	ConnectTimeout   time.Duration
	DispatchTimeout  time.Duration
	EarlyCloseWindow time.Duration
	IdleTimeout      time.Duration // 0 = none
	FinTimeout       time.Duration // 0 = none
	RetryInterval    time.Duration
	RateWindow       time.Duration
	SourceAddresses  []netip.Addr
	SourceHash       bool
	ProxyProtocol    string // "", "v1" or "v2"
	Transparent      bool
	Check            *Check // nil = no active health check
	Nodes            []Node

	Line int
}

// EffectiveHashKey is the ip-hash key: hash_key, else affinity_group, else
// the cluster name.
func (c *Cluster) EffectiveHashKey() string {
	switch {
	case c.HashKey != "":
		return c.HashKey
	case c.AffinityGroup != "":
		return c.AffinityGroup
	}
	return c.Name
}

// Check is an active health check.
type Check struct {
	Type     string // "tcp", "send-expect" or "http"
	Interval time.Duration
	Timeout  time.Duration
	Rise     int
	Fall     int
	Port     uint16 // 0 = the node's own port
	Send     string
	Expect   string // a regular expression (RE2); a plain prefix is one
	Path     string
	Status   int

	// ExpectRE is Expect compiled and anchored at the start of the reply;
	// nil when Expect is "" (any reply passes).
	ExpectRE *regexp.Regexp

	Line int
}

// Node is one server of a cluster.
type Node struct {
	Name string
	// Host is an IP literal or a host name.
	Host string
	// Port is 0 when the address has no port: the node is reached on the
	// port the client connected to.
	Port     uint16
	Weight   int
	Fallover string
	Standby  bool
	MaxConns int
	State    string // "green", "yellow" or "red"

	Line int
}

// PortLess reports whether the node takes the client's destination port.
func (n *Node) PortLess() bool { return n.Port == 0 }

// Address is the node's address as written ("host" or "host:port").
func (n *Node) Address() string {
	if n.Port == 0 {
		return n.Host
	}
	return JoinHostPort(n.Host, n.Port)
}

// JoinHostPort formats host and port, bracketing IPv6 literals.
func JoinHostPort(host string, port uint16) string {
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(port))
}

// Listener returns the listener with the given name, or nil.
func (c *Config) Listener(name string) *Listener {
	for i := range c.Listeners {
		if c.Listeners[i].Name == name {
			return &c.Listeners[i]
		}
	}
	return nil
}

// Cluster returns the cluster with the given name, or nil.
func (c *Config) Cluster(name string) *Cluster {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i]
		}
	}
	return nil
}
