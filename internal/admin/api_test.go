package admin_test

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/cluster"
)

// decode reads a JSON or XML answer by its Content-Type.
func decode(t *testing.T, hdr http.Header, body []byte, v any) {
	t.Helper()
	var err error
	if strings.HasPrefix(hdr.Get("Content-Type"), "application/xml") {
		err = xml.Unmarshal(body, v)
	} else {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		t.Fatalf("decoding %s: %v\n%s", hdr.Get("Content-Type"), err, body)
	}
}

var formats = []struct {
	name   string
	accept string
	ctype  string
}{
	{"json", "", "application/json"},
	{"xml", "application/xml", "application/xml; charset=utf-8"},
}

// wantError checks an error answer: status, code and a message fragment.
func wantError(t *testing.T, status int, body []byte, hdr http.Header, gotStatus int, code, fragment string) admin.ErrorDoc {
	t.Helper()
	var ed admin.ErrorDoc
	decode(t, hdr, body, &ed)
	if gotStatus != status || ed.Code != code || !strings.Contains(ed.Message, fragment) {
		t.Errorf("got %d %q %q, want %d %q containing %q\n%s", gotStatus, ed.Code, ed.Message, status, code, fragment, body)
	}
	return ed
}

func TestReadEndpoints(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	if _, err := roundTrip(f.listenerAddr("web"), []byte("ping")); err != nil {
		t.Fatal(err)
	}
	for _, fm := range formats {
		t.Run(fm.name, func(t *testing.T) {
			st, body, hdr := f.call(t, "GET", "/api/clusters", "", "Accept", fm.accept)
			if st != 200 || hdr.Get("Content-Type") != fm.ctype {
				t.Fatalf("GET /api/clusters: %d %s\n%s", st, hdr.Get("Content-Type"), body)
			}
			var cl admin.ClusterList
			decode(t, hdr, body, &cl)
			if len(cl.Clusters) != 2 || cl.Clusters[0].Name != "A" || len(cl.Clusters[0].Nodes) != 2 ||
				cl.Clusters[1].Nodes[1].Name != "b2" || cl.Clusters[0].Algorithm != "round-robin" {
				t.Fatalf("clusters: %+v", cl)
			}
			var total uint64
			for _, n := range cl.Clusters[0].Nodes {
				total += n.Total
				if n.State != "green" || !n.Available || n.Weight != 1 || n.Address == "" {
					t.Errorf("node %+v", n)
				}
			}
			if total != 1 {
				t.Errorf("cluster A total %d, want 1", total)
			}

			st, body, hdr = f.call(t, "GET", "/api/clusters/B", "", "Accept", fm.accept)
			var c admin.Cluster
			decode(t, hdr, body, &c)
			if st != 200 || c.Name != "B" || len(c.Nodes) != 2 || c.Nodes[0].Address != f.nodes["b1"].addr() {
				t.Errorf("GET /api/clusters/B: %d %+v", st, c)
			}

			st, body, hdr = f.call(t, "GET", "/api/clusters/A/nodes/a2", "", "Accept", fm.accept)
			var n admin.Node
			decode(t, hdr, body, &n)
			if st != 200 || n.Name != "a2" || n.Weight != 1 {
				t.Errorf("GET node: %d %+v", st, n)
			}

			st, body, hdr = f.call(t, "GET", "/api/listeners", "", "Accept", fm.accept)
			var ll admin.ListenerList
			decode(t, hdr, body, &ll)
			if st != 200 || len(ll.Listeners) != 2 || ll.Listeners[0].Cluster != "A" || ll.Listeners[0].Accepted != 1 ||
				ll.Listeners[0].Addrs[0] != f.listenerAddr("web") || ll.Listeners[1].Name != "other" {
				t.Errorf("GET /api/listeners: %d %+v", st, ll)
			}
			st, body, hdr = f.call(t, "GET", "/api/listeners/other", "", "Accept", fm.accept)
			var l admin.Listener
			decode(t, hdr, body, &l)
			if st != 200 || l.Cluster != "B" {
				t.Errorf("GET /api/listeners/other: %d %+v", st, l)
			}

			st, body, hdr = f.call(t, "GET", "/api/status", "", "Accept", fm.accept)
			var s admin.Status
			decode(t, hdr, body, &s)
			if st != 200 || s.Version != "test" || s.Goroutines <= 0 || s.RSSBytes <= 0 || s.OpenFDs <= 0 || s.UptimeSeconds <= 0 {
				t.Errorf("GET /api/status: %d %+v", st, s)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, fm := range formats {
		for _, c := range []struct{ method, path, body, fragment string }{
			{"GET", "/api/clusters/nope", "", `no cluster "nope"`},
			{"GET", "/api/clusters/A/nodes/zz", "", `cluster "A" has no node "zz"`},
			{"PUT", "/api/clusters/A/nodes/zz", `{"state":"red"}`, `cluster "A" has no node "zz"`},
			{"PUT", "/api/clusters/nope/nodes/a1", `{"weight":2}`, `no cluster "nope"`},
			{"DELETE", "/api/clusters/A/nodes/zz", "", `cluster "A" has no node "zz"`},
			{"POST", "/api/clusters/nope/nodes", `{"name":"n","address":"127.0.0.1:1"}`, `no cluster "nope"`},
			{"PUT", "/api/listeners/nope", `{"cluster":"A"}`, `no listener "nope"`},
			{"GET", "/api/listeners/nope", "", `listener "nope"`},
			{"GET", "/api/nothing", "", "no such endpoint"},
		} {
			st, body, hdr := f.call(t, c.method, c.path, c.body, "Accept", fm.accept)
			if hdr.Get("Content-Type") != fm.ctype {
				t.Errorf("%s %s: Content-Type %q", c.method, c.path, hdr.Get("Content-Type"))
			}
			wantError(t, 404, body, hdr, st, "not_found", c.fragment)
		}
	}
}

func TestNodeChanges(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	a2 := func() *cluster.Node { n, _ := f.srv.Cluster("A").Node("a2"); return n }

	st, body, hdr := f.call(t, "PUT", "/api/clusters/A/nodes/a2", `{"state": "yellow"}`, "Content-Type", "application/json")
	var res admin.Result
	decode(t, hdr, body, &res)
	if st != 200 || !res.OK || a2().State() != cluster.Yellow {
		t.Fatalf("PUT state: %d %s, state %v", st, body, a2().State())
	}
	// A yellow node takes no new clients: every connection goes to a1.
	for range 4 {
		if name, err := roundTrip(f.listenerAddr("web"), []byte("x")); err != nil || name != "a1" {
			t.Fatalf("with a2 yellow: %q %v", name, err)
		}
	}
	st, body, hdr = f.call(t, "PUT", "/api/clusters/A/nodes/a2", `{"weight": 3, "state": "green"}`, "Accept", "application/xml")
	decode(t, hdr, body, &res)
	if st != 200 || a2().Weight() != 3 || a2().State() != cluster.Green || !strings.Contains(res.Message, "weight 3 and state green") {
		t.Fatalf("PUT weight+state: %d %s", st, body)
	}
	if !strings.Contains(f.logs.String(), `msg="node state set" via=api remote=127.0.0.1:`) ||
		!strings.Contains(f.logs.String(), `cluster=A node=a2 state=yellow`) {
		t.Errorf("change not logged at info:\n%s", f.logs.String())
	}

	for _, c := range []struct{ body, code, fragment string }{
		{`{"state": "purple"}`, "bad_request", `state "purple": must be green, yellow or red`},
		{`{"weight": -1}`, "bad_request", "weight -1: must be between 0 and"},
		{`{"weight": "3"}`, "bad_request", "bad JSON"},
		{`{"stat": "red"}`, "bad_request", `unknown field "stat"`},
		{`{"state": "red"`, "bad_request", "bad JSON"},
		{`{"state": "red"} {}`, "bad_request", "data after the object"},
		{``, "bad_request", "empty body"},
		{`{}`, "bad_request", `expected "state" and/or "weight"`},
	} {
		st, body, hdr := f.call(t, "PUT", "/api/clusters/A/nodes/a2", c.body)
		wantError(t, 400, body, hdr, st, c.code, c.fragment)
	}
	if a2().State() != cluster.Green || a2().Weight() != 3 {
		t.Error("a refused request changed the node")
	}
	st, body, hdr = f.call(t, "PUT", "/api/clusters/A/nodes/a2", `{"state":"red"}`, "Content-Type", "application/xml")
	wantError(t, 415, body, hdr, st, "unsupported_media_type", "send application/json")

	big := `{"state": "red", "pad": "` + strings.Repeat("x", 70<<10) + `"}`
	for _, fm := range formats {
		st, body, hdr := f.call(t, "PUT", "/api/clusters/A/nodes/a2", big, "Accept", fm.accept)
		wantError(t, 413, body, hdr, st, "too_large", "request body over 65536 bytes")
	}
}

func TestAddRemoveNode(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	x1 := f.nodes["x1"].addr()
	st, body, hdr := f.call(t, "POST", "/api/clusters/A/nodes",
		fmt.Sprintf(`{"name": "x1", "address": %q, "weight": 2, "fallover": "a1", "max_conns": 5}`, x1))
	var res admin.Result
	decode(t, hdr, body, &res)
	if st != 201 || !strings.Contains(res.Message, `node "x1" added`) {
		t.Fatalf("POST node: %d %s", st, body)
	}
	_, body, hdr = f.call(t, "GET", "/api/clusters/A/nodes/x1", "")
	var n admin.Node
	decode(t, hdr, body, &n)
	if n.Weight != 2 || n.Fallover != "a1" || n.MaxConns != 5 || n.Address != x1 || n.State != "green" {
		t.Errorf("added node: %+v", n)
	}
	seen := map[string]bool{}
	for range 8 {
		name, err := roundTrip(f.listenerAddr("web"), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}
	if !seen["x1"] {
		t.Errorf("the added node got no connection: %v", seen)
	}

	for _, c := range []struct {
		status          int
		body, code, msg string
	}{
		{409, fmt.Sprintf(`{"name": "x1", "address": %q}`, x1), "conflict", `already has a node "x1"`},
		{400, `{"name": "y", "address": "127.0.0.1:70000"}`, "bad_request", `node "y": address "127.0.0.1:70000": invalid port`},
		{400, `{"name": "y", "address": "127.0.0.1:1", "weight": -2}`, "bad_request", `node "y": weight -2: must be >= 0`},
		{400, `{"name": "y", "address": "127.0.0.1:1", "state": "blue"}`, "bad_request", `state "blue": must be one of`},
		{400, `{"name": "y", "address": "127.0.0.1:1", "fallover": "zz"}`, "bad_request", `fallover "zz"`},
		{400, `{"address": "127.0.0.1:1"}`, "bad_request", "name: required"},
		{400, `{"name": "y", "address": "127.0.0.1:1", "color": "red"}`, "bad_request", `unknown field "color"`},
	} {
		st, body, hdr := f.call(t, "POST", "/api/clusters/A/nodes", c.body)
		wantError(t, c.status, body, hdr, st, c.code, c.msg)
	}

	st, body, _ = f.call(t, "DELETE", "/api/clusters/A/nodes/x1", "")
	if st != 200 {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	if n, _ := f.srv.Cluster("A").Node("x1"); n != nil {
		t.Error("node still there")
	}
	st, body, hdr = f.call(t, "DELETE", "/api/clusters/A/nodes/x1", "", "Accept", "application/xml")
	wantError(t, 404, body, hdr, st, "not_found", `has no node "x1"`)
	f.call(t, "DELETE", "/api/clusters/B/nodes/b2", "")
	st, body, hdr = f.call(t, "DELETE", "/api/clusters/B/nodes/b1", "")
	wantError(t, 409, body, hdr, st, "conflict", "cannot remove its last node")
}

func TestListenerSwitch(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	st, body, _ := f.call(t, "PUT", "/api/listeners/web", `{"cluster": "B"}`)
	if st != 200 || f.srv.Listener("web").Cluster().Name != "B" {
		t.Fatalf("PUT listener: %d %s", st, body)
	}
	if name, err := roundTrip(f.listenerAddr("web"), []byte("x")); err != nil || name[0] != 'b' {
		t.Errorf("after the switch: %q %v", name, err)
	}
	for _, c := range []struct{ body, msg string }{
		{`{"cluster": "nope"}`, `no cluster "nope"`},
		{`{}`, `expected {"cluster": "NAME"}`},
		{`{"cluster": "A", "x": 1}`, `unknown field "x"`},
	} {
		st, body, hdr := f.call(t, "PUT", "/api/listeners/web", c.body, "Accept", "application/xml")
		wantError(t, 400, body, hdr, st, "bad_request", c.msg)
	}
}

func TestReload(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	good, err := os.ReadFile(f.file)
	if err != nil {
		t.Fatal(err)
	}
	// The file gives a2 weight 4: after the reload the running node has it.
	f.writeConfig(t, strings.Replace(string(good), `name = "a2"`, "name = \"a2\"\nweight = 4", 1))
	st, body, _ := f.call(t, "POST", "/api/reload", "")
	if n, _ := f.srv.Cluster("A").Node("a2"); st != 200 || n.Weight() != 4 {
		t.Fatalf("reload: %d %s", st, body)
	}
	// A bad file is refused with FILE:LINE and changes nothing.
	bad := strings.Replace(string(good), `name = "a2"`, "name = \"a2\"\nweight = -7", 1)
	line := strings.Count(bad[:strings.Index(bad, "weight = -7")], "\n") + 1
	f.writeConfig(t, bad)
	for _, fm := range formats {
		st, body, hdr := f.call(t, "POST", "/api/reload", "", "Accept", fm.accept)
		ed := wantError(t, 422, body, hdr, st, "reload_failed", "running configuration is unchanged")
		want := fmt.Sprintf(`%s:%d: cluster "A": node "a2": weight -7: must be >= 0`, f.file, line)
		if len(ed.Details) != 1 || ed.Details[0] != want {
			t.Errorf("details %q, want %q", ed.Details, want)
		}
	}
	if n, _ := f.srv.Cluster("A").Node("a2"); n.Weight() != 4 {
		t.Error("a rejected reload changed the weight")
	}
}

func TestAffinityAndBansNotYet(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, fm := range formats {
		for _, c := range []struct{ method, path, msg string }{
			{"GET", "/api/affinity/192.0.2.1", "no cluster has affinity enabled"},
			{"DELETE", "/api/affinity/192.0.2.1", "no cluster has affinity enabled"},
			{"GET", "/api/bans", "no listener bans clients"},
			{"DELETE", "/api/bans/2001:db8::1", "no listener bans clients"},
		} {
			st, body, hdr := f.call(t, c.method, c.path, "", "Accept", fm.accept)
			wantError(t, 404, body, hdr, st, "not_found", c.msg)
		}
	}
	st, body, hdr := f.call(t, "GET", "/api/affinity/not-an-ip", "")
	wantError(t, 400, body, hdr, st, "bad_request", `"not-an-ip" is not an IP address`)

}

// With affinity on, a client's record can be looked up and forgotten.
func TestAffinityLookupAndForget(t *testing.T) {
	g := newFixture(t, fixtureOpts{clusterA: "affinity = true"})
	st, body, hdr := g.call(t, "GET", "/api/affinity/192.0.2.1", "")
	wantError(t, 404, body, hdr, st, "not_found", "no affinity record for 192.0.2.1")

	const client = "127.0.7.50"
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}}
	c, err := d.Dial("tcp", g.listenerAddr("web"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hi\n"))
	c.Read(make([]byte, 64)) // relayed: the record was written before the first byte
	c.Close()
	for _, fm := range formats {
		st, body, hdr = g.call(t, "GET", "/api/affinity/"+client, "", "Accept", fm.accept)
		if st != 200 {
			t.Fatalf("%s: GET affinity: %d %s", fm.name, st, body)
		}
		var rec admin.AffinityRecord
		decode(t, hdr, body, &rec)
		if rec.Client != client+"/32" || rec.Cluster != "A" || (rec.Node != "a1" && rec.Node != "a2") {
			t.Fatalf("%s: record %+v", fm.name, rec)
		}
	}
	if st, body, _ = g.call(t, "DELETE", "/api/affinity/"+client, ""); st >= 300 {
		t.Fatalf("DELETE affinity: %d %s", st, body)
	}
	st, body, hdr = g.call(t, "GET", "/api/affinity/"+client, "")
	wantError(t, 404, body, hdr, st, "not_found", "no affinity record for "+client)
}

func TestMethodNotAllowed(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, fm := range formats {
		for _, c := range []struct{ method, path, allow string }{
			{"DELETE", "/api/clusters", "GET, HEAD"},
			{"POST", "/api/clusters/A/nodes/a1", "GET, HEAD, PUT, DELETE"},
			{"GET", "/api/reload", "POST"},
			{"PUT", "/metrics", "GET, HEAD"},
		} {
			st, body, hdr := f.call(t, c.method, c.path, "", "Accept", fm.accept)
			wantError(t, 405, body, hdr, st, "method_not_allowed", "method "+c.method+" not allowed")
			if hdr.Get("Allow") != c.allow {
				t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, hdr.Get("Allow"), c.allow)
			}
		}
	}
}
