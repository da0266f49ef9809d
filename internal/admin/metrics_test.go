package admin_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exposition is a parsed /metrics answer: sample values by series as
// written ("name{label=\"v\",...}"), and the TYPE of each family.
type exposition struct {
	values map[string]float64
	types  map[string]string
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$`)

// parseExposition checks the text format line by line: HELP then TYPE
// once per family before its samples, samples well-formed, every name
// protobalance_*, no series twice.
func parseExposition(t *testing.T, text []byte) exposition {
	t.Helper()
	e := exposition{values: map[string]float64{}, types: map[string]string{}}
	helped := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if helped[name] {
				t.Errorf("HELP twice for %s", name)
			}
			helped[name] = true
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			if len(f) != 2 || !helped[f[0]] || e.types[f[0]] != "" || (f[1] != "counter" && f[1] != "gauge") {
				t.Errorf("bad TYPE line %q", line)
			}
			e.types[f[0]] = f[1]
		default:
			m := sampleRE.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("malformed sample %q", line)
				continue
			}
			if !strings.HasPrefix(m[1], "protobalance_") {
				t.Errorf("metric %s is not protobalance_*", m[1])
			}
			if e.types[m[1]] == "" {
				t.Errorf("sample %q before its TYPE", line)
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Errorf("value in %q: %v", line, err)
			}
			key := m[1] + m[2]
			if _, dup := e.values[key]; dup {
				t.Errorf("series %s twice", key)
			}
			e.values[key] = v
		}
	}
	return e
}

func (e exposition) get(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := e.values[series]
	if !ok {
		t.Errorf("no series %s", series)
		return math.NaN()
	}
	return v
}

func TestMetricsAfterConnections(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	const conns = 10
	payload := bytes.Repeat([]byte("0123456789"), 100) // 1,000 bytes each way
	perNode := map[string]int{}
	for range conns {
		name, err := roundTrip(f.listenerAddr("web"), payload)
		if err != nil {
			t.Fatal(err)
		}
		perNode[name]++
	}
	// A node that refuses connections and falls over to a1: the connection
	// it is picked for goes on to a1.
	dead, err := net.Listen("tcp", nodeIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	if st, body, _ := f.call(t, "POST", "/api/clusters/A/nodes", `{"name":"dead","address":"`+deadAddr+`","fallover":"a1"}`); st != 201 {
		t.Fatalf("adding dead: %d %s", st, body)
	}
	for range 3 {
		if _, err := roundTrip(f.listenerAddr("web"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// A connection that finds no node: all of B red.
	f.call(t, "PUT", "/api/clusters/B/nodes/b1", `{"state":"red"}`)
	f.call(t, "PUT", "/api/clusters/B/nodes/b2", `{"state":"yellow"}`)
	if _, _, _, err := session(f.listenerAddr("other")); err == nil {
		t.Fatal("listener other: a node answered with every node down")
	}
	var e exposition
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, body, hdr := f.call(t, "GET", "/metrics", "")
		if st != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") {
			t.Fatalf("GET /metrics: %d %s", st, hdr.Get("Content-Type"))
		}
		e = parseExposition(t, body)
		// Sessions end just after their clients see EOF: wait until every
		// counter of theirs has settled.
		settled := e.values[`protobalance_listener_no_node_total{listener="other"}`] == 1
		for series, v := range e.values {
			if strings.Contains(series, "active_connections") && v != 0 {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			break
		}
	}
	node := func(m, n string) string { return fmt.Sprintf(`protobalance_%s{cluster="A",node="%s"}`, m, n) }
	// The 3 one-byte connections after the payloads went to a1 or a2.
	later := 0.0
	for _, n := range []string{"a1", "a2"} {
		conns := e.get(t, node("node_connections_total", n))
		extra := conns - float64(perNode[n])
		later += extra
		if extra < 0 || extra > 3 {
			t.Errorf("%s connections_total %v, want %d + up to 3", n, conns, perNode[n])
		}
		// In: the payloads and one byte per later connection. Out: the
		// same echoed, plus the node's greeting line "a1\n" on each.
		want := float64(perNode[n]*len(payload)) + extra
		if got := e.get(t, node("node_bytes_in_total", n)); got != want {
			t.Errorf("%s bytes_in %v, want %v", n, got, want)
		}
		if got := e.get(t, node("node_bytes_out_total", n)); got != want+3*conns {
			t.Errorf("%s bytes_out %v, want %v", n, got, want+3*conns)
		}
		for series, want := range map[string]float64{
			node("node_active_connections", n): 0, node("node_connect_failures_total", n): 0,
			node("node_available", n): 1, node("node_weight", n): 1,
			fmt.Sprintf(`protobalance_node_state{cluster="A",node="%s",state="green"}`, n):  1,
			fmt.Sprintf(`protobalance_node_state{cluster="A",node="%s",state="yellow"}`, n): 0,
		} {
			if got := e.get(t, series); got != want {
				t.Errorf("%s = %v, want %v", series, got, want)
			}
		}
	}
	if later != 3 {
		t.Errorf("%v later connections counted on a1 and a2, want 3", later)
	}
	for series, want := range map[string]float64{
		`protobalance_listener_accepted_total{listener="web"}`:              conns + 3,
		`protobalance_listener_no_source_port_total{listener="web"}`:        0,
		`protobalance_node_connect_failures_total{cluster="A",node="dead"}`: 1,
		`protobalance_node_marked_down_total{cluster="A",node="dead"}`:      1,
		`protobalance_node_available{cluster="A",node="dead"}`:              0,
		`protobalance_node_fall_ins_total{cluster="A",node="a1"}`:           1,
		`protobalance_node_connections_total{cluster="A",node="dead"}`:      0,
		`protobalance_listener_active_connections{listener="web"}`:          0,
		`protobalance_listener_no_node_total{listener="web"}`:               0,
		`protobalance_listener_accepted_total{listener="other"}`:            1,
		`protobalance_listener_no_node_total{listener="other"}`:             1,
		`protobalance_listener_cluster{listener="web",cluster="A"}`:         1,
		`protobalance_node_state{cluster="B",node="b1",state="red"}`:        1,
		`protobalance_node_state{cluster="B",node="b1",state="green"}`:      0,
		`protobalance_node_state{cluster="B",node="b2",state="yellow"}`:     1,
	} {
		if got := e.get(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if e.types["protobalance_node_connections_total"] != "counter" || e.types["protobalance_goroutines"] != "gauge" {
		t.Errorf("types: %v", e.types)
	}
	if g := e.get(t, "protobalance_goroutines"); g < 5 {
		t.Errorf("goroutines %v", g)
	}
	if rss := e.get(t, "protobalance_resident_memory_bytes"); rss < 1<<20 {
		t.Errorf("rss %v", rss)
	}
	if h := e.get(t, `protobalance_go_memory_bytes{class="heap_objects"}`); h < 64<<10 {
		t.Errorf("go heap objects %v", h)
	}
	if s := e.get(t, `protobalance_go_memory_bytes{class="stacks"}`); s < 8<<10 {
		t.Errorf("go stacks %v", s)
	}
	if fds := e.get(t, "protobalance_open_fds"); fds < 5 {
		t.Errorf("open fds %v", fds)
	}
	if st := e.get(t, "protobalance_start_time_seconds"); math.Abs(st-float64(time.Now().Unix())) > 60 {
		t.Errorf("start time %v", st)
	}
}
