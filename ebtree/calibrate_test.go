package ebtree

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkMemoryLatency is a calibration, not a contender: one dependent
// load per op over a random cycle of 64-byte slots, the pattern a tree
// descent produces once the tree outgrows the caches. ns/op here bounds what
// one level of any pointer-based tree can cost on the machine.
func BenchmarkMemoryLatency(b *testing.B) {
	for _, mb := range []int{1, 32} {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			n := mb << 20 / 64
			next := make([]int32, n*16)
			perm := rand.New(rand.NewPCG(1, 2)).Perm(n)
			for i := range n {
				next[perm[i]*16] = int32(perm[(i+1)%n] * 16)
			}
			p := int32(0)
			b.ResetTimer()
			defer cpuTime(b)()
			for i := 0; i < b.N; i++ {
				p = next[p]
			}
			if p < 0 {
				b.Fatal("unreachable")
			}
		})
	}
}
