package guard

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/protobalance/protobalance/internal/config"
)

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestListSemantics(t *testing.T) {
	type probe struct {
		addr string
		ok   bool
	}
	tests := []struct {
		name        string
		allow, deny []string
		probes      []probe
	}{
		{"deny only: unmatched allowed", nil, []string{"10.0.0.0/8"},
			[]probe{{"10.1.2.3", false}, {"11.0.0.1", true}, {"2001:db8::1", true}}},
		{"allow only: unmatched denied", []string{"192.0.2.0/24"}, nil,
			[]probe{{"192.0.2.9", true}, {"192.0.3.1", false}, {"2001:db8::1", false}}},
		{"/32 allow inside /16 deny wins", []string{"10.1.2.3/32"}, []string{"10.1.0.0/16"},
			[]probe{{"10.1.2.3", true}, {"10.1.2.4", false}, {"10.2.0.1", false}}},
		{"/32 deny inside /16 allow wins", []string{"10.1.0.0/16"}, []string{"10.1.2.3/32"},
			[]probe{{"10.1.2.3", false}, {"10.1.2.4", true}}},
		{"equal-length tie goes to deny", []string{"10.0.0.0/8", "172.16.0.0/12"}, []string{"10.0.0.0/8"},
			[]probe{{"10.9.9.9", false}, {"172.16.0.1", true}}},
		{"nested three levels", []string{"0.0.0.0/0", "10.1.0.0/16"}, []string{"10.0.0.0/8"},
			[]probe{{"1.1.1.1", true}, {"10.9.9.9", false}, {"10.1.9.9", true}}},
		{"host bits are masked", nil, []string{"10.1.2.3/16"},
			[]probe{{"10.1.200.200", false}, {"10.2.0.0", true}}},
		{"IPv6", []string{"2001:db8:1::/48"}, []string{"2001:db8::/32", "2001:db8:1:2::/64"},
			[]probe{{"2001:db8:1:1::5", true}, {"2001:db8:1:2::5", false}, {"2001:db8:2::1", false}, {"2001:dead::1", false}}},
		{"v4-mapped client is unmapped", nil, []string{"198.51.100.0/24"},
			[]probe{{"::ffff:198.51.100.7", false}, {"::ffff:198.51.101.7", true}}},
		{"v4-mapped list entry matches v4 clients", nil, []string{"::ffff:198.51.100.0/120"},
			[]probe{{"198.51.100.7", false}, {"::ffff:198.51.100.8", false}, {"198.51.101.1", true}}},
		{"v4 prefix never matches v6", nil, []string{"0.0.0.0/0"},
			[]probe{{"1.2.3.4", false}, {"::1", true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := listener()
			cfg.Allow, cfg.Deny = prefixes(t, tt.allow...), prefixes(t, tt.deny...)
			g, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.probes {
				a := netip.MustParseAddr(p.addr)
				if got := g.Admit(a, t0).OK; got != p.ok {
					t.Errorf("Admit(%s) = %v, want %v", a, got, p.ok)
				}
				if got := g.Permits(a); got != p.ok {
					t.Errorf("Permits(%s) = %v, want %v", a, got, p.ok)
				}
			}
		})
	}
}

func TestNoRulesIsNil(t *testing.T) {
	g, err := New(listener(), nil)
	if err != nil || g != nil {
		t.Fatalf("New = %v, %v; want nil, nil", g, err)
	}
	a := netip.MustParseAddr("192.0.2.1")
	if v := g.Admit(a, t0); !v.OK {
		t.Fatalf("nil guard refused: %+v", v)
	}
	g.Release(a)
	if g.Bans(t0) != nil || g.Lift(a) || g.Counters() != (Counters{}) || !g.Permits(a) {
		t.Fatal("nil guard methods are not no-ops")
	}
	g.CarryOver(nil)
}

func TestListFiles(t *testing.T) {
	dir := t.TempDir()
	allow := filepath.Join(dir, "allow.txt")
	deny := filepath.Join(dir, "deny.txt")
	write(t, allow, "# customers\n\n192.0.2.7   # one host\n2001:db8:1::/48\n\t10.1.2.3/32\n")
	write(t, deny, "10.1.0.0/16\n2001:db8::/32 # whole doc range\n")
	cfg := listener()
	cfg.AllowFile, cfg.DenyFile = allow, deny
	cfg.Deny = prefixes(t, "192.0.2.0/24")
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"192.0.2.7": true, "192.0.2.8": false, "10.1.2.3": true, "10.1.2.4": false,
		"2001:db8:1::9": true, "2001:db8:2::9": false, "8.8.8.8": false,
	} {
		if got := g.Permits(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Permits(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestListFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "deny.txt")
	write(t, bad, "10.0.0.0/8\n# fine\n10.0.0.300\n\n2001:db8::/129\n1.2.3.4 5.6.7.8\nfe80::1%eth0\n")
	cfg := listener()
	cfg.DenyFile = bad
	_, err := New(cfg, nil)
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want config.Errors", err)
	}
	wantLines := []int{3, 5, 6, 7}
	if len(es) != len(wantLines) {
		t.Fatalf("got %d errors, want %d:\n%v", len(es), len(wantLines), err)
	}
	for i, e := range es {
		if e.File != bad || e.Line != wantLines[i] {
			t.Errorf("error %d at %s:%d, want %s:%d", i, e.File, e.Line, bad, wantLines[i])
		}
	}
	if want := bad + ":3: \"10.0.0.300\": not an IP address or CIDR prefix"; es[0].Error() != want {
		t.Errorf("first error %q, want %q", es[0].Error(), want)
	}
	var one *config.Error
	if !errors.As(err, &one) || one.Line != 3 {
		t.Errorf("errors.As(*config.Error) = %v", one)
	}

	cfg.DenyFile = filepath.Join(dir, "missing.txt")
	_, err = New(cfg, nil)
	if !errors.As(err, &one) || one.File != cfg.DenyFile || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestListErrorCap(t *testing.T) {
	_, err := parseList(strings.NewReader(strings.Repeat("junk\n", 1000)), "f")
	var es config.Errors
	if !errors.As(err, &es) || len(es) != maxLineErrors {
		t.Fatalf("got %d errors, want %d", len(es), maxLineErrors)
	}
	_, err = parseList(strings.NewReader("1.2.3.4\n"+strings.Repeat("x", maxLine+10)+"\n"), "f")
	if err == nil || !strings.Contains(err.Error(), "f:2: line longer") {
		t.Fatalf("long line: %v", err)
	}
}

// TestTableModel checks the table against a linear scan over random lists.
func TestTableModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		cfg := listener()
		n := 1 + r.IntN(300)
		for range n {
			p := randPrefix(r, 8) // short prefixes so they nest and collide
			if r.IntN(2) == 0 {
				cfg.Allow = append(cfg.Allow, p)
			} else {
				cfg.Deny = append(cfg.Deny, p)
			}
		}
		g, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 2000 {
			a := randAddr(r)
			if got, want := g.Permits(a), modelPermits(cfg, a); got != want {
				t.Fatalf("round %d: Permits(%s) = %v, model %v", round, a, got, want)
			}
		}
	}
}

func modelPermits(cfg *config.Listener, a netip.Addr) bool {
	best, deny := -1, false
	check := func(ps []netip.Prefix, isDeny bool) {
		for _, p := range ps {
			p = normalize(p)
			if p.Contains(a) && (p.Bits() > best || p.Bits() == best && isDeny) {
				best, deny = p.Bits(), isDeny
			}
		}
	}
	check(cfg.Allow, false)
	check(cfg.Deny, true)
	if best < 0 {
		return len(cfg.Allow) == 0
	}
	return !deny
}

// randAddr returns an address from a small space so that it hits the
// prefixes of randPrefix often: 10.x.y.z or 2001:db8:x::y.
func randAddr(r *rand.Rand) netip.Addr {
	if r.IntN(4) == 0 {
		var b [16]byte
		b[0], b[1], b[2], b[3], b[4], b[15] = 0x20, 0x01, 0x0d, 0xb8, byte(r.IntN(4)), byte(r.IntN(256))
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
}

func randPrefix(r *rand.Rand, spread int) netip.Prefix {
	a := randAddr(r)
	if a.Is4() {
		return netip.PrefixFrom(a, 8+r.IntN(spread*3+1))
	}
	return netip.PrefixFrom(a, 32+r.IntN(spread*12+1))
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
