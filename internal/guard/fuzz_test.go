package guard

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/protobalance/protobalance/internal/config"
)

// FuzzParseList checks that the list parser never panics, that it returns
// either masked prefixes or errors on lines that exist, and that printing
// what it parsed and parsing that again gives the same prefixes.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"10.0.0.0/8\n# c\n\n192.0.2.7 # host\n",
		"2001:db8::/32\n::ffff:1.2.3.4\n::ffff:0.0.0.0/96\n",
		"1.2.3.4/33\n", "fe80::1%eth0\n", "1.2.3.4 5.6.7.8", "\r\n\t#\n", "::/0\n0.0.0.0/0",
		"10.1.2.3/16\r\n", "1.2.3.4/", "/8", "01.2.3.4", "1::2::3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := parseList(strings.NewReader(s), "f")
		lines := strings.Count(s, "\n") + 1
		if err != nil {
			var es config.Errors
			if !errors.As(err, &es) || len(es) == 0 || ps != nil {
				t.Fatalf("error %v of type %T with %d prefixes", err, err, len(ps))
			}
			for _, e := range es {
				if e.File != "f" || e.Line < 1 || e.Line > lines+1 {
					t.Fatalf("error at %s:%d, input has %d lines", e.File, e.Line, lines)
				}
			}
			return
		}
		var sb strings.Builder
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() && p.Bits() >= 96 {
				t.Fatalf("bad prefix %v", p)
			}
			sb.WriteString(p.String() + "\n")
		}
		again, err := parseList(strings.NewReader(sb.String()), "g")
		if err != nil || len(again) != len(ps) {
			t.Fatalf("reparse of %q: %v, %d prefixes", sb.String(), err, len(again))
		}
		for i := range ps {
			if again[i] != ps[i] {
				t.Fatalf("reparse %v != %v", again[i], ps[i])
			}
		}
		// The table built from them answers without panicking.
		cfg := listener()
		cfg.Deny = ps
		if g, err := New(cfg, nil); err == nil {
			for _, p := range ps {
				if g.Permits(p.Addr()) {
					t.Fatalf("%v not denied", p)
				}
			}
			g.Permits(netip.Addr{})
		}
	})
}
