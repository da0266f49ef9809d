package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

const minimal = `[[listener]]
name = "web"
bind = "0.0.0.0:8080"
cluster = "web"

[[cluster]]
name = "web"

[[cluster.node]]
name = "n1"
address = "10.0.0.1:9001"
`

// TestMinimalDefaults checks every default of DESIGN.md section 3 against
// literal values (not against defaults.go, which would test it by itself).
func TestMinimalDefaults(t *testing.T) {
	got, err := Parse("pb.toml", []byte(minimal), "/etc/pb")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:   "pb.toml",
		Dir:    "/etc/pb",
		Global: Global{MaxConns: 0, ShutdownTimeout: 30 * time.Second, DataPath: "auto"},
		Admin:  Admin{Listen: "127.0.0.1:9900"},
		Store:  Store{Path: "/etc/pb/protobalance.db"},
		Listeners: []Listener{{
			Name:         "web",
			Bind:         Bind{Addr: netip.MustParseAddr("0.0.0.0"), FirstPort: 8080, LastPort: 8080},
			Cluster:      "web",
			ClientMaskV4: 32,
			ClientMaskV6: 64,
			BanTime:      10 * time.Minute,
			Line:         1,
		}},
		Clusters: []Cluster{{
			Name:             "web",
			Algorithm:        "round-robin",
			LoadRating:       "(active + 1) / weight",
			AffinityTTL:      720 * time.Hour,
			AffinityMax:      1000000,
			AffinityMaskV4:   32,
			AffinityMaskV6:   128,
			ConnectTimeout:   3 * time.Second,
			DispatchTimeout:  10 * time.Second,
			EarlyCloseWindow: time.Second,
			IdleTimeout:      time.Hour,
			FinTimeout:       time.Minute,
			RetryInterval:    10 * time.Second,
			RateWindow:       10 * time.Second,
			SourceHash:       true,
			Nodes: []Node{{
				Name: "n1", Host: "10.0.0.1", Port: 9001, Weight: 1, State: "green", Line: 9,
			}},
			Line: 6,
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("minimal config:\n got %+v\nwant %+v", got, want)
	}
}

// TestCheckDefaults: an empty [cluster.check] table enables a tcp check
// with every default.
func TestCheckDefaults(t *testing.T) {
	c, err := Parse("pb.toml", []byte(strings.Replace(minimal, "\n[[cluster.node]]", "[cluster.check]\n\n[[cluster.node]]", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	want := &Check{Type: "tcp", Interval: 2 * time.Second, Timeout: time.Second,
		Rise: 2, Fall: 2, Path: "/", Status: 200, Line: 8}
	if got := c.Clusters[0].Check; !reflect.DeepEqual(got, want) {
		t.Errorf("check:\n got %+v\nwant %+v", got, want)
	}
}

// TestFull sets every key to a non-default value and checks where it lands.
func TestFull(t *testing.T) {
	c, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	pfx := netip.MustParsePrefix
	if c.File != "testdata/full.toml" || c.Dir != "testdata" {
		t.Errorf("File, Dir = %q, %q", c.File, c.Dir)
	}
	if want := (Global{MaxConns: 5000, ShutdownTimeout: 5 * time.Second, DataPath: "auto"}); c.Global != want {
		t.Errorf("global = %+v", c.Global)
	}
	if want := (Admin{Listen: "0.0.0.0:9901", TokenFile: filepath.Join("testdata", "secrets/token")}); c.Admin != want {
		t.Errorf("admin = %+v", c.Admin)
	}
	if want := (Store{Path: "/var/lib/protobalance/state.db", Redis: "redis://10.0.0.9:6379/2"}); c.Store != want {
		t.Errorf("store = %+v", c.Store)
	}
	wantL := []Listener{{
		Name: "ftp", Bind: Bind{ip("0.0.0.0"), 21, 21}, Cluster: "ftp", AcceptProxy: true,
		Allow:     []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.0.2.7/32"), pfx("2001:db8::/32")},
		Deny:      []netip.Prefix{pfx("10.9.0.0/16")},
		AllowFile: filepath.Join("testdata", "allow.txt"), DenyFile: "/etc/deny.txt",
		MaxConns: 100, MaxConnRate: 20, MaxClientConns: 4, ClientMaskV4: 24, ClientMaskV6: 48,
		BanTime: time.Hour, Line: 15,
	}, {
		Name: "ftp-data", Bind: Bind{ip("::"), 30000, 30099}, Cluster: "ftp-data",
		ClientMaskV4: 32, ClientMaskV6: 64, BanTime: 10 * time.Minute, Line: 31,
	}}
	if !reflect.DeepEqual(c.Listeners, wantL) {
		t.Errorf("listeners:\n got %+v\nwant %+v", c.Listeners, wantL)
	}
	wantC := Cluster{
		Name: "ftp", Algorithm: "min-load", LoadRating: "active / weight", HashKey: "k",
		Affinity: true, AffinityGroup: "ftp", AffinityTTL: 24 * time.Hour, AffinityMax: 500,
		AffinityMaskV4: 24, AffinityMaskV6: 64, ConnectTimeout: time.Second,
		DispatchTimeout: 4 * time.Second, EarlyCloseWindow: 0, IdleTimeout: 0,
		FinTimeout: 30 * time.Second, RetryInterval: 5 * time.Second, RateWindow: time.Minute,
		SourceAddresses: []netip.Addr{ip("10.0.0.5"), ip("fd00::5")}, SourceHash: false,
		ProxyProtocol: "v2", Transparent: false,
		Check: &Check{Type: "send-expect", Interval: 5 * time.Second, Timeout: 500 * time.Millisecond,
			Rise: 3, Fall: 4, Port: 2121, Send: "NOOP\r\n", Expect: "2[0-9][0-9] ", Path: "/health",
			Status: 204, Line: 59, ExpectRE: regexp.MustCompile(`^(?:2[0-9][0-9] )`)},
		Nodes: []Node{
			{Name: "a", Host: "ftp-a.example.com", Port: 21, Weight: 3, Fallover: "b", Standby: true,
				MaxConns: 50, State: "yellow", Line: 71},
			{Name: "b", Host: "fd00::2", Port: 2121, Weight: 0, State: "red", Line: 80},
		},
		Line: 36,
	}
	if !reflect.DeepEqual(c.Clusters[0], wantC) {
		t.Errorf("cluster ftp:\n got %+v\nwant %+v", c.Clusters[0], wantC)
	}
	if re := c.Clusters[0].Check.ExpectRE; !re.MatchString("220 ready") || re.MatchString("x220 ") {
		t.Errorf("expect %v must match at the start of the reply only", re)
	}
	data := c.Cluster("ftp-data")
	if data == nil || data.Algorithm != "ip-hash" || data.EffectiveHashKey() != "ftp" ||
		!data.Nodes[0].PortLess() || data.Nodes[1].Host != "fd00::2" || data.Nodes[1].Address() != "fd00::2" {
		t.Errorf("cluster ftp-data = %+v", data)
	}
}

// TestExample: the shipped example parses, and every value it writes is
// the default it claims to be.
func TestExample(t *testing.T) {
	c, err := Load("../../examples/protobalance.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Global != DefaultGlobal() || c.Admin != DefaultAdmin() ||
		c.Store.Path != filepath.Join(c.Dir, DefaultStore().Path) || c.Store.Redis != "" {
		t.Errorf("sections differ from defaults: %+v %+v %+v", c.Global, c.Admin, c.Store)
	}
	l := DefaultListener()
	l.Name, l.Bind, l.Cluster, l.Line = "web", c.Listeners[0].Bind, "web", c.Listeners[0].Line
	if !reflect.DeepEqual(c.Listeners[0], l) {
		t.Errorf("listener differs from defaults:\n got %+v\nwant %+v", c.Listeners[0], l)
	}
	cl := DefaultCluster()
	cl.Name, cl.Line, cl.Check, cl.Nodes = "web", c.Clusters[0].Line, c.Clusters[0].Check, c.Clusters[0].Nodes
	if !reflect.DeepEqual(c.Clusters[0], cl) {
		t.Errorf("cluster differs from defaults:\n got %+v\nwant %+v", c.Clusters[0], cl)
	}
	k := DefaultCheck()
	k.Line = c.Clusters[0].Check.Line
	if *c.Clusters[0].Check != k {
		t.Errorf("check differs from defaults:\n got %+v\nwant %+v", *c.Clusters[0].Check, k)
	}
	n := DefaultNode()
	n1 := c.Clusters[0].Nodes[0]
	n.Name, n.Host, n.Port, n.Line = "n1", n1.Host, n1.Port, n1.Line
	if n1 != n {
		t.Errorf("node n1 differs from defaults:\n got %+v\nwant %+v", n1, n)
	}
	if _, err := Load("../../examples/minimal.toml"); err != nil {
		t.Error(err)
	}
}

// TestExampleShowsEveryKey: every key the loader accepts appears in the
// example, so the example stays the complete reference.
func TestExampleShowsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../examples/protobalance.toml")
	if err != nil {
		t.Fatal(err)
	}
	ix := buildIndex(data)
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			path := join(prefix, f.Tag.Get("toml"))
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				path += "[0]"
				ft = ft.Elem()
			}
			if _, ok := ix.lines[path]; !ok {
				t.Errorf("examples/protobalance.toml does not show %s", path)
			}
			if ft.Kind() == reflect.Struct {
				walk(path, ft)
			}
		}
	}
	walk("", reflect.TypeFor[rawDoc]())
}

func TestPaths(t *testing.T) {
	src := minimal + `
[admin]
token_file = "/run/secrets/token"
[store]
path = "state/pb.db"
`
	src = strings.Replace(src, `cluster = "web"`, "cluster = \"web\"\nallow_file = \"lists/allow.txt\"", 1)
	c, err := Parse("pb.toml", []byte(src), "/etc/pb")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.TokenFile != "/run/secrets/token" || c.Store.Path != "/etc/pb/state/pb.db" ||
		c.Listeners[0].AllowFile != "/etc/pb/lists/allow.txt" || c.Listeners[0].DenyFile != "" {
		t.Errorf("paths: %q %q %q %q", c.Admin.TokenFile, c.Store.Path, c.Listeners[0].AllowFile, c.Listeners[0].DenyFile)
	}
	// "" stays "": an explicitly empty store path is left to the caller.
	c, err = Parse("pb.toml", []byte(minimal+"[store]\npath = \"\"\n"), "/etc/pb")
	if err != nil || c.Store.Path != "" {
		t.Errorf("empty store path: %v %q", err, c.Store.Path)
	}
}

// TestExplicitZero: "0" means none where allowed and is not the default.
func TestExplicitZero(t *testing.T) {
	src := strings.Replace(minimal, `name = "web"`+"\n\n[[cluster.node]]",
		`name = "web"`+"\nidle_timeout = \"0\"\nfin_timeout = \"0s\"\nsource_hash = false\n\n[[cluster.node]]", 1)
	c, err := Parse("pb.toml", []byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Clusters[0]
	if cl.IdleTimeout != 0 || cl.FinTimeout != 0 || cl.SourceHash || cl.ConnectTimeout != 3*time.Second {
		t.Errorf("got idle %v fin %v source_hash %v connect %v", cl.IdleTimeout, cl.FinTimeout, cl.SourceHash, cl.ConnectTimeout)
	}
}
