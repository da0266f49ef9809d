package guard

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFloodLoopback runs a real TCP listener that asks the guard about
// every accepted connection: "ok\n" and close when admitted, close at once
// when refused. One abusive source dials as fast as it can while four
// well-behaved ones dial ten times a second; the abuser must be banned
// within a second and nobody else refused.
func TestFloodLoopback(t *testing.T) {
	cfg := listener()
	cfg.MaxConnRate, cfg.MaxClientConns, cfg.BanTime = 20, 50, time.Minute
	g := mustNew(t, cfg, Options{})
	ln, err := net.Listen("tcp", "127.0.10.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	served.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
			if g.Admit(a, time.Now()).OK {
				_, _ = io.WriteString(c, "ok\n")
				g.Release(a)
			}
			_ = c.Close()
		}
	})
	defer func() {
		_ = ln.Close()
		served.Wait()
	}()

	// dial returns whether the connection was admitted.
	dial := func(src string) bool {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip(src), 0)), Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Errorf("%s: dial: %v", src, err)
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b) == "ok\n"
	}

	start := time.Now()
	var wg sync.WaitGroup
	var abuserOK, abuserRefused int
	var firstRefusal time.Duration
	wg.Go(func() {
		for i := 0; i < 1000 && time.Since(start) < 1500*time.Millisecond; i++ {
			if dial("127.0.10.66") {
				abuserOK++
				continue
			}
			if abuserRefused == 0 {
				firstRefusal = time.Since(start)
			}
			abuserRefused++
		}
	})
	goodRefused := make([]int, 4)
	for w := range goodRefused {
		wg.Go(func() {
			src := netip.AddrFrom4([4]byte{127, 0, 10, byte(10 + w)}).String()
			for range 12 {
				if !dial(src) {
					goodRefused[w]++
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	wg.Wait()

	t.Logf("abuser: %d admitted, %d refused, first refusal after %v; took %v",
		abuserOK, abuserRefused, firstRefusal, time.Since(start))
	if abuserRefused == 0 || firstRefusal > time.Second {
		t.Errorf("abuser not banned within a second (first refusal %v)", firstRefusal)
	}
	if abuserOK > cfg.MaxConnRate {
		t.Errorf("abuser got %d connections, limit %d", abuserOK, cfg.MaxConnRate)
	}
	for w, n := range goodRefused {
		if n != 0 {
			t.Errorf("well-behaved client 127.0.10.%d refused %d times", 10+w, n)
		}
	}
	bans := g.Bans(time.Now())
	if len(bans) != 1 || bans[0].Client.String() != "127.0.10.66/32" {
		t.Errorf("Bans = %+v", bans)
	}
	if c := g.Counters(); c.Rate != 1 || c.Ban != uint64(abuserRefused-1) || c.Concurrency != 0 {
		t.Errorf("Counters = %+v", c)
	}
}
