package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/control"
	"github.com/protobalance/protobalance/internal/demo"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

// The ctl and report tests run an in-process balancer with its admin
// server on 127.0.5.40-42 (the e2e tests use 127.0.5.1-2).

const ctlConfig = `[admin]
listen = "127.0.5.40:0"
token_file = "token"

[[listener]]
name = "front"
bind = "127.0.5.41:0"
cluster = "web"

[[cluster]]
name = "web"
[[cluster.node]]
name = "n1"
address = %q
[[cluster.node]]
name = "n2"
address = %q

[[cluster]]
name = "other"
[[cluster.node]]
name = "o1"
address = %q
`

type ctlFixture struct {
	srv       *proxy.Server
	admin     string // HOST:PORT
	file      string
	tokenFile string
	nodes     []*demo.Node
}

func newCtlFixture(t *testing.T) *ctlFixture {
	t.Helper()
	f := &ctlFixture{}
	for _, name := range []string{"n1", "n2", "o1", "n3"} {
		n, err := demo.Listen(name, "127.0.5.42:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		f.nodes = append(f.nodes, n)
	}
	dir := t.TempDir()
	f.file = filepath.Join(dir, "pb.toml")
	f.tokenFile = filepath.Join(dir, "token")
	os.WriteFile(f.tokenFile, []byte("tok-123\n"), 0o600)
	text := fmt.Sprintf(ctlConfig, f.nodes[0].Addr(), f.nodes[1].Addr(), f.nodes[2].Addr())
	if err := os.WriteFile(f.file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f.file)
	if err != nil {
		t.Fatal(err)
	}
	f.srv, err = proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine()})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctl := control.New(f.srv, control.Options{Version: "v-test", Started: time.Now().Add(-90 * time.Second),
		Reload: func() error {
			next, err := config.Load(f.file)
			if err != nil {
				return err
			}
			return f.srv.Apply(next, 0)
		}})
	adm, err := admin.New(cfg.Admin, ctl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		adm.Shutdown(ctx)
		f.srv.Shutdown(ctx)
	})
	f.admin = adm.Addr().String()
	return f
}

// run calls realMain with the fixture's admin address and token.
func (f *ctlFixture) run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	full := append([]string{args[0], "--admin", f.admin, "--token-file", f.tokenFile}, args[1:]...)
	code = realMain(full, &out, &errb)
	return code, out.String(), errb.String()
}

func (f *ctlFixture) ctl(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := f.run(append([]string{"ctl"}, args...)...)
	if code != 0 {
		t.Fatalf("ctl %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

func (f *ctlFixture) ctlFails(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errs := f.run(append([]string{"ctl"}, args...)...)
	if code != 1 || !strings.Contains(errs, want) {
		t.Errorf("ctl %v: exit %d, stderr %q, stdout %q; want exit 1 and %q", args, code, errs, out, want)
	}
}

var spaces = regexp.MustCompile(` +`)

// squeeze collapses runs of spaces, so table rows compare as words.
func squeeze(s string) string { return spaces.ReplaceAllString(s, " ") }

func TestCtl(t *testing.T) {
	f := newCtlFixture(t)
	out := squeeze(f.ctl(t, "clusters"))
	for _, want := range []string{
		"CLUSTER ALGORITHM NODES GREEN YELLOW RED UNAVAILABLE ACTIVE TOTAL\n",
		"web round-robin 2 2 0 0 0 0 0\n", "other round-robin 1 1 0 0 0 0 0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ctl clusters lacks %q:\n%s", want, out)
		}
	}
	if out := f.ctl(t, "node", "web", "n1", "state", "yellow"); out != `cluster "web": node "n1": state yellow`+"\n" {
		t.Errorf("ctl node state: %q", out)
	}
	if out := f.ctl(t, "node", "web", "n2", "weight", "3"); out != `cluster "web": node "n2": weight 3`+"\n" {
		t.Errorf("ctl node weight: %q", out)
	}
	out = squeeze(f.ctl(t, "cluster", "web"))
	if !strings.HasPrefix(out, "cluster web (round-robin)\nNODE ADDRESS STATE AVAILABLE WEIGHT") ||
		!strings.Contains(out, "n1 "+f.nodes[0].Addr()+" yellow yes 1 0 0 0") ||
		!strings.Contains(out, "n2 "+f.nodes[1].Addr()+" green yes 3 0 0 0") {
		t.Errorf("ctl cluster web:\n%s", out)
	}
	f.ctl(t, "node-add", "web", "n3", f.nodes[3].Addr(), "--weight", "2", "--fallover", "n2", "--standby")
	out = squeeze(f.ctl(t, "cluster", "web"))
	if !strings.Contains(out, "n3 "+f.nodes[3].Addr()+" green yes 2 0 0 0 0 0 0.0 0.0 n2 yes") {
		t.Errorf("added node:\n%s", out)
	}
	if out := f.ctl(t, "node-rm", "web", "n3"); !strings.Contains(out, `node "n3" removed`) {
		t.Errorf("ctl node-rm: %q", out)
	}
	if out := f.ctl(t, "listener", "front", "cluster", "other"); !strings.Contains(out, `listener "front": new connections go to cluster "other"`) {
		t.Errorf("ctl listener: %q", out)
	}
	if out := squeeze(f.ctl(t, "listeners")); !strings.Contains(out, "front 127.0.5.41:0 other 0 0 0 0") {
		t.Errorf("ctl listeners:\n%s", out)
	}
	if out := f.ctl(t, "reload"); out != "configuration reloaded\n" {
		t.Errorf("ctl reload: %q", out)
	}
	var doc admin.ClusterList
	if err := json.Unmarshal([]byte(f.ctl(t, "--json", "clusters")), &doc); err != nil || len(doc.Clusters) != 2 {
		t.Errorf("ctl --json clusters: %v %+v", err, doc)
	}

	// Errors exit 1 with the API's reason.
	f.ctlFails(t, `cluster "web" has no node "nope" (404 not_found)`, "node", "web", "nope", "state", "red")
	f.ctlFails(t, `state "purple": must be green, yellow or red (400 bad_request)`, "node", "web", "n1", "state", "purple")
	f.ctlFails(t, `weight "x": not a number`, "node", "web", "n1", "weight", "x")
	f.ctlFails(t, "no cluster has affinity enabled (404 not_found)", "affinity", "192.0.2.7")
	f.ctlFails(t, "no cluster has affinity enabled", "affinity", "192.0.2.7", "--forget")
	f.ctlFails(t, "no listener bans clients", "bans")
	f.ctlFails(t, "no listener bans clients", "bans", "--lift", "192.0.2.7")
	data, _ := os.ReadFile(f.file)
	os.WriteFile(f.file, append(data, []byte("[[cluster.node]]\nname = \"o2\"\naddress = \"127.0.0.1:99999\"\n")...), 0o600)
	lines := strings.Count(string(data), "\n")
	f.ctlFails(t, fmt.Sprintf("reload rejected; the running configuration is unchanged (422 reload_failed)\n  %s:%d: cluster \"other\": node \"o2\": address", f.file, lines+3), "reload")

	var out2, errb bytes.Buffer
	if code := realMain([]string{"ctl", "--admin", f.admin, "clusters"}, &out2, &errb); code != 1 || !strings.Contains(errb.String(), "missing or wrong token") || !strings.Contains(errb.String(), "(401 unauthorized)") {
		t.Errorf("without the token: exit %d %q", code, errb.String())
	}
	if code, _, _ := f.run("ctl", "frobnicate"); code != 2 {
		t.Errorf("unknown ctl command: exit %d", code)
	}
	if code, _, _ := f.run("ctl", "node", "web", "n1", "colour", "red"); code != 2 {
		t.Errorf("bad ctl arguments: exit %d", code)
	}
}

func TestReport(t *testing.T) {
	f := newCtlFixture(t)
	for i := range 6 {
		c, err := net.Dial("tcp", f.srv.Listener("front").Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "line %d\n", i)
		c.(*net.TCPConn).CloseWrite()
		io.ReadAll(c)
		c.Close()
	}
	// Sessions end just after their clients see EOF: let them finish.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		n1, _ := f.srv.Cluster("web").Node("n1")
		n2, _ := f.srv.Cluster("web").Node("n2")
		if f.srv.Listener("front").Stats.Active.Load()+n1.Stats.Active.Load()+n2.Stats.Active.Load() == 0 {
			break
		}
	}
	code, out, errs := f.run("report", "--interval", "50ms")
	if code != 0 {
		t.Fatalf("report: exit %d %s", code, errs)
	}
	t.Logf("\n%s", out)
	sq := squeeze(out)
	for _, want := range []string{
		"Proto Balance v-test at " + f.admin,
		"\nuptime 1m3", // started 90s before the fixture, give or take
		"\nconnections accepted 6 active 0 0.0/s over",
		"\nrejected 0 no node 0 cap 0 no source port 0 bad proxy header 0 guard 0\n",
		"\nconnect failures 0 nodes marked down 0\n",
		"\nfall-overs 0\n",
		"\nLISTENER BIND CLUSTER ACCEPTED ACTIVE CONN/S NO NODE REFUSED\nfront 127.0.5.41:0 web 6 0 0.0 0 0\n",
		"\nweb 0 6 0 0.0 0.0 \n",
		"\nother 0 0 0 0.0 0.0 \n o1 green yes 1 0 0 0 0.0 0.0 0.0\n",
	} {
		if !strings.Contains(sq, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !regexp.MustCompile(`\n n1 green yes 1 0 3 0 0.0 0.0 \d+\.\d\n n2 green yes 1 0 3 0`).MatchString(sq) {
		t.Errorf("node rows wrong:\n%s", sq)
	}
	// Averages since start: 6 connections over ~90s.
	code, out, _ = f.run("report", "--interval", "0")
	if code != 0 || !strings.Contains(squeeze(out), "connections accepted 6 active 0 0.1/s over 1m3") {
		t.Errorf("report --interval 0:\n%s", out)
	}
}
