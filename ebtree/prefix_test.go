package ebtree

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// prefixModel checks a PrefixTree against a map scanned by brute force.
type prefixModel struct {
	tb  testing.TB
	tr  *PrefixTree[string]
	ref map[netip.Prefix]*PrefixNode[string]

	hits, deep int // matches found, and found below /1 (for test sanity)
}

func newPrefixModel(tb testing.TB) *prefixModel {
	return &prefixModel{tb: tb, tr: &PrefixTree[string]{}, ref: map[netip.Prefix]*PrefixNode[string]{}}
}

// brute returns the longest prefix in the model containing a.
func (m *prefixModel) brute(a netip.Addr) *PrefixNode[string] {
	var best *PrefixNode[string]
	bits := -1
	for p, n := range m.ref {
		if p.Contains(a) && p.Bits() > bits {
			best, bits = n, p.Bits()
		}
	}
	return best
}

func (m *prefixModel) insert(p netip.Prefix) {
	m.tb.Helper()
	p = p.Masked()
	n := &PrefixNode[string]{Value: p.String()}
	got := m.tr.Insert(p, n)
	if old, ok := m.ref[p]; ok {
		if got != old || n.Linked() {
			m.tb.Fatalf("Insert(%v) again: got %v, want the existing entry", p, got.Prefix())
		}
	} else {
		if got != n || n.Prefix() != p {
			m.tb.Fatalf("Insert(%v) returned %v", p, got.Prefix())
		}
		m.ref[p] = n
	}
	m.check("insert " + p.String())
}

func (m *prefixModel) delete(p netip.Prefix) {
	m.tb.Helper()
	n := m.ref[p]
	m.tr.Delete(n)
	delete(m.ref, p)
	if n.Linked() {
		m.tb.Fatalf("Delete(%v): still linked", p)
	}
	m.check("delete " + p.String())
}

func (m *prefixModel) check(op string) {
	m.tb.Helper()
	if err := checkPrefixTree(m.tr); err != nil {
		m.tb.Fatalf("after %s: %v", op, err)
	}
}

func (m *prefixModel) match(a netip.Addr) {
	m.tb.Helper()
	got, want := m.tr.LongestMatch(a), m.brute(a)
	if want != nil {
		m.hits++
		if want.Prefix().Bits() > 1 {
			m.deep++
		}
	}
	if got != want {
		m.tb.Fatalf("LongestMatch(%v) = %s, want %s", a, pdesc(got), pdesc(want))
	}
}

func (m *prefixModel) lookup(p netip.Prefix) {
	m.tb.Helper()
	if got, want := m.tr.Lookup(p), m.ref[p.Masked()]; got != want {
		m.tb.Fatalf("Lookup(%v) = %s, want %s", p, pdesc(got), pdesc(want))
	}
}

// checkAll compares the tree's walk with the sorted model.
func (m *prefixModel) checkAll() {
	m.tb.Helper()
	want := slices.SortedFunc(maps.Keys(m.ref), func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	var got []netip.Prefix
	for n := range m.tr.All() {
		got = append(got, n.Prefix())
	}
	if !slices.Equal(got, want) {
		m.tb.Fatalf("All() = %v, want %v", got, want)
	}
}

func pdesc(n *PrefixNode[string]) string {
	if n == nil {
		return "nil"
	}
	return n.Value
}

// randAddr returns an address of the family of base, equal to base in its
// first keep bits and random after.
func randAddr(r *rand.Rand, base netip.Addr, keep int) netip.Addr {
	b := base.As16()
	var rnd [16]byte
	binary.BigEndian.PutUint64(rnd[:8], r.Uint64())
	binary.BigEndian.PutUint64(rnd[8:], r.Uint64())
	off := 0
	if base.Is4() {
		off = 12
		keep += 96
	}
	for i := off; i < 16; i++ {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= keep {
				mask := byte(0x80 >> bit)
				b[i] = b[i]&^mask | rnd[i]&mask
			}
		}
	}
	a := netip.AddrFrom16(b)
	if base.Is4() {
		return a.Unmap()
	}
	return a
}

// randPrefix draws nested-looking prefixes: inside base's first keep bits,
// lengths anywhere from 0 to the full width.
func randPrefix(r *rand.Rand, base netip.Addr, keep int) netip.Prefix {
	a := randAddr(r, base, keep)
	return netip.PrefixFrom(a, r.IntN(a.BitLen()+1)).Masked()
}

func TestPrefixModel(t *testing.T) {
	cases := []struct {
		name string
		base netip.Addr
		keep int
	}{
		{"v4", netip.MustParseAddr("10.0.0.0"), 8},
		{"v4dense", netip.MustParseAddr("10.1.2.0"), 26},
		{"v6", netip.MustParseAddr("2001:db8::"), 32},
		{"v6dense", netip.MustParseAddr("2001:db8::ff00"), 120},
	}
	rounds := 600
	if testing.Short() {
		rounds = 250
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for seed := range uint64(3) {
				r := rand.New(rand.NewPCG(seed, 7))
				m := newPrefixModel(t)
				var added []netip.Prefix
				for range rounds {
					switch op := r.IntN(10); {
					case op < 5:
						p := randPrefix(r, c.base, c.keep)
						m.insert(p)
						added = append(added, p)
					case op < 7 && len(m.ref) > 0:
						p := added[r.IntN(len(added))]
						if m.ref[p] != nil {
							m.delete(p)
						}
					case op < 8 && len(added) > 0:
						m.lookup(added[r.IntN(len(added))])
						m.lookup(randPrefix(r, c.base, c.keep))
					default:
						m.match(randAddr(r, c.base, c.keep))
						m.match(randAddr(r, c.base, 0))
						if len(added) > 0 {
							p := added[r.IntN(len(added))]
							m.match(randAddr(r, p.Addr(), p.Bits()))
						}
					}
				}
				m.checkAll()
				if m.deep < rounds/20 {
					t.Errorf("seed %d: only %d of %d matches below /1: test is too weak", seed, m.deep, m.hits)
				}
			}
		})
	}
}

// TestPrefixFamilies checks that IPv4 and IPv6 live in separate trees.
func TestPrefixFamilies(t *testing.T) {
	var tr PrefixTree[string]
	tr.Insert(netip.MustParsePrefix("0.0.0.0/0"), &PrefixNode[string]{Value: "v4 default"})
	tr.Insert(netip.MustParsePrefix("::/0"), &PrefixNode[string]{Value: "v6 default"})
	tr.Insert(netip.MustParsePrefix("::ffff:0:0/96"), &PrefixNode[string]{Value: "mapped"})
	for _, c := range []struct{ addr, want string }{
		{"192.0.2.1", "v4 default"},
		{"2001:db8::1", "v6 default"},
		{"::ffff:192.0.2.1", "mapped"},
	} {
		if got := tr.LongestMatch(netip.MustParseAddr(c.addr)); got == nil || got.Value != c.want {
			t.Errorf("LongestMatch(%s) = %v, want %s", c.addr, got, c.want)
		}
	}
	if got := tr.Insert(netip.Prefix{}, &PrefixNode[string]{}); got != nil {
		t.Errorf("Insert(invalid prefix) = %v, want nil", got)
	}
	if tr.Len() != 3 {
		t.Errorf("Len = %d, want 3", tr.Len())
	}
	if got := tr.Lookup(netip.MustParsePrefix("10.0.0.0/8")); got != nil {
		t.Errorf("Lookup(absent) = %v", got)
	}
}

// TestPrefixUnmasked checks that host bits beyond the length are ignored.
func TestPrefixUnmasked(t *testing.T) {
	var tr PrefixTree[int]
	n := &PrefixNode[int]{}
	tr.Insert(netip.MustParsePrefix("10.1.2.3/16"), n)
	if got := n.Prefix(); got != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("Prefix() = %v", got)
	}
	if tr.Lookup(netip.MustParsePrefix("10.1.9.9/16")) != n {
		t.Errorf("Lookup with other host bits failed")
	}
	if tr.LongestMatch(netip.MustParseAddr("10.1.200.1")) != n {
		t.Errorf("LongestMatch failed")
	}
}

func FuzzPrefix(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte("\x80\x00\x00\x00\x00\x20\xff\xff\xff\xff\x01\x40"))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = data[:min(len(data), 6*300)] // the checks are quadratic
		m := newPrefixModel(t)
		var added []netip.Prefix
		// Records of 6 bytes: op+family, length, 4 address bytes (copied
		// into the top of an IPv6 address, so nesting is likely).
		for len(data) >= 6 {
			rec := data[:6]
			data = data[6:]
			op, v6 := rec[0]&3, rec[0]&4 != 0
			var a netip.Addr
			if v6 {
				var b [16]byte
				copy(b[:], rec[2:6])
				a = netip.AddrFrom16(b)
			} else {
				a = netip.AddrFrom4([4]byte(rec[2:6]))
			}
			p := netip.PrefixFrom(a, int(rec[1])%(a.BitLen()+1)).Masked()
			switch op {
			case 0, 1:
				m.insert(p)
				added = append(added, p)
			case 2:
				if len(added) > 0 {
					q := added[int(rec[1])%len(added)]
					if m.ref[q] != nil {
						m.delete(q)
					}
				}
			default:
				m.lookup(p)
				m.match(a)
			}
		}
		for p := range m.ref {
			m.match(p.Addr())
		}
		m.checkAll()
	})
}

func ExamplePrefixTree() {
	var acl PrefixTree[string]
	for _, rule := range []struct{ cidr, action string }{
		{"10.0.0.0/8", "allow"},
		{"10.66.0.0/16", "deny"},
		{"2001:db8::/32", "allow"},
	} {
		acl.Insert(netip.MustParsePrefix(rule.cidr), &PrefixNode[string]{Value: rule.action})
	}
	for _, a := range []string{"10.1.2.3", "10.66.1.1", "192.0.2.1", "2001:db8::1"} {
		if n := acl.LongestMatch(netip.MustParseAddr(a)); n != nil {
			fmt.Println(a, n.Prefix(), n.Value)
		} else {
			fmt.Println(a, "no match")
		}
	}
	// Output:
	// 10.1.2.3 10.0.0.0/8 allow
	// 10.66.1.1 10.66.0.0/16 deny
	// 192.0.2.1 no match
	// 2001:db8::1 2001:db8::/32 allow
}
