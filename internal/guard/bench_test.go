package guard

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

const bgpPrefixes = 450_000

// bgpLike returns n distinct prefixes with lengths distributed roughly like
// a BGP table: 85 % IPv4 (about 60 % of them /24, most of the rest /16 to
// /23), 15 % IPv6 (mostly /48 and /32 to /44).
func bgpLike(n int, seed uint64) []netip.Prefix {
	r := rand.New(rand.NewPCG(seed, 0))
	v4 := []struct{ bits, weight int }{{24, 60}, {23, 9}, {22, 12}, {21, 5}, {20, 5}, {19, 3}, {18, 2}, {17, 1}, {16, 2}, {12, 1}}
	v6 := []struct{ bits, weight int }{{48, 50}, {32, 15}, {44, 10}, {40, 8}, {36, 5}, {29, 4}, {46, 4}, {47, 4}}
	pick := func(tab []struct{ bits, weight int }) int {
		x := r.IntN(100)
		for _, e := range tab {
			if x -= e.weight; x < 0 {
				return e.bits
			}
		}
		return tab[0].bits
	}
	seen := make(map[netip.Prefix]bool, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		var p netip.Prefix
		if r.IntN(100) < 85 {
			a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.Uint32()), byte(r.Uint32()), 0})
			p = netip.PrefixFrom(a, pick(v4)).Masked()
		} else {
			var b [16]byte
			b[0], b[1] = 0x20, byte(r.IntN(16))
			for i := 2; i < 8; i++ {
				b[i] = byte(r.Uint32())
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), pick(v6)).Masked()
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

var (
	bgpOnce sync.Once
	bgpList []netip.Prefix
	bgpText string
)

func bgpFixture() ([]netip.Prefix, string) {
	bgpOnce.Do(func() {
		bgpList = bgpLike(bgpPrefixes, 42)
		var sb strings.Builder
		sb.WriteString("# synthetic BGP-like deny list\n")
		for _, p := range bgpList {
			sb.WriteString(p.String())
			sb.WriteByte('\n')
		}
		bgpText = sb.String()
	})
	return bgpList, bgpText
}

// bgpListener writes the 450,000-prefix list to a deny_file and returns a
// listener using it.
func bgpListener(t testing.TB) *config.Listener {
	_, text := bgpFixture()
	path := filepath.Join(t.TempDir(), "deny.txt")
	write(t, path, text)
	cfg := listener()
	cfg.DenyFile = path
	return cfg
}

func TestLoadBGPSizedList(t *testing.T) {
	if testing.Short() {
		t.Skip("450,000 prefixes")
	}
	cfg := bgpListener(t)
	start := time.Now()
	g, err := New(cfg, nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d prefixes in %v", g.list.t.Len(), took)
	if g.list.t.Len() != bgpPrefixes {
		t.Fatalf("table holds %d prefixes", g.list.t.Len())
	}
	if took > 20*time.Second { // ~0.3 s here; generous for -race on a loaded machine
		t.Fatalf("load took %v", took)
	}
	list, _ := bgpFixture()
	for _, p := range list[:1000] {
		if g.Permits(p.Addr()) {
			t.Fatalf("%v not denied", p)
		}
	}
}

func BenchmarkLoad450k(b *testing.B) {
	cfg := bgpListener(b)
	b.ReportAllocs()
	var before, after runtime.MemStats
	var keep *Guard
	for b.Loop() {
		keep = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		g, err := New(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		keep = g
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/bgpPrefixes, "heapB/prefix")
	_ = keep
}

// BenchmarkAdmit measures one Admit (plus Release when admitted) of a known
// client, with and without the 450,000-prefix table, with and without
// per-client limits. Clients are 256 random IPv4 addresses in 1.0.0.0 to
// 223.255.255.255 that the table admits (the lookup descends the tree, then
// falls off), or for "denied" 256 addresses inside listed prefixes.
func BenchmarkAdmit(b *testing.B) {
	type variant struct {
		name                string
		list, track, denied bool
	}
	for _, v := range []variant{
		{"list=0/limits=on", false, true, false},
		{"list=450k/limits=off", true, false, false},
		{"list=450k/limits=on", true, true, false},
		{"list=450k/denied", true, true, true},
	} {
		b.Run(v.name, func(b *testing.B) {
			cfg := listener()
			if v.list {
				cfg = bgpListener(b)
			}
			if v.track {
				cfg.MaxConnRate, cfg.MaxClientConns = 1<<30, 100
			}
			g := mustNew(b, cfg, Options{})
			list, _ := bgpFixture()
			r := rand.New(rand.NewPCG(7, 7))
			clients := make([]netip.Addr, 0, 256)
			for len(clients) < cap(clients) {
				c := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
				if v.denied {
					c = list[r.IntN(len(list))].Addr()
				}
				if g.Permits(c) == v.denied {
					continue
				}
				clients = append(clients, c)
				if g.Admit(c, t0).OK {
					g.Release(c)
				}
			}
			now := t0
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				c := clients[i&255]
				i++
				now = now.Add(time.Microsecond)
				if g.Admit(c, now).OK {
					g.Release(c)
				}
			}
		})
	}
}

// BenchmarkAdmitParallel runs Admit+Release from GOMAXPROCS goroutines over
// 4,096 clients: the cost of the shard locks under contention.
func BenchmarkAdmitParallel(b *testing.B) {
	cfg := listener()
	cfg.MaxConnRate, cfg.MaxClientConns = 1<<30, 100
	g := mustNew(b, cfg, Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 0))
		now := t0
		for pb.Next() {
			c := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(16)), byte(r.Uint32())})
			now = now.Add(time.Microsecond)
			if g.Admit(c, now).OK {
				g.Release(c)
			}
		}
	})
}

// BenchmarkAdmitNewClient feeds a never-seen client per Admit into a full
// table: the flood case, one eviction per op.
func BenchmarkAdmitNewClient(b *testing.B) {
	cfg := listener()
	cfg.MaxConnRate = 10
	g := mustNew(b, cfg, Options{})
	i := uint32(0)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		i++
		c := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		now = now.Add(time.Microsecond)
		if g.Admit(c, now).OK {
			g.Release(c)
		}
	}
	b.ReportMetric(float64(g.Counters().Tracked), "tracked")
}
