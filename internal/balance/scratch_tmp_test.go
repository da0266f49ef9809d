package balance
import ("fmt";"testing")
func TestScratchBurst(t *testing.T){
  for _, alg := range []string{"conn-rate","traffic-rate"} {
    worst := 0
    for r := 0; r < 20; r++ {
      now := instant(0); c := newCluster(3,1,1)
      for _, n := range c.nodes { history(n, 10, 10_000) }
      got := burst(mustNew(t, alg, c.params(&now)), c.cands, 1000)
      for i, w := range []int{600,200,200} { d := got[i]-w; if d < 0 {d=-d}; if d > worst {worst=d} }
    }
    fmt.Println(alg, "worst deviation over 20 bursts:", worst)
  }
}
