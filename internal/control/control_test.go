package control

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

const testConfig = `[[listener]]
name = "web"
bind = "127.0.7.9:0"
cluster = "A"
%s
[[cluster]]
name = "A"
[[cluster.node]]
name = "a1"
address = "127.0.7.9:1"
[[cluster.node]]
name = "a2"
address = "127.0.7.9:2"
fallover = "a1"
`

// newController builds a server that is never started: no socket opens.
func newController(t *testing.T, extra string, reload func() error) *Controller {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte(strings.Replace(testConfig, "%s", extra, 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine()})
	if err != nil {
		t.Fatal(err)
	}
	return New(srv, Options{Reload: reload, Version: "x"})
}

func TestErrorsMapToSentinels(t *testing.T) {
	c := newController(t, "", nil)
	w, neg := 2, -1
	for _, tc := range []struct {
		name string
		err  error
		want error
		msg  string
	}{
		{"state of unknown node", c.SetNodeState("A", "zz", "red"), admin.ErrNotFound, `cluster "A" has no node "zz"`},
		{"bad state", c.SetNodeState("A", "a1", "blue"), admin.ErrInvalid, `unknown state "blue"`},
		{"negative weight", c.SetNodeWeight("A", "a1", -1), admin.ErrInvalid, "weight -1"},
		{"unknown cluster", c.SetNodeWeight("Z", "a1", 1), admin.ErrNotFound, `no cluster "Z"`},
		{"duplicate node", c.AddNode("A", admin.NodeSpec{Name: "a1", Address: "10.0.0.1:1"}), admin.ErrConflict, "already has"},
		{"invalid node", c.AddNode("A", admin.NodeSpec{Name: "n", Address: "10.0.0.1:1", Weight: &neg}), admin.ErrInvalid, "weight -1: must be >= 0"},
		{"unknown fallover", c.AddNode("A", admin.NodeSpec{Name: "n", Address: "10.0.0.1:1", Fallover: "q"}), admin.ErrInvalid, `fallover "q"`},
		{"remove unknown", c.RemoveNode("A", "zz"), admin.ErrNotFound, "zz"},
		{"switch unknown listener", c.SwitchListener("nope", "A"), admin.ErrNotFound, `no listener "nope"`},
		{"switch to unknown cluster", c.SwitchListener("web", "Z"), admin.ErrInvalid, `no cluster "Z"`},
		{"no reload", c.Reload(), admin.ErrUnsupported, "no configuration file"},
		{"affinity off", c.ForgetAffinity(netip.MustParseAddr("192.0.2.1")), admin.ErrNotFound, "no cluster has affinity enabled"},
	} {
		if !errors.Is(tc.err, tc.want) || !strings.Contains(tc.err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, tc.err, tc.want, tc.msg)
		}
	}
	if err := c.AddNode("A", admin.NodeSpec{Name: "a3", Address: "10.0.0.3:80", Weight: &w, Fallover: "a2"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveNode("A", "a2"); err != nil {
		t.Fatal(err)
	}
	d, err := c.Cluster("A")
	if err != nil || len(d.Nodes) != 2 || d.Nodes[1].Name != "a3" || d.Nodes[1].Weight != 2 || d.Nodes[1].Fallover != "" {
		t.Errorf("after add and remove: %+v %v", d, err)
	}
	if err := c.RemoveNode("A", "a3"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveNode("A", "a1"); !errors.Is(err, admin.ErrConflict) {
		t.Errorf("removing the last node: %v", err)
	}
}

func TestReloadErrors(t *testing.T) {
	_, perr := config.Parse("pb.toml", []byte("[[listener]]\nname = 3\n"), "")
	c := newController(t, "", func() error { return perr })
	var re *admin.ReloadError
	if err := c.Reload(); !errors.As(err, &re) || len(re.Problems) == 0 || !strings.HasPrefix(re.Problems[0], "pb.toml:2: ") {
		t.Errorf("config errors: %#v", err)
	}
	c = newController(t, "", func() error { return errors.New(`listener "x": address already in use`) })
	if err := c.Reload(); !errors.As(err, &re) || re.Problems[0] != `listener "x": address already in use` {
		t.Errorf("other error: %#v", err)
	}
}

func TestBans(t *testing.T) {
	c := newController(t, "max_conn_rate = 5", nil)
	if bans, err := c.Bans(); err != nil || len(bans) != 0 {
		t.Errorf("bans of a fresh guard: %v, %v; want none", bans, err)
	}
	if err := c.LiftBan(netip.MustParseAddr("192.0.2.1")); !errors.Is(err, admin.ErrNotFound) {
		t.Errorf("lifting a ban that does not exist: %v, want not found", err)
	}
	c = newController(t, "", nil)
	if _, err := c.Bans(); !errors.Is(err, admin.ErrNotFound) {
		t.Errorf("bans without max_conn_rate: %v, want not found", err)
	}
}
