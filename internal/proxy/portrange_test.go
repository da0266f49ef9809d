package proxy_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

// rangeBlock finds n consecutive free low ports on ip (below the ephemeral
// range) and returns the first.
// askPort asks through addr and fails the test on an error.
func askPort(t *testing.T, addr string) string {
	t.Helper()
	got, err := ask(t, addr, "hi")
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	return got
}

func rangeBlock(t *testing.T, ip string, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		first := 20000 + rand.IntN(9000)
		ok := true
		for p := first; p < first+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return first
		}
	}
	t.Fatal("no free block of ports")
	return 0
}

// A port range listener accepts on every port of the range and sends a
// port-less node the port the client connected to; if one port of the
// range is taken, the listener fails as a whole at start (naming the
// address) and on reload (the running configuration stays), leaving no
// port of the range bound.
func TestPortRangeAllOrNothing(t *testing.T) {
	const n = 5
	first := rangeBlock(t, balancerIP, n)
	// The node listens on the same ports on its own address.
	for p := first; p < first+n; p++ {
		startServerAt(t, fmt.Sprintf("p%d", p), fmt.Sprintf("%s:%d", nodeIP, p), func(s *server, c *net.TCPConn) {
			fmt.Fprintf(c, "%s\n", s.ln.Addr())
		})
	}
	rangeCfg := func(bind string) string {
		return strings.ReplaceAll(testConfig("", "", tnode{"n", nodeIP, ""}), "{{BIND}}", bind)
	}
	bind := fmt.Sprintf("%s:%d-%d", balancerIP, first, first+n-1)
	srv, _ := balancer(t, rangeCfg(bind))
	for p := first; p < first+n; p++ {
		if got := askPort(t, fmt.Sprintf("%s:%d", balancerIP, p)); got != fmt.Sprintf("%s:%d", nodeIP, p) {
			t.Fatalf("port %d reached %q, want the node's port %d", p, got, p)
		}
	}
	if got := len(srv.Listeners()[0].Addrs()); got != n {
		t.Fatalf("%d sockets, want %d", got, n)
	}

	// A second range overlapping one taken port: refused at start.
	other := rangeBlock(t, "127.0.4.3", n)
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.4.3:%d", other+2))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	otherBind := fmt.Sprintf("127.0.4.3:%d-%d", other, other+n-1)
	cfg, err := config.Parse("range.toml", []byte(rangeCfg(otherBind)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s2, err := proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine(), DataPath: os.Getenv("PB_DATA_PATH")})
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Start()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(other+2)) {
		t.Fatalf("start with a taken port: %v, want an error naming port %d", err, other+2)
	}
	freeExcept := func(what string) {
		t.Helper()
		for p := other; p < other+n; p++ {
			if p == other+2 {
				continue
			}
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.4.3:%d", p))
			if err != nil {
				t.Fatalf("%s: port %d of the failed range is still bound: %v", what, p, err)
			}
			ln.Close()
		}
	}
	freeExcept("start")

	// The same range added by a reload: refused, the running listener
	// keeps serving.
	two := rangeCfg(bind) + strings.Replace(strings.Split(rangeCfg(otherBind), "[[cluster]]")[0],
		"[admin]\nlisten = \"\"\n", "", 1)
	two = strings.Replace(two, "name = \"l\"\nbind = \""+otherBind, "name = \"l2\"\nbind = \""+otherBind, 1)
	if err := apply(t, srv, two); err == nil || !strings.Contains(err.Error(), "l2") {
		t.Fatalf("reload with a taken port: %v, want an error naming listener l2", err)
	}
	freeExcept("reload")
	if got := askPort(t, fmt.Sprintf("%s:%d", balancerIP, first+1)); got != fmt.Sprintf("%s:%d", nodeIP, first+1) {
		t.Fatalf("after the refused reload, port %d reached %q", first+1, got)
	}
}
