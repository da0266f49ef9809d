package config

import (
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/protobalance/protobalance/internal/balance"
)

// Algorithms are the names accepted by a cluster's algorithm key.
var Algorithms = []string{"round-robin", "random", "conn-rate", "traffic-rate", "min-load", "ip-hash"}

// States are the node states, in order of decreasing service.
var States = []string{"green", "yellow", "red"}

// CheckTypes are the health check types.
var CheckTypes = []string{"tcp", "send-expect", "http"}

var proxyProtocols = []string{"", "v1", "v2"}

func (b *builder) cluster(i int, r *rawCluster) Cluster {
	s := b.elemScope(scope{}, "cluster", i, r.Name)
	c := DefaultCluster()
	c.Line = b.ix.line(s.path)
	c.Name = b.name(s, r.Name)

	b.oneOf(s, "algorithm", r.Algorithm, &c.Algorithm, Algorithms...)
	setIf(&c.LoadRating, r.LoadRating)
	if c.Algorithm == "min-load" && strings.TrimSpace(c.LoadRating) == "" {
		b.errf(s, "load_rating", "load_rating: must not be empty with algorithm \"min-load\"")
	} else if c.Algorithm == "min-load" {
		// Compiled here too so that a bad expression is reported with its
		// line; the other algorithms accept and ignore the key.
		if _, err := balance.CompileLoadRating(c.LoadRating); err != nil {
			b.errf(s, "load_rating", "%v", err)
		}
	}
	setIf(&c.HashKey, r.HashKey)
	setIf(&c.Affinity, r.Affinity)
	setIf(&c.AffinityGroup, r.AffinityGroup)
	b.dur(s, "affinity_ttl", r.AffinityTTL, &c.AffinityTTL, positive)
	b.intIn(s, "affinity_max", r.AffinityMax, &c.AffinityMax, 1, math.MaxInt)
	b.intIn(s, "affinity_mask_v4", r.AffinityMaskV4, &c.AffinityMaskV4, 0, 32)
	b.intIn(s, "affinity_mask_v6", r.AffinityMaskV6, &c.AffinityMaskV6, 0, 128)
	b.dur(s, "connect_timeout", r.ConnectTimeout, &c.ConnectTimeout, positive)
	b.dur(s, "dispatch_timeout", r.DispatchTimeout, &c.DispatchTimeout, positive)
	b.dur(s, "early_close_window", r.EarlyCloseWindow, &c.EarlyCloseWindow, zeroOK)
	b.dur(s, "idle_timeout", r.IdleTimeout, &c.IdleTimeout, zeroOK)
	b.dur(s, "fin_timeout", r.FinTimeout, &c.FinTimeout, zeroOK)
	b.dur(s, "retry_interval", r.RetryInterval, &c.RetryInterval, positive)
	b.dur(s, "rate_window", r.RateWindow, &c.RateWindow, positive)
	for j, a := range r.SourceAddresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			b.errf(s, "source_addresses["+strconv.Itoa(j)+"]", "source_addresses %q: not an IP address", a)
			continue
		}
		c.SourceAddresses = append(c.SourceAddresses, ip)
	}
	setIf(&c.SourceHash, r.SourceHash)
	b.oneOf(s, "proxy_protocol", r.ProxyProtocol, &c.ProxyProtocol, proxyProtocols...)
	setIf(&c.Transparent, r.Transparent)
	if c.Transparent && len(c.SourceAddresses) > 0 {
		// Transparent connections leave from the client's own address:
		// a source list would be silently ignored.
		b.errf(s, "transparent", "transparent = true leaves from each client's own address: remove source_addresses or transparent")
	}

	if len(r.Node) == 0 {
		b.errf(s, "", "no [[cluster.node]]: a cluster needs at least one node")
	}
	for j := range r.Node {
		c.Nodes = append(c.Nodes, b.node(s, j, &r.Node[j]))
		b.sourceFamily(b.elemScope(s, "node", j, r.Node[j].Name), &c, &c.Nodes[j])
	}
	if r.Check != nil {
		c.Check = b.check(s.child("check", "check"), r.Check, c.Nodes)
	}
	return c
}

// sourceFamily refuses a node at an IP address that no source address of
// the cluster can reach: a connection leaves from an address of the node's
// family (transparent mode uses the client's own address instead).
func (b *builder) sourceFamily(s scope, c *Cluster, n *Node) {
	ip, err := netip.ParseAddr(n.Host)
	if err != nil || len(c.SourceAddresses) == 0 || c.Transparent {
		return
	}
	v6 := ip.Unmap().Is6()
	for _, a := range c.SourceAddresses {
		if a.Unmap().Is6() == v6 {
			return
		}
	}
	family := "IPv4"
	if v6 {
		family = "IPv6"
	}
	b.errf(s, "address", "address %q: source_addresses has no %s address to reach it from", n.Host, family)
}

func (b *builder) node(parent scope, j int, r *rawNode) Node {
	s := b.elemScope(parent, "node", j, r.Name)
	n := DefaultNode()
	n.Line = b.ix.line(s.path)
	n.Name = b.name(s, r.Name)
	if r.Address == nil || *r.Address == "" {
		b.errf(s, "address", `address: required ("host:port", or "host" for the client's port)`)
	} else if host, port, err := parseNodeAddress(*r.Address); err != nil {
		b.errf(s, "address", "address %q: %v", *r.Address, err)
	} else {
		n.Host, n.Port = host, port
	}
	b.intIn(s, "weight", r.Weight, &n.Weight, 0, math.MaxInt)
	setIf(&n.Fallover, r.Fallover) // resolved in refs
	setIf(&n.Standby, r.Standby)
	b.intIn(s, "max_conns", r.MaxConns, &n.MaxConns, 0, math.MaxInt)
	b.oneOf(s, "state", r.State, &n.State, States...)
	return n
}

// check builds a health check. expect is a regular expression (RE2 syntax)
// matched at the start of the first reply: a plain prefix such as "220"
// is already such an expression. It is compiled here so a bad one is
// reported with its line; Check.ExpectRE holds the result.
func (b *builder) check(s scope, r *rawCheck, nodes []Node) *Check {
	k := DefaultCheck()
	k.Line = b.ix.line(s.path)
	b.oneOf(s, "type", r.Type, &k.Type, CheckTypes...)
	b.dur(s, "interval", r.Interval, &k.Interval, positive)
	b.dur(s, "timeout", r.Timeout, &k.Timeout, positive)
	b.intIn(s, "rise", r.Rise, &k.Rise, 1, math.MaxInt)
	b.intIn(s, "fall", r.Fall, &k.Fall, 1, math.MaxInt)
	port := 0
	b.intIn(s, "port", r.Port, &port, 0, 65535)
	k.Port = uint16(port)
	setIf(&k.Send, r.Send)
	setIf(&k.Expect, r.Expect)
	if k.Expect != "" {
		// Compiled alone first: wrapped, "a)(b" would pass.
		if _, err := regexp.Compile(k.Expect); err != nil {
			b.errf(s, "expect", "expect %q: not a regular expression: %v", k.Expect, regexpReason(err))
		} else {
			k.ExpectRE = regexp.MustCompile(`^(?:` + k.Expect + `)`)
		}
	}
	setIf(&k.Path, r.Path)
	if !strings.HasPrefix(k.Path, "/") {
		b.errf(s, "path", "path %q: must start with \"/\"", k.Path)
	}
	b.intIn(s, "status", r.Status, &k.Status, 100, 599)
	if k.Port == 0 {
		for _, n := range nodes {
			if n.Host != "" && n.PortLess() {
				b.errf(s, "port", "port: required, node %q has no port of its own", n.Name)
				break
			}
		}
	}
	return &k
}

// regexpReason drops regexp's "error parsing regexp: " prefix, which would
// repeat what the message already says.
func regexpReason(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}
