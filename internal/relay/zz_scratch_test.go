package relay_test

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/relay"
	"github.com/protobalance/protobalance/internal/relay/relaytest"
)

func stackNow() uint64 {
	for range 4 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.StackInuse
}

func TestZZScratch(t *testing.T) {
	const n = 2000
	rig := newRig(t)
	pairs := make([]*relaytest.Pair, n)
	for i := range pairs {
		pairs[i] = rig.Conns(t)
	}
	s0, g0 := stackNow(), runtime.NumGoroutine()
	if os.Getenv("MAXSTACK") != "" {
		debug.SetMaxStack(3000)
	}
	for _, p := range pairs {
		p.Start(t, relay.NewGoroutine(), relay.Options{IdleTimeout: time.Hour})
	}
	time.Sleep(time.Second)
	s1, g1 := stackNow(), runtime.NumGoroutine()
	debug.SetMaxStack(1<<30)
	t.Logf("%d B/conn, %d goroutines/conn", (int64(s1)-int64(s0))/n, (g1-g0)/n)
}
