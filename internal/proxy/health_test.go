package proxy_test

import (
	"testing"
	"time"
)

// The health check takes a dead node out of rotation without any client
// connection failing on it, and brings it back when it revives.
func TestHealthCheckTakesNodeOut(t *testing.T) {
	a := startServer(t, "a", hello)
	b := startServer(t, "b", hello)
	aAddr := a.addr()
	srv, addr := balancer(t, testConfig("", "[cluster.check]\ntype = \"tcp\"\ninterval = \"30ms\"\ntimeout = \"500ms\"\nrise = 1\nfall = 1", tnode{"a", aAddr, ""}, tnode{"b", b.addr(), ""}))
	na := nodeOf(srv, "c", "a")
	a.close()
	waitFor(t, "the check to take a out", func() bool { return !na.Available() })
	for i := range 10 {
		if got, err := ask(t, addr, "hi"); err != nil || got != "b" {
			t.Fatalf("connection %d with a down: %q, %v", i, got, err)
		}
	}
	if f := na.Stats.Failures.Load(); f != 0 {
		t.Fatalf("a client connection was sent to the checked-down node (%d failures)", f)
	}
	revived := startServerAt(t, "a", aAddr, hello)
	waitFor(t, "the check to bring a back", na.Available)
	seen := map[string]bool{}
	for range 4 {
		got, _ := ask(t, addr, "hi")
		seen[got] = true
	}
	if !seen["a"] || revived.accepted() == 0 {
		t.Fatalf("the revived node takes no traffic: %v", seen)
	}
}

// waitFor polls cond (a state another goroutine changes) for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
