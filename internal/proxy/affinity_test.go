package proxy_test

import (
	"fmt"
	"testing"

	"github.com/protobalance/protobalance/internal/cluster"
)

// affinityConfig is a cluster "c" with affinity over nodes a (falling
// over to b), b and c.
func affinityConfig(algorithm string, a, b, c *server) string {
	return testConfig("", fmt.Sprintf("algorithm = %q\naffinity = true", algorithm),
		tnode{"a", a.addr(), `fallover = "b"`}, tnode{"b", b.addr(), ""}, tnode{"c", c.addr(), ""})
}

// A returning client goes back to its node, whatever the algorithm would
// say; when that node turns yellow the client takes its stand-in and the
// record follows, so turning it green again does not pull the client back.
func TestAffinitySticksAndFollowsStandIn(t *testing.T) {
	a, b, c := threeNodes(t)
	srv, addr := balancer(t, affinityConfig("round-robin", a, b, c))
	first := map[string]string{}
	for i := range 30 {
		from := fmt.Sprintf("127.0.4.%d", 30+i)
		first[from] = askFrom(t, from, addr)
	}
	for round := range 3 {
		for from, want := range first {
			if got := askFrom(t, from, addr); got != want {
				t.Fatalf("round %d: client %s went to %s, its record says %s", round, from, got, want)
			}
		}
	}
	na := nodeOf(srv, "c", "a")
	na.SetState(cluster.Yellow)
	moved := 0
	for from, was := range first {
		got := askFrom(t, from, addr)
		if was == "a" {
			if got != "b" {
				t.Fatalf("client %s of yellow a went to %s, want a's stand-in b", from, got)
			}
			first[from], moved = "b", moved+1
		} else if got != was {
			t.Fatalf("client %s moved from %s to %s though its node is green", from, was, got)
		}
	}
	if moved == 0 {
		t.Fatal("no client was recorded on a: the test proves nothing")
	}
	na.SetState(cluster.Green)
	for from, want := range first {
		if got := askFrom(t, from, addr); got != want {
			t.Fatalf("after a turned green again, client %s went to %s, want %s (the record followed)", from, got, want)
		}
	}
}
