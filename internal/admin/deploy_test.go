package admin_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// load runs checksummed connections through addr from workers goroutines
// until total connections have been made or stop is closed, recording
// which node served each one. payload returns each connection's bytes.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	served     []string // node names, in completion order
	wg         sync.WaitGroup
}

func startLoad(addr string, workers, total int, stop <-chan struct{}, payload func(i int) []byte) *load {
	l := &load{}
	var next atomic.Int64
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				i := int(next.Add(1))
				if total > 0 && i > total {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
				name, err := roundTrip(addr, payload(i))
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
				} else {
					l.ok.Add(1)
					l.served = append(l.served, name)
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) wait(t *testing.T) {
	t.Helper()
	l.wg.Wait()
	if n := l.failed.Load(); n != 0 {
		t.Errorf("%d failed connections (of %d): %s", n, n+l.ok.Load(), strings.Join(l.errs, "; "))
	}
}

// TestControllerDeployment: a listener is moved from cluster A to cluster
// B and back through the API under a continuous load. No connection
// fails; new connections follow each switch; an established connection
// stays on its node.
func TestControllerDeployment(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	web := f.listenerAddr("web")

	// An established connection to A, held across both switches.
	held, heldNode, heldR, err := session(web)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	stop := make(chan struct{})
	small := func(i int) []byte { return []byte(fmt.Sprintf("connection %d\n", i)) }
	l := startLoad(web, 4, 2000, stop, small)

	for i, to := range []string{"B", "A", "B", "A"} {
		// Switch at 400, 800, 1200 and 1600 connections into the load.
		for l.ok.Load()+l.failed.Load() < int64(400*(i+1)) {
			time.Sleep(time.Millisecond)
		}
		if st, body, _ := f.call(t, "PUT", "/api/listeners/web", `{"cluster": "`+to+`"}`); st != 200 {
			t.Fatalf("switch to %s: %d %s", to, st, body)
		}
		// Every connection opened after the switch answered goes to `to`.
		for range 5 {
			name, err := roundTrip(web, []byte("after"))
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.ToLower(to); !strings.HasPrefix(name, want) {
				t.Fatalf("after switching to %s a new connection went to %s", to, name)
			}
		}
	}
	l.wait(t)
	served := map[byte]int{}
	for _, n := range l.served {
		served[n[0]]++
	}
	t.Logf("load: %d connections, %d to A, %d to B, %d failed", l.ok.Load(), served['a'], served['b'], l.failed.Load())
	// Switched at 400/800/1200/1600: about 1,200 to A and 800 to B.
	if l.ok.Load() != 2000 || served['b'] < 600 || served['a'] < 1000 {
		t.Errorf("served %v of %d", served, l.ok.Load())
	}

	// The held connection is still on its node of A, and still relays.
	if _, err := io.WriteString(held, "still here\n"); err != nil {
		t.Fatal(err)
	}
	line, err := heldR.ReadString('\n')
	if err != nil || line != "still here\n" {
		t.Fatalf("held connection: %q %v", line, err)
	}
	// Sessions end just after their clients see EOF: wait for the load's.
	n, _ := f.srv.Cluster("A").Node(heldNode)
	if !eventually(func() bool { return n.Stats.Active.Load() == 1 }) {
		t.Errorf("node %s of A has %d active connections, want the held one", heldNode, n.Stats.Active.Load())
	}
}

// TestChangesUnderLoad: 1,000 node changes (200 with -short) through the API (add, weight,
// state, remove) while checksummed transfers run: no connection fails, no
// byte is corrupted.
func TestChangesUnderLoad(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	web := f.listenerAddr("web")
	x1 := f.nodes["x1"].addr()
	stop := make(chan struct{})
	sized := func(i int) []byte {
		b := make([]byte, 1+(i*7919)%(64<<10))
		r := rand.New(rand.NewPCG(uint64(i), 42))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return b
	}
	l := startLoad(web, 4, 0, stop, sized)

	total := 1000
	if testing.Short() {
		total = 200
	}
	changes := 0
	do := func(method, path, body string, want int) {
		t.Helper()
		st, resp, _ := f.call(t, method, path, body)
		if st != want {
			t.Fatalf("%s %s %s: %d %s", method, path, body, st, resp)
		}
		changes++
	}
	for round := 0; changes < total; round++ {
		do("POST", "/api/clusters/A/nodes", fmt.Sprintf(`{"name": "x1", "address": %q, "weight": %d}`, x1, 1+round%3), 201)
		do("PUT", "/api/clusters/A/nodes/a1", fmt.Sprintf(`{"weight": %d}`, round%4), 200)
		do("PUT", "/api/clusters/A/nodes/a2", `{"state": "yellow"}`, 200)
		do("PUT", "/api/clusters/A/nodes/x1", `{"weight": 5}`, 200)
		do("PUT", "/api/clusters/A/nodes/a2", `{"state": "green", "weight": 2}`, 200)
		do("PUT", "/api/clusters/A/nodes/a1", `{"weight": 1}`, 200)
		do("DELETE", "/api/clusters/A/nodes/x1", "", 200)
		do("PUT", "/api/clusters/A/nodes/a2", `{"weight": 1}`, 200)
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	l.wait(t)
	served := map[string]int{}
	for _, n := range l.served {
		served[n]++
	}
	t.Logf("%d changes; %d checksummed connections served %v", changes, l.ok.Load(), served)
	if l.ok.Load() < 100 || served["x1"] == 0 {
		t.Errorf("too little load or the added node never served: %v", served)
	}
	// Nothing leaked: every connection ended on every node.
	for _, c := range f.srv.Clusters() {
		for _, n := range c.Nodes {
			if !eventually(func() bool { return n.Stats.Active.Load() == 0 }) {
				t.Errorf("node %s: %d active after the load", n.Name, n.Stats.Active.Load())
			}
		}
	}
}

// eventually polls cond for up to five seconds.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
