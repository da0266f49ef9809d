package balance

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// benchCases are the policies measured by BenchmarkPick: every algorithm,
// min-load also with a custom rating whose inputs stay put (cache hits) and
// with one whose chosen node's active changes after every pick, as under
// real load (one re-evaluation per pick).
var benchCases = []struct {
	name, alg, rating string
	hold              bool // Active+1 on the chosen node after each pick
}{
	{"round-robin", "round-robin", "", false},
	{"random", "random", "", false},
	{"conn-rate", "conn-rate", "", false},
	{"traffic-rate", "traffic-rate", "", false},
	{"min-load", "min-load", "", true},
	{"min-load-expr", "min-load", "active / weight + connect_ms / 100", false},
	{"min-load-expr-churn", "min-load", "active / weight + connect_ms / 100", true},
	{"ip-hash", "ip-hash", "", false},
}

// BenchmarkPick measures ns and allocations per pick at 3, 30 and 1,000
// candidates (weights 1, 2, 3 repeating), from one goroutine and from
// GOMAXPROCS goroutines (b.RunParallel; ns/op is then wall time per pick
// across all of them). Serial runs also report cpu-ns/op, the thread's own
// CPU time per pick: on a shared, loaded machine it leaves out the time the
// benchmark waited for a CPU, which ns/op includes.
func BenchmarkPick(b *testing.B) {
	clients := append(addrs(512, false, 9), addrs(512, true, 9)...)
	for _, bc := range benchCases {
		for _, n := range []int{3, 30, 1000} {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = 1 + i%3
			}
			for _, mode := range []string{"serial", "parallel"} {
				b.Run(fmt.Sprintf("alg=%s/nodes=%d/%s", bc.name, n, mode), func(b *testing.B) {
					c := newCluster(weights...)
					for _, st := range c.nodes {
						history(st, 10, 10_000)
					}
					p := c.params(nil)
					p.LoadRating = bc.rating
					pol := mustNew(b, bc.alg, p)
					pol.Pick(clients[0], c.cands) // fill min-load's rating cache
					b.ReportAllocs()
					b.ResetTimer() // b.Loop would; RunParallel does not
					if mode == "serial" {
						runtime.LockOSThread()
						defer runtime.UnlockOSThread()
						cpu0 := threadCPU(b)
						i := 0
						for b.Loop() {
							j := pol.Pick(clients[i&1023], c.cands)
							if bc.hold {
								c.cands[j].Stats.Active.Add(1)
							}
							i++
						}
						b.ReportMetric(float64(threadCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
						return
					}
					b.RunParallel(func(pb *testing.PB) {
						i := 0
						for pb.Next() {
							j := pol.Pick(clients[i&1023], c.cands)
							if bc.hold {
								c.cands[j].Stats.Active.Add(1)
							}
							i++
						}
					})
				})
			}
		}
	}
}

// threadCPU is the calling thread's CPU time in ns.
func threadCPU(b *testing.B) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return ts.Nano()
}
