package ebtree

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// The model is a slice of entries sorted by key, duplicates in insertion
// order; Value holds the insertion sequence number for messages.

// opSource feeds the model driver: random numbers in tests, fuzz bytes in
// the fuzz target.
type opSource interface {
	next() (uint64, bool)
}

type randSource struct {
	r    *rand.Rand
	left int
}

func (s *randSource) next() (uint64, bool) {
	if s.left <= 0 {
		return 0, false
	}
	s.left--
	return s.r.Uint64(), true
}

type byteSource struct{ b []byte }

func (s *byteSource) next() (uint64, bool) {
	if len(s.b) == 0 {
		return 0, false
	}
	var v uint64
	n := min(len(s.b), 3)
	for _, c := range s.b[:n] {
		v = v<<8 | uint64(c)
	}
	s.b = s.b[n:]
	return v * 0x9E3779B97F4A7C15, true // spread the bits
}

// boundary keys, truncated to each key type: 0, 1, all ones (max or -1),
// the signed minimum and maximum of both widths.
var boundary = []uint64{0, 1, ^uint64(0), 1 << 63, 1<<63 - 1, 1 << 31, 1<<31 - 1, 2, ^uint64(1)}

type model[K Key] struct {
	tb     testing.TB
	tr     *Tree[K, int]
	ref    []*Node[K, int]
	seq    int
	keyMod uint64 // 0: full range, else keys drawn from [0, keyMod)
}

func (m *model[K]) key(r uint64) K {
	switch r % 4 {
	case 0:
		return K(boundary[(r>>8)%uint64(len(boundary))])
	case 1:
		return K(r >> 8) // full range
	default:
		if m.keyMod == 0 {
			return K(r >> 8)
		}
		return K((r >> 8) % m.keyMod)
	}
}

func (m *model[K]) lower(k K) int {
	x := ord(k)
	return sort.Search(len(m.ref), func(i int) bool { return ord(m.ref[i].Key) >= x })
}

func (m *model[K]) upper(k K) int {
	x := ord(k)
	return sort.Search(len(m.ref), func(i int) bool { return ord(m.ref[i].Key) > x })
}

func (m *model[K]) at(i int) *Node[K, int] {
	if i < 0 || i >= len(m.ref) {
		return nil
	}
	return m.ref[i]
}

func (m *model[K]) expect(op string, got, want *Node[K, int]) {
	m.tb.Helper()
	if got != want {
		m.tb.Fatalf("%s: got %s, want %s", op, desc(got), desc(want))
	}
}

func desc[K Key](n *Node[K, int]) string {
	if n == nil {
		return "nil"
	}
	return fmt.Sprintf("{key %v seq %d}", n.Key, n.Value)
}

// step applies one operation chosen by r to both tree and model.
func (m *model[K]) step(r uint64) {
	m.tb.Helper()
	arg := r >> 8
	switch op := r & 0xff % 12; op {
	case 0, 1, 2, 3: // insert
		n := &Node[K, int]{Key: m.key(arg), Value: m.seq}
		m.seq++
		got := m.tr.Insert(n)
		if m.tr.Unique {
			if i := m.lower(n.Key); i < len(m.ref) && m.ref[i].Key == n.Key {
				m.expect("unique insert", got, m.ref[i])
				if n.Linked() {
					m.tb.Fatalf("refused entry is linked")
				}
				return
			}
		}
		m.expect("insert", got, n)
		m.ref = slices.Insert(m.ref, m.upper(n.Key), n)
	case 4, 5: // delete
		if len(m.ref) == 0 {
			return
		}
		i := int(arg % uint64(len(m.ref)))
		m.tr.Delete(m.ref[i])
		if m.ref[i].Linked() {
			m.tb.Fatalf("deleted entry still linked")
		}
		m.ref = slices.Delete(m.ref, i, i+1)
	case 6: // touch: delete and reinsert with a new key (LRU refresh)
		if len(m.ref) == 0 {
			return
		}
		i := int(arg % uint64(len(m.ref)))
		n := m.ref[i]
		m.tr.Delete(n)
		m.ref = slices.Delete(m.ref, i, i+1)
		n.Key, n.Value = m.key(arg>>16), m.seq
		m.seq++
		if m.tr.Unique && m.lower(n.Key) < m.upper(n.Key) {
			m.expect("unique reinsert", m.tr.Insert(n), m.ref[m.lower(n.Key)])
			return
		}
		m.expect("reinsert", m.tr.Insert(n), n)
		m.ref = slices.Insert(m.ref, m.upper(n.Key), n)
	case 7: // lookups
		k := m.key(arg)
		lo, hi := m.lower(k), m.upper(k)
		var want *Node[K, int]
		if lo < hi {
			want = m.ref[lo]
		}
		m.expect(fmt.Sprintf("Lookup(%v)", k), m.tr.Lookup(k), want)
		m.expect(fmt.Sprintf("LookupGE(%v)", k), m.tr.LookupGE(k), m.at(lo))
		m.expect(fmt.Sprintf("LookupLE(%v)", k), m.tr.LookupLE(k), m.at(hi-1))
	case 8: // neighbours of a random entry
		if len(m.ref) == 0 {
			return
		}
		i := int(arg % uint64(len(m.ref)))
		n := m.ref[i]
		m.expect("Next", n.Next(), m.at(i+1))
		m.expect("Prev", n.Prev(), m.at(i-1))
		m.expect("NextUnique", n.NextUnique(), m.at(m.upper(n.Key)))
		m.expect("PrevUnique", n.PrevUnique(), m.at(m.lower(n.Key)-1))
	case 9: // pop the earliest
		var want *Node[K, int]
		if len(m.ref) > 0 {
			want = m.ref[0]
			m.ref = m.ref[1:]
		}
		m.expect("PopFirst", m.tr.PopFirst(), want)
	case 10: // full walks
		m.checkWalks()
	default: // first, last, len
		m.expect("First", m.tr.First(), m.at(0))
		m.expect("Last", m.tr.Last(), m.at(len(m.ref)-1))
		if m.tr.Len() != len(m.ref) {
			m.tb.Fatalf("Len %d, want %d", m.tr.Len(), len(m.ref))
		}
	}
}

func (m *model[K]) checkWalks() {
	m.tb.Helper()
	i := 0
	for n := range m.tr.All() {
		m.expect(fmt.Sprintf("All[%d]", i), n, m.at(i))
		i++
	}
	if i != len(m.ref) {
		m.tb.Fatalf("All visited %d entries, want %d", i, len(m.ref))
	}
	i = len(m.ref) - 1
	for n := range m.tr.Backward() {
		m.expect(fmt.Sprintf("Backward[%d]", i), n, m.at(i))
		i--
	}
	if i != -1 {
		m.tb.Fatalf("Backward stopped at %d", i)
	}
	// Unique walks visit the first entry of each key forwards and the last
	// one backwards.
	var fw, bw []*Node[K, int]
	for n := m.tr.First(); n != nil; n = n.NextUnique() {
		fw = append(fw, n)
	}
	for n := m.tr.Last(); n != nil; n = n.PrevUnique() {
		bw = append(bw, n)
	}
	var wfw, wbw []*Node[K, int]
	for j, n := range m.ref {
		if j == 0 || m.ref[j-1].Key != n.Key {
			wfw = append(wfw, n)
		}
		if j == len(m.ref)-1 || m.ref[j+1].Key != n.Key {
			wbw = append(wbw, n)
		}
	}
	slices.Reverse(wbw)
	if !slices.Equal(fw, wfw) || !slices.Equal(bw, wbw) {
		m.tb.Fatalf("unique walks differ: %d/%d forwards, %d/%d backwards", len(fw), len(wfw), len(bw), len(wbw))
	}
}

// runModel drives tree and model from src, checking the invariants after
// every operation.
func runModel[K Key](tb testing.TB, src opSource, unique bool, keyMod uint64) {
	tb.Helper()
	m := &model[K]{tb: tb, tr: &Tree[K, int]{Unique: unique}, keyMod: keyMod}
	for {
		r, ok := src.next()
		if !ok {
			break
		}
		m.step(r)
		if err := checkTree(m.tr); err != nil {
			tb.Fatalf("after op %#x (%d entries): %v", r&0xff%12, len(m.ref), err)
		}
	}
	m.checkWalks()
}

func TestModel(t *testing.T) {
	ops, seeds := 2500, uint64(2)
	if testing.Short() {
		ops, seeds = 500, 2
	}
	for _, keyMod := range []uint64{0, 1, 3, 17, 1000} {
		for _, unique := range []bool{false, true} {
			name := fmt.Sprintf("mod%d/unique=%v", keyMod, unique)
			t.Run(name, func(t *testing.T) {
				for seed := range seeds {
					src := func() opSource { return &randSource{rand.New(rand.NewPCG(seed, keyMod)), ops} }
					runModel[uint64](t, src(), unique, keyMod)
					runModel[uint32](t, src(), unique, keyMod)
					runModel[int64](t, src(), unique, keyMod)
					runModel[int32](t, src(), unique, keyMod)
				}
			})
		}
	}
}

func FuzzModel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 9, 9, 9})
	f.Add([]byte("insert delete lookup walk pop touch and so on"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		// The first byte picks key type, key range and mode.
		mode := data[0]
		src := &byteSource{data[1:min(len(data), 1+3*600)]} // checks are O(n) per op
		keyMod := []uint64{0, 2, 5, 64}[mode>>2&3]
		unique := mode&16 != 0
		switch mode & 3 {
		case 0:
			runModel[uint64](t, src, unique, keyMod)
		case 1:
			runModel[uint32](t, src, unique, keyMod)
		case 2:
			runModel[int64](t, src, unique, keyMod)
		default:
			runModel[int32](t, src, unique, keyMod)
		}
	})
}

// TestCheckerDetects makes sure the invariant checker is not vacuous.
func TestCheckerDetects(t *testing.T) {
	build := func() (*Tree[uint64, int], []*Node[uint64, int]) {
		tr := &Tree[uint64, int]{}
		var ns []*Node[uint64, int]
		for _, k := range []uint64{5, 1, 9, 9, 3, 7} {
			n := &Node[uint64, int]{Key: k}
			tr.Insert(n)
			ns = append(ns, n)
		}
		if err := checkTree(tr); err != nil {
			t.Fatal(err)
		}
		return tr, ns
	}
	breakers := map[string]func(tr *Tree[uint64, int], ns []*Node[uint64, int]){
		"bit order":   func(tr *Tree[uint64, int], ns []*Node[uint64, int]) { ns[1].bit = 40 },
		"leaf parent": func(tr *Tree[uint64, int], ns []*Node[uint64, int]) { ns[4].lside ^= 1 },
		"equal branches": func(tr *Tree[uint64, int], ns []*Node[uint64, int]) {
			ns[1].b[1], ns[1].leaf[1] = ns[1].b[0], ns[1].leaf[0]
		},
		"key moved": func(tr *Tree[uint64, int], ns []*Node[uint64, int]) { ns[0].Key = 64 },
		"len":       func(tr *Tree[uint64, int], ns []*Node[uint64, int]) { tr.n++ },
		"dup key":   func(tr *Tree[uint64, int], ns []*Node[uint64, int]) { ns[3].Key = 8 },
	}
	for name, brk := range breakers {
		tr, ns := build()
		brk(tr, ns)
		if checkTree(tr) == nil {
			t.Errorf("%s: corruption not detected", name)
		}
	}
}

// TestMisuse covers the guard rails: double insert panics, deleting an
// unlinked entry is a no-op, and walks on unlinked entries return nil.
func TestMisuse(t *testing.T) {
	var tr Tree[uint64, int]
	n := &Node[uint64, int]{Key: 3}
	tr.Delete(n) // unlinked: no-op
	if n.Next() != nil || n.Prev() != nil || n.NextUnique() != nil || n.PrevUnique() != nil {
		t.Fatal("walk from an unlinked entry returned an entry")
	}
	tr.Insert(n)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("second Insert of a linked entry did not panic")
			}
		}()
		tr.Insert(n)
	}()
	if err := checkTree(&tr); err != nil || tr.Len() != 1 {
		t.Fatalf("tree damaged by refused insert: %v, Len %d", err, tr.Len())
	}
	for range tr.All() {
		break // an early break must not panic
	}
}
