package ebtree

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/btree"
)

// Benchmarks compare the ebtree with container/heap and google/btree (BTreeG,
// degree 32) on the same precomputed random numbers. Fixtures are built once
// per size and kept in steady state (every operation leaves the size
// unchanged), so repeated runs reuse them.

const randRing = 1 << 16 // precomputed random numbers, cycled

func ring(seed uint64) []uint64 {
	r := rand.New(rand.NewPCG(seed, 42))
	v := make([]uint64, randRing)
	for i := range v {
		v[i] = r.Uint64()
	}
	return v
}

// timer is the shared entry for the timer-queue workload: a deadline plus a
// tie-breaking id for the structures that need unique keys.
type timer struct {
	node     Node[int64, *timer] // first, as the package doc advises
	deadline int64
	id       int
	index    int // heap position
}

func timerLess(a, b *timer) bool {
	return a.deadline < b.deadline || (a.deadline == b.deadline && a.id < b.id)
}

type timerHeap []*timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return timerLess(h[i], h[j]) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) { t := x.(*timer); t.index = len(*h); *h = append(*h, t) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// timerSpan spreads deadlines over one second in milliseconds, so equal
// deadlines happen, as with real coarse timers.
const timerSpan = 1000

var timerSizes = []int{1000, 100_000}

func newTimers(n int) []*timer {
	rnd := ring(uint64(n))
	ts := make([]*timer, n)
	for i := range ts {
		ts[i] = &timer{deadline: int64(rnd[i%randRing] % timerSpan), id: i}
		ts[i].node.Key, ts[i].node.Value = ts[i].deadline, ts[i]
	}
	return ts
}

// BenchmarkTimerPop: pop the earliest deadline and re-arm it at
// earliest + random(0..1s); one op = one pop + one insert.
func BenchmarkTimerPop(b *testing.B) {
	for _, n := range timerSizes {
		rnd := ring(7)
		b.Run(fmt.Sprintf("ebtree/n=%d", n), func(b *testing.B) {
			var q Tree[int64, *timer]
			for _, t := range newTimers(n) {
				q.Insert(&t.node)
			}
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				nd := q.PopFirst()
				nd.Key += int64(rnd[i&(randRing-1)] % timerSpan)
				q.Insert(nd)
			}
		})
		b.Run(fmt.Sprintf("heap/n=%d", n), func(b *testing.B) {
			h := timerHeap(newTimers(n))
			for i, t := range h {
				t.index = i
			}
			heap.Init(&h)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				t := h[0]
				t.deadline += int64(rnd[i&(randRing-1)] % timerSpan)
				heap.Fix(&h, 0) // pop + push fused: the heap's best case
			}
		})
		b.Run(fmt.Sprintf("heap-poppush/n=%d", n), func(b *testing.B) {
			h := timerHeap(newTimers(n))
			heap.Init(&h)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				t := heap.Pop(&h).(*timer)
				t.deadline += int64(rnd[i&(randRing-1)] % timerSpan)
				heap.Push(&h, t)
			}
		})
		b.Run(fmt.Sprintf("btree/n=%d", n), func(b *testing.B) {
			bt := btree.NewG(32, timerLess)
			for _, t := range newTimers(n) {
				bt.ReplaceOrInsert(t)
			}
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				t, _ := bt.DeleteMin()
				t.deadline += int64(rnd[i&(randRing-1)] % timerSpan)
				bt.ReplaceOrInsert(t)
			}
		})
	}
}

// BenchmarkTimerFixed: the common production shape, every timer armed with
// the same timeout from a clock that only moves forward, so new deadlines land
// at the right edge of the queue while the earliest leaves at the left; one
// op = one pop + one insert, the clock advancing by one unit per op.
func BenchmarkTimerFixed(b *testing.B) {
	for _, n := range timerSizes {
		b.Run(fmt.Sprintf("ebtree/n=%d", n), func(b *testing.B) {
			var q Tree[int64, *timer]
			ts := newTimers(n)
			for i, t := range ts {
				t.node.Key = int64(i)
				q.Insert(&t.node)
			}
			clock := int64(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				nd := q.PopFirst()
				nd.Key = clock
				clock++
				q.Insert(nd)
			}
		})
		b.Run(fmt.Sprintf("heap/n=%d", n), func(b *testing.B) {
			h := timerHeap(newTimers(n))
			for i, t := range h {
				t.deadline, t.index = int64(i), i
			}
			clock := int64(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				t := heap.Pop(&h).(*timer)
				t.deadline = clock
				clock++
				heap.Push(&h, t)
			}
		})
		b.Run(fmt.Sprintf("btree/n=%d", n), func(b *testing.B) {
			bt := btree.NewG(32, timerLess)
			for i, t := range newTimers(n) {
				t.deadline = int64(i)
				bt.ReplaceOrInsert(t)
			}
			clock := int64(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				t, _ := bt.DeleteMin()
				t.deadline = clock
				clock++
				bt.ReplaceOrInsert(t)
			}
		})
	}
}

// BenchmarkTimerReset: cancel a random armed timer and re-arm it later (an
// idle timeout refreshed by traffic, or an affinity entry touched); one op =
// one delete + one insert of an arbitrary entry.
func BenchmarkTimerReset(b *testing.B) {
	for _, n := range timerSizes {
		rnd := ring(9)
		b.Run(fmt.Sprintf("ebtree/n=%d", n), func(b *testing.B) {
			ts := newTimers(n)
			var q Tree[int64, *timer]
			for _, t := range ts {
				q.Insert(&t.node)
			}
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				r := rnd[i&(randRing-1)]
				t := ts[r%uint64(n)]
				q.Delete(&t.node)
				t.node.Key += int64(r>>32) % timerSpan
				q.Insert(&t.node)
			}
		})
		b.Run(fmt.Sprintf("heap/n=%d", n), func(b *testing.B) {
			ts := newTimers(n)
			h := timerHeap(append([]*timer(nil), ts...))
			for i, t := range h {
				t.index = i
			}
			heap.Init(&h)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				r := rnd[i&(randRing-1)]
				t := ts[r%uint64(n)]
				t.deadline += int64(r>>32) % timerSpan
				heap.Fix(&h, t.index)
			}
		})
		b.Run(fmt.Sprintf("btree/n=%d", n), func(b *testing.B) {
			ts := newTimers(n)
			bt := btree.NewG(32, timerLess)
			for _, t := range ts {
				bt.ReplaceOrInsert(t)
			}
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				r := rnd[i&(randRing-1)]
				t := ts[r%uint64(n)]
				bt.Delete(t)
				t.deadline += int64(r>>32) % timerSpan
				bt.ReplaceOrInsert(t)
			}
		})
	}
}

var orderedSizes = []int{1000, 100_000, 1_000_000}

// orderedFixture holds n random 64-bit keys in an ebtree and a btree.
type orderedFixture struct {
	nodes []Node[uint64, struct{}]
	eb    Tree[uint64, struct{}]
	bt    *btree.BTreeG[uint64]
	keys  []uint64 // the btree's keys, by node index
	rnd   []uint64
}

var orderedCache = map[int]*orderedFixture{}

func ordered(n int) *orderedFixture {
	if f := orderedCache[n]; f != nil {
		return f
	}
	f := &orderedFixture{
		nodes: make([]Node[uint64, struct{}], n),
		keys:  make([]uint64, n),
		bt:    btree.NewOrderedG[uint64](32),
		rnd:   ring(11),
	}
	r := rand.New(rand.NewPCG(uint64(n), 3))
	for i := range f.nodes {
		f.nodes[i].Key = r.Uint64()
		f.eb.Insert(&f.nodes[i])
		f.keys[i] = f.nodes[i].Key
		f.bt.ReplaceOrInsert(f.keys[i])
	}
	orderedCache[n] = f
	return f
}

// BenchmarkInsertDelete: delete a random present key and insert a new random
// key; one op = one delete + one insert.
func BenchmarkInsertDelete(b *testing.B) {
	for _, n := range orderedSizes {
		b.Run(fmt.Sprintf("ebtree/n=%d", n), func(b *testing.B) {
			f := ordered(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				r := f.rnd[i&(randRing-1)]
				nd := &f.nodes[r%uint64(n)]
				f.eb.Delete(nd)
				nd.Key ^= r
				f.eb.Insert(nd)
			}
		})
		b.Run(fmt.Sprintf("btree/n=%d", n), func(b *testing.B) {
			f := ordered(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				r := f.rnd[i&(randRing-1)]
				k := &f.keys[r%uint64(n)]
				f.bt.Delete(*k)
				*k ^= r
				f.bt.ReplaceOrInsert(*k)
			}
		})
	}
}

// BenchmarkLookup: exact lookup of a random present key.
func BenchmarkLookup(b *testing.B) {
	for _, n := range orderedSizes {
		b.Run(fmt.Sprintf("ebtree/n=%d", n), func(b *testing.B) {
			f := ordered(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				k := f.nodes[f.rnd[i&(randRing-1)]%uint64(n)].Key
				if f.eb.Lookup(k) == nil {
					b.Fatal("missing key")
				}
			}
		})
		b.Run(fmt.Sprintf("btree/n=%d", n), func(b *testing.B) {
			f := ordered(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				k := f.keys[f.rnd[i&(randRing-1)]%uint64(n)]
				if _, ok := f.bt.Get(k); !ok {
					b.Fatal("missing key")
				}
			}
		})
	}
}

// BenchmarkLookupGE: first key >= a random key (a range-start lookup).
func BenchmarkLookupGE(b *testing.B) {
	for _, n := range orderedSizes {
		b.Run(fmt.Sprintf("ebtree/n=%d", n), func(b *testing.B) {
			f := ordered(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				f.eb.LookupGE(f.rnd[i&(randRing-1)])
			}
		})
		b.Run(fmt.Sprintf("btree/n=%d", n), func(b *testing.B) {
			f := ordered(n)
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				f.bt.AscendGreaterOrEqual(f.rnd[i&(randRing-1)], func(uint64) bool { return false })
			}
		})
	}
}
