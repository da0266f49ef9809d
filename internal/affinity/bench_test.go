package affinity

// Benchmarks at the size DESIGN F5 names (affinity_max = 1,000,000). Rerun:
//
//	go test -run '^$' -bench . -benchtime 2s -count 5 ./internal/affinity

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const million = 1000000

// clients returns n distinct IPv4 clients in a shuffled order.
func clients(n int) []netip.Addr {
	as := make([]netip.Addr, n)
	for i := range as {
		as[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(n, func(i, j int) { as[i], as[j] = as[j], as[i] })
	return as
}

// cpuClock reports, when called, the process CPU time per op since it was
// made: on a shared machine it is steadier than wall time, which also
// counts the time other processes held the CPU.
func cpuClock(b *testing.B) func() {
	runtime.GC() // settle the set-up's garbage: its collection is not ours
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

var nodeNames = []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"}

func filled(as []netip.Addr) *Table {
	tb := NewTable("bench", DefaultOptions())
	for i, a := range as {
		tb.Record(a, nodeNames[i%len(nodeNames)], t0.Add(time.Duration(i/1000)*time.Second))
	}
	return tb
}

func BenchmarkLookup1M(b *testing.B) {
	as := clients(million)
	tb := filled(as)
	now := t0.Add(time.Hour)
	b.ReportAllocs()
	defer cpuClock(b)()
	i := 0
	for b.Loop() {
		if _, ok := tb.Lookup(as[i], now); !ok {
			b.Fatal("miss")
		}
		if i++; i == len(as) {
			i = 0
		}
	}
}

// BenchmarkLookup10k is the same lookup with a cache-resident table, for
// contrast: at 1,000,000 records the cost is the map's cache misses.
func BenchmarkLookup10k(b *testing.B) {
	as := clients(10000)
	tb := filled(as)
	now := t0.Add(time.Hour)
	b.ReportAllocs()
	defer cpuClock(b)()
	i := 0
	for b.Loop() {
		if _, ok := tb.Lookup(as[i], now); !ok {
			b.Fatal("miss")
		}
		if i++; i == len(as) {
			i = 0
		}
	}
}

func BenchmarkLookup1MParallel(b *testing.B) {
	as := clients(million)
	tb := filled(as)
	now := t0.Add(time.Hour)
	b.ReportAllocs()
	defer cpuClock(b)() // its runtime.GC before ResetTimer
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(as))
		for pb.Next() {
			if _, ok := tb.Lookup(as[i], now); !ok {
				b.Fatal("miss")
			}
			if i++; i == len(as) {
				i = 0
			}
		}
	})
}

// BenchmarkRecordSameSecond is the per-connection cost of keeping a
// record fresh when the client was seen within the second.
func BenchmarkRecordSameSecond1M(b *testing.B) {
	as := clients(million)
	tb := filled(as)
	now := t0.Add(time.Hour)
	for i, a := range as {
		tb.Record(a, nodeNames[i%len(nodeNames)], now)
	}
	b.ReportAllocs()
	defer cpuClock(b)()
	i := 0
	for b.Loop() {
		tb.Record(as[i], nodeNames[i%len(nodeNames)], now)
		if i++; i == len(as) {
			i = 0
		}
	}
}

// BenchmarkRecordNewEvict1M: a new client into a full table, which evicts
// the least recently seen record.
func BenchmarkRecordNewEvict1M(b *testing.B) {
	as := clients(2 * million)
	tb := filled(as[:million])
	b.ReportAllocs()
	defer cpuClock(b)()
	i := million
	for b.Loop() {
		tb.Record(as[i], "n1", t0.Add(time.Duration(i)*time.Second))
		if i++; i == len(as) {
			i = million
		}
	}
}

// BenchmarkMemory1M reports the heap held per record of a 1,000,000-record
// table (run it with -benchtime 1x).
func BenchmarkMemory1M(b *testing.B) {
	as := clients(million)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb := filled(as)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/million, "B/record")
		runtime.KeepAlive(tb)
	}
}

// BenchmarkRestore1M times Open + Table (restore of 1,000,000 records from
// bbolt) + Close.
func BenchmarkRestore1M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "pb.db")
	now := time.Now()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		tb, err := tx.CreateBucketIfNotExists(bucketAffinity)
		if err != nil {
			return err
		}
		if tb, err = tb.CreateBucket([]byte("web")); err != nil {
			return err
		}
		tb.FillPercent = 1
		o := DefaultOptions()
		for i := range million { // in key order: fast appends
			k, _ := o.keyOf(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
			kb := k.bytes()
			if err := tb.Put(kb[:], encodeValue(nodeNames[i%8], now.Unix()-int64(i%3600))); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	defer cpuClock(b)()
	for b.Loop() {
		m, err := Open(Config{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		tb, err := m.Table("web", DefaultOptions())
		if err != nil || tb.Len() != million {
			b.Fatal(err, tb.Len())
		}
		if err := m.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
