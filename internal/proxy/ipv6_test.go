package proxy_test

import (
	"net"
	"strings"
	"testing"
)

// IPv6 end to end, and across families: a v6 listener to a v6 node, and a
// v4 listener to a v6 node, bytes checked both ways.
func TestIPv6(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("SKIPPING: no IPv6 loopback here: %v", err)
	} else {
		ln.Close()
	}
	node := startServerAt(t, "n6", "[::1]:0", echo)
	for _, bind := range []string{"[::1]:0", balancerIP + ":0"} {
		toml := strings.ReplaceAll(testConfig("", "", tnode{"n6", node.addr(), ""}), "{{BIND}}", bind)
		_, addr := balancer(t, toml)
		payload := make([]byte, 300<<10)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		if err := roundTrip(addr, payload); err != nil {
			t.Fatalf("via %s: %v", bind, err)
		}
	}
}
