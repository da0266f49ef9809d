package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
)

// Source addresses and transparent mode (DESIGN.md F12).
//
// A connection to a node leaves from a local address the cluster chooses:
// one of source_addresses, or with transparent = true the client's own IP.
// The socket is bound to that address with port 0 and
// IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port at connect time,
// per 4-tuple: each source address then offers the whole ephemeral range to
// every node address, instead of one port per bind.

// errSourceFamily ends a dial that has no source address of the node's
// family (source_addresses of the other family only, or a transparent
// client of the other family). The node is not at fault.
var errSourceFamily = errors.New("no source address of the node's address family")

// clusterSources chooses the source address of each dial of one cluster
// version. It is a small value made per connection from the cluster (two
// slice words, two flags and a pointer): choosing takes no lock and
// allocates nothing, so an event-loop data path can use it as it is.
//
//   - source_hash = true: start is a fixed hash of the client IP, so a
//     client always leaves from the same address (FTP control and data
//     connections agree, across clusters with the same list and across
//     restarts); only try 0 exists, an exhausted address is not left.
//   - source_hash = false: start is the cluster's next rotation turn (one
//     atomic add per connection); try 1, 2, ... move on to the following
//     addresses until each has been tried once.
//   - transparent: the source is the client's own IP, try 0 only.
//
// Addresses of the other family than the node's are skipped: the hash and
// the rotation run over the node's family only.
type clusterSources struct {
	addrs       []netip.Addr
	hash        bool
	transparent bool
	turn        *atomic.Uint32
}

// sourcesOf returns the chooser of cluster version c.
func sourcesOf(c *cluster.Cluster) clusterSources {
	return clusterSources{
		addrs:       c.Config.SourceAddresses,
		hash:        c.Config.SourceHash,
		transparent: c.Config.Transparent,
		turn:        &c.SourceTurn,
	}
}

// active reports whether dials must be bound at all.
func (s *clusterSources) active() bool { return s.transparent || len(s.addrs) > 0 }

// start returns where a connection's choice begins; call it once per
// connection and pass the result to every pick of that connection.
func (s *clusterSources) start(client netip.Addr) uint32 {
	if s.transparent {
		return 0
	}
	if s.hash {
		return uint32(clientHash(client) >> 32)
	}
	return s.turn.Add(1) - 1
}

// pick returns the address the try-th dial (from 0) of a connection leaves
// from towards a node of family v6 (false = IPv4), and false when there is
// none: no address of that family, or every one tried (try 0 only with
// source_hash or transparent).
func (s *clusterSources) pick(client netip.Addr, start uint32, v6 bool, try int) (netip.Addr, bool) {
	if try < 0 {
		return netip.Addr{}, false
	}
	if s.transparent {
		client = client.Unmap()
		if try > 0 || !client.IsValid() || client.Is6() != v6 {
			return netip.Addr{}, false
		}
		return client, true
	}
	m := 0
	for _, a := range s.addrs {
		if a.Unmap().Is6() == v6 {
			m++
		}
	}
	if m == 0 || try >= m || (s.hash && try > 0) {
		return netip.Addr{}, false
	}
	k := (int(start%uint32(m)) + try) % m
	for _, a := range s.addrs {
		if a = a.Unmap(); a.Is6() == v6 {
			if k == 0 {
				return a, true
			}
			k--
		}
	}
	return netip.Addr{}, false // unreachable
}

// clientHash is a fixed (unseeded) 64-bit hash of an IP address: the same
// client maps to the same source address in every process.
func clientHash(ip netip.Addr) uint64 {
	b := ip.Unmap().As16()
	var hi, lo uint64
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return mix64(hi ^ mix64(lo))
}

// mix64 is the SplitMix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// sourceDial is the source choice of one connection across its dials (a
// connection may dial several nodes, and one node from several addresses).
// The event-loop data path can embed one per connection (makeSourceDial),
// call prepare from its socket set-up and moveOn after a failed connect.
type sourceDial struct {
	s      clusterSources
	client netip.Addr
	start  uint32
	// try is the dial's attempt at the node being dialled: reset it to 0
	// for each node; moveOn advances it.
	try int
	// more is set by prepare when the address it bound is not the last
	// one this connection may try.
	more bool
}

// makeSourceDial returns the source choice of a new connection from client
// to cluster version c, and false when c binds nothing (the kernel chooses).
func makeSourceDial(c *cluster.Cluster, client netip.Addr) (sourceDial, bool) {
	s := sourcesOf(c)
	if !s.active() {
		return sourceDial{}, false
	}
	client = client.Unmap()
	return sourceDial{s: s, client: client, start: s.start(client)}, true
}

func newSourceDial(c *cluster.Cluster, client netip.Addr) *sourceDial {
	if d, ok := makeSourceDial(c, client); ok {
		return &d
	}
	return nil
}

// prepare readies fd, a fresh socket towards a node of family v6, to leave
// from this try's source address (see prepareDialSocket).
func (d *sourceDial) prepare(fd int, v6 bool) error {
	src, ok := d.s.pick(d.client, d.start, v6, d.try)
	if !ok {
		return errSourceFamily
	}
	_, d.more = d.s.pick(d.client, d.start, v6, d.try+1)
	return prepareDialSocket(fd, src, d.s.transparent)
}

// control is the net.Dialer.Control of a dial: it prepares the socket
// before Go connects it (Go binds nothing itself: Dialer.LocalAddr is nil).
func (d *sourceDial) control(network, _ string, rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) { err = d.prepare(int(fd), strings.HasSuffix(network, "6")) }); cerr != nil {
		return cerr
	}
	return err
}

// moveOn reports whether a dial that failed with err should be made again
// from the next source address, and if so makes that the current try: only
// when rotating, and only when the address ran out of ports (or cannot be
// bound) and another one is left.
func (d *sourceDial) moveOn(err error) bool {
	if d.s.hash || d.s.transparent || !d.more {
		return false
	}
	if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EADDRINUSE) {
		d.try++
		return true
	}
	return false
}

// checkSources refuses, at New and at every reload, a configuration whose
// source settings this process cannot honour: transparent = true without
// the capability to set IP_TRANSPARENT or without the routing that brings
// the nodes' replies back to this host, or (outside Linux) any source
// setting at all.
func checkSources(cfg *config.Config) error {
	var probed bool
	var probeErr error
	routed := map[bool]bool{} // by v6: the routing set-up was found
	for i := range cfg.Clusters {
		c := &cfg.Clusters[i]
		if !sourcesSupported && (c.Transparent || len(c.SourceAddresses) > 0) {
			return fmt.Errorf("cluster %q: source_addresses and transparent need Linux", c.Name)
		}
		if !c.Transparent {
			continue
		}
		if !probed {
			probeErr, probed = probeTransparent(), true
		}
		if err := transparentError(c.Name, probeErr); err != nil {
			return err
		}
		for _, v6 := range nodeFamilies(c) {
			if routed[v6] {
				continue
			}
			ok, err := localDivert(v6)
			if err != nil {
				return fmt.Errorf("cluster %q: transparent = true: cannot read the routing policy: %v", c.Name, err)
			}
			if !ok {
				return transparentRouteError(c.Name, v6)
			}
			routed[v6] = true
		}
	}
	return nil
}

// nodeFamilies are the address families cluster c's nodes may use: IPv6
// for IPv6 literals, IPv4 for the rest (IPv4 literals and host names).
func nodeFamilies(c *config.Cluster) []bool {
	var v4, v6 bool
	for _, n := range c.Nodes {
		if a, err := netip.ParseAddr(n.Host); err == nil && a.Is6() && !a.Is4In6() {
			v6 = true
		} else {
			v4 = true
		}
	}
	var out []bool
	if v4 {
		out = append(out, false)
	}
	if v6 {
		out = append(out, true)
	}
	return out
}

// transparentRouteError refuses transparent = true where no policy rule
// delivers replies addressed to clients' IPs to this host: the connects
// would leave with the client's address and their answers be forwarded
// past the balancer (or dropped), every node would look down.
func transparentRouteError(name string, v6 bool) error {
	fam, ipf, all := "IPv4", "ip", "0.0.0.0/0"
	if v6 {
		fam, ipf, all = "IPv6", "ip -6", "::/0"
	}
	return fmt.Errorf("cluster %q: transparent = true, but no routing policy delivers the nodes' replies to client addresses (%s) to this host: "+
		"no ip rule leads to a table with a local default route; e.g. \"%s rule add iif <interface towards the nodes> lookup 100\" and "+
		"\"%s route add local %s dev lo table 100\" (see docs/transparent.md)", name, fam, ipf, ipf, all)
}

// transparentError turns the result of probeTransparent into the error
// that refuses cluster name's transparent = true, or nil.
func transparentError(name string, probe error) error {
	switch {
	case probe == nil:
		return nil
	case errors.Is(probe, syscall.EPERM) || errors.Is(probe, syscall.EACCES):
		return fmt.Errorf("cluster %q: transparent = true needs CAP_NET_ADMIN (or CAP_NET_RAW) to set IP_TRANSPARENT: %v; "+
			"run as root or grant it, e.g. systemd AmbientCapabilities=CAP_NET_ADMIN, or setcap cap_net_admin+ep on the binary", name, probe)
	default:
		return fmt.Errorf("cluster %q: transparent = true: the kernel refused IP_TRANSPARENT: %v", name, probe)
	}
}
