package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// At the descriptor limit, on either data path, clients beyond what the
// balancer can hold are closed promptly (counted as no_source_port when
// the node socket cannot be opened, or held in the backlog while accept
// backs off) — never a hang of the served ones or a crash — and once
// connections end, new clients are served again.
func TestDescriptorLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	node := echoNodeProcess(t)
	for _, dp := range []string{"loop", "goroutine"} {
		t.Run(dp, func(t *testing.T) {
			head := fmt.Sprintf("[global]\nmax_conns = 1000\ndata_path = %q\n", dp)
			p, addr := runBalancer(t, e2eConfig(head, "", "n1", node))
			pid := p.cmd.Process.Pid
			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			if err != nil {
				t.Fatal(err)
			}
			// Room for about ten proxied connections (two descriptors each).
			limit := uint64(len(fds) + 21)
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
				t.Fatal(err)
			}
			roundTrip := func(c net.Conn) error {
				c.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := c.Write([]byte("ping\n")); err != nil {
					return err
				}
				buf := make([]byte, 5)
				_, err := c.Read(buf)
				return err
			}
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for i := range 10 {
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
				if err := roundTrip(c); err != nil {
					t.Fatalf("client %d below the limit: %v", i, err)
				}
			}
			// Beyond the limit: each extra client is either closed at once
			// (its node socket could not be opened: no_source_port) or
			// waits in the kernel backlog while accept backs off.
			var extra []net.Conn
			for range 5 {
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				extra = append(extra, c)
				c.Write([]byte("ping\n"))
			}
			p.waitStderr(t, "accept failed; backing off")
			for _, c := range held {
				c.Close()
			}
			held = nil
			// Descriptors are back: the waiting clients are served.
			served, closed := 0, 0
			for i, c := range extra {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 5)
				_, err := io.ReadFull(c, buf)
				c.Close()
				switch {
				case err == nil:
					served++
				case isTimeout(err):
					t.Fatalf("extra client %d still waits after descriptors were freed", i)
				default:
					closed++
				}
			}
			t.Logf("MEASURED %s: limit %d descriptors: 10 held; of 5 more, %d served once descriptors were freed, %d closed at once", dp, limit, served, closed)
			if served == 0 {
				t.Fatal("no waiting client was served after the limit")
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
