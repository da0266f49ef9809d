package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; a success satisfies every promise a
// Config makes to its users; a failure is a non-empty Errors whose lines
// lie inside the document and whose text never leaks our Go types.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	for _, pattern := range []string{"testdata/*.toml", "testdata/bad/*.toml", "../../examples/*.toml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data, "/base")
		if err != nil {
			checkFailure(t, data, c, err)
			return
		}
		checkInvariants(t, c)
		// Deterministic: a second parse gives the same config.
		if c2, err := Parse("f.toml", data, "/base"); err != nil || c2.Clusters[0].Name != c.Clusters[0].Name {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}

func checkFailure(t *testing.T, data []byte, c *Config, err error) {
	if c != nil {
		t.Fatal("Config returned with an error")
	}
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
	}
	lines := bytes.Count(data, []byte{'\n'}) + 1
	for _, e := range es {
		if e.File != "f.toml" || e.Line < 1 || e.Line > lines || e.Msg == "" {
			t.Fatalf("bad error %+v (document has %d lines)", e, lines)
		}
		if strings.Contains(e.Msg, "config.raw") || strings.Contains(e.Msg, "*string") {
			t.Fatalf("error leaks Go types: %s", e.Msg)
		}
	}
}

func checkInvariants(t *testing.T, c *Config) {
	if len(c.Listeners) == 0 || len(c.Clusters) == 0 {
		t.Fatal("a valid config has a listener and a cluster")
	}
	if c.Global.MaxConns < 0 || c.Global.ShutdownTimeout < 0 {
		t.Fatalf("global %+v", c.Global)
	}
	seen := map[string]bool{}
	for _, l := range c.Listeners {
		if l.Name == "" || seen[l.Name] || c.Cluster(l.Cluster) == nil {
			t.Fatalf("listener %q: empty, duplicate or dangling cluster %q", l.Name, l.Cluster)
		}
		seen[l.Name] = true
		b := l.Bind
		if !b.Addr.IsValid() || b.FirstPort > b.LastPort || (b.IsRange() && b.FirstPort == 0) {
			t.Fatalf("listener %q: bind %+v", l.Name, b)
		}
		if l.ClientMaskV4 < 0 || l.ClientMaskV4 > 32 || l.ClientMaskV6 < 0 || l.ClientMaskV6 > 128 ||
			l.MaxConns < 0 || l.MaxConnRate < 0 || l.MaxClientConns < 0 || l.BanTime < 0 || l.Line < 1 {
			t.Fatalf("listener %+v", l)
		}
		for _, p := range append(slices.Clone(l.Allow), l.Deny...) {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("listener %q: prefix %v", l.Name, p)
			}
		}
		if (l.AllowFile != "" && !filepath.IsAbs(l.AllowFile)) || (l.DenyFile != "" && !filepath.IsAbs(l.DenyFile)) {
			t.Fatalf("listener %q: unresolved path", l.Name)
		}
	}
	seen = map[string]bool{}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		if cl.Name == "" || seen[cl.Name] || len(cl.Nodes) == 0 || cl.Line < 1 {
			t.Fatalf("cluster %q: empty name, duplicate or no nodes", cl.Name)
		}
		seen[cl.Name] = true
		if !slices.Contains(Algorithms, cl.Algorithm) || !slices.Contains(proxyProtocols, cl.ProxyProtocol) ||
			cl.ConnectTimeout <= 0 || cl.DispatchTimeout <= 0 || cl.RateWindow <= 0 || cl.RetryInterval <= 0 ||
			cl.AffinityTTL <= 0 || cl.AffinityMax < 1 || cl.IdleTimeout < 0 || cl.FinTimeout < 0 || cl.EarlyCloseWindow < 0 ||
			cl.AffinityMaskV4 < 0 || cl.AffinityMaskV4 > 32 || cl.AffinityMaskV6 < 0 || cl.AffinityMaskV6 > 128 {
			t.Fatalf("cluster %+v", cl)
		}
		if k := cl.Check; k != nil {
			if !slices.Contains(CheckTypes, k.Type) || k.Interval <= 0 || k.Timeout <= 0 || k.Rise < 1 || k.Fall < 1 ||
				k.Status < 100 || k.Status > 599 || !strings.HasPrefix(k.Path, "/") || (k.Expect != "") != (k.ExpectRE != nil) {
				t.Fatalf("cluster %q: check %+v", cl.Name, k)
			}
		}
		checkNodes(t, cl)
	}
}

func checkNodes(t *testing.T, cl *Cluster) {
	byName := map[string]int{}
	for j, n := range cl.Nodes {
		if n.Name == "" || n.Host == "" || n.Weight < 0 || n.MaxConns < 0 || !slices.Contains(States, n.State) || n.Line < 1 {
			t.Fatalf("cluster %q: node %+v", cl.Name, n)
		}
		if _, dup := byName[n.Name]; dup {
			t.Fatalf("cluster %q: duplicate node %q", cl.Name, n.Name)
		}
		byName[n.Name] = j
		if cl.Check != nil && cl.Check.Port == 0 && n.PortLess() {
			t.Fatalf("cluster %q: check cannot reach port-less node %q", cl.Name, n.Name)
		}
	}
	for _, n := range cl.Nodes {
		// Every fall-over chain ends: at most len(Nodes) steps.
		cur := n
		for steps := 0; cur.Fallover != ""; steps++ {
			k, ok := byName[cur.Fallover]
			if !ok || steps > len(cl.Nodes) {
				t.Fatalf("cluster %q: node %q: fallover chain dangles or loops", cl.Name, n.Name)
			}
			cur = cl.Nodes[k]
		}
	}
}
