package relay_test

import (
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
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
	mode := os.Getenv("MODE")
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		p := rig.Conns(t)
		conns[i] = p.RelayClient
		t.Cleanup(func() { p.Client.Close(); p.Node.Close(); p.RelayNode.Close() })
	}
	if mode == "before" {
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(time.Hour))
		}
	}
	s0 := stackNow()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if mode == "inside" {
				c.SetReadDeadline(time.Now().Add(time.Hour))
			}
			rc, _ := c.SyscallConn()
			rc.Read(func(uintptr) bool { return false })
		}()
	}
	time.Sleep(time.Second)
	s1 := stackNow()
	t.Logf("%s: %d B/goroutine", mode, (int64(s1)-int64(s0))/n)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
}
