package cluster

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

// build makes a cluster from "name:weight[:fallover][:standby]" specs.
func build(t *testing.T, specs ...string) *Cluster {
	t.Helper()
	c := config.DefaultCluster()
	c.Name = "c"
	for i, s := range specs {
		f := strings.Split(s, ":")
		n := config.DefaultNode()
		n.Name, n.Host, n.Port = f[0], "127.0.0.1", uint16(9000+i)
		fmt.Sscan(f[1], &n.Weight)
		if len(f) > 2 {
			n.Fallover = f[2]
		}
		n.Standby = len(f) > 3 && f[3] == "standby"
		c.Nodes = append(c.Nodes, n)
	}
	cl, err := New(&c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// slotsOf renders the filled slots as "name=weight" sorted.
func slotsOf(c *Cluster) string {
	a := c.Begin(time.Now())
	defer a.Done()
	var out []string
	for _, s := range a.slots() {
		out = append(out, fmt.Sprintf("%s=%d", s.Name, s.Weight))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func node(c *Cluster, name string) *Node { n, _ := c.Node(name); return n }

func TestSlots(t *testing.T) {
	c := build(t, "a:3:b", "b:1:c", "c:1", "s:5::standby", "z:0:a")
	if got, want := slotsOf(c), "a=3 b=1 c=1"; got != want {
		t.Fatalf("all green: %q, want %q (standby and weight 0 have no slot)", got, want)
	}
	node(c, "a").SetState(Yellow)
	if got, want := slotsOf(c), "b=4 c=1"; got != want {
		t.Fatalf("a yellow: %q, want %q (b stands in for a)", got, want)
	}
	node(c, "b").MarkDown(time.Now(), time.Hour)
	if got, want := slotsOf(c), "c=5"; got != want {
		t.Fatalf("a yellow, b down: %q, want %q (c fills both a's and b's slots)", got, want)
	}
	node(c, "c").SetState(Red)
	if got := slotsOf(c); got != "" {
		t.Fatalf("whole chain out: %q, want no slot", got)
	}
}

func TestStandbyStandsIn(t *testing.T) {
	c := build(t, "a:2:s", "b:1", "s:1::standby")
	node(c, "a").MarkDown(time.Now(), time.Hour)
	if got, want := slotsOf(c), "b=1 s=2"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// After a failed dial the failed node's chain is tried first, then the
// rest by the policy, each node once.
func TestNextWalksChainThenRest(t *testing.T) {
	c := build(t, "a:1:b", "b:1:c", "c:1", "d:1")
	a := c.Begin(time.Now())
	defer a.Done()
	client := netip.MustParseAddr("127.0.0.9")
	var order []string
	for n := a.Next(client); n != nil; n = a.Next(client) {
		order = append(order, n.Name)
		n.MarkDown(time.Now(), time.Hour) // every dial fails
	}
	if got, want := strings.Join(order, " "), "a b c d"; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

// A down node whose retry time has passed is offered to exactly one
// connection (the probe); others skip it until the probe's outcome.
func TestProbeClaimedOnce(t *testing.T) {
	c := build(t, "a:1", "b:1")
	c.Config.RetryInterval = time.Minute
	long := time.Now().Add(-2 * time.Minute)
	node(c, "a").MarkDown(long, time.Minute) // retry time passed
	var probes int
	for range 10 {
		a := c.Begin(time.Now())
		n := a.Next(netip.MustParseAddr("127.0.0.9"))
		if n.Name == "a" {
			probes++
		}
		a.Done()
	}
	if probes != 1 {
		t.Fatalf("the down node was offered %d times, want 1 probe", probes)
	}
	node(c, "a").MarkUp()
	if !node(c, "a").Available() {
		t.Fatal("MarkUp did not make the node available")
	}
}

// A node at max_conns is skipped; its slot goes to its stand-in.
func TestFullNodeSkipped(t *testing.T) {
	c := build(t, "a:1:b", "b:1")
	c.maxConns[0] = 2
	node(c, "a").Stats.Active.Store(2)
	if got, want := slotsOf(c), "b=2"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// A reload carries nodes over by name and address; run-time weight and
// state hold unless the file changed them.
func TestNewCarriesNodesOver(t *testing.T) {
	c := build(t, "a:1", "b:1")
	a := node(c, "a")
	a.SetWeight(5)
	a.SetState(Yellow)
	next := c.Config
	next.Nodes = append([]config.Node(nil), c.Config.Nodes...)
	next.Nodes[1].Weight = 4
	c2, err := New(&next, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if node(c2, "a") != a || a.Weight() != 5 || a.State() != Yellow {
		t.Fatal("node a not carried over with its run-time weight and state")
	}
	if w := node(c2, "b").Weight(); w != 4 {
		t.Fatalf("b's weight %d, want the file's new 4", w)
	}
	next.Nodes[0].Port++ // a new address is a new node
	c3, _ := New(&next, c2, nil)
	if node(c3, "a") == a {
		t.Fatal("a node whose address changed was carried over")
	}
}

// An affinity record's node is offered first, or its stand-in when it
// cannot take the connection; standby status does not matter.
func TestRecorded(t *testing.T) {
	c := build(t, "a:1:b", "b:1", "s:1::standby")
	a := c.Begin(time.Now())
	if n := a.Recorded("s", false); n == nil || n.Name != "s" {
		t.Fatalf("recorded standby: %v, want s (affinity beats standby)", n)
	}
	a.Done()
	node(c, "a").SetState(Yellow)
	a = c.Begin(time.Now())
	if n := a.Recorded("a", false); n == nil || n.Name != "b" {
		t.Fatalf("recorded yellow node: %v, want its stand-in b", n)
	}
	a.Done()
	a = c.Begin(time.Now())
	if n := a.Recorded("a", true); n == nil || n.Name != "a" {
		t.Fatalf("port-less, recorded yellow node: %v, want a itself", n)
	}
	a.Done()
	a = c.Begin(time.Now())
	if n := a.Recorded("gone", false); n != nil {
		t.Fatalf("record naming an unknown node: %v, want nil (a miss)", n)
	}
	a.Done()
}
