package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// At the descriptor limit, on either data path, clients beyond what the
// balancer can hold wait in the kernel backlog or are closed promptly —
// never a hang of the served ones or a crash — and once connections end,
// the waiting clients are served. Two ways to reach the limit:
//
//	spare 0  no descriptor left: accept fails and backs off;
//	spare 1  one left: the client is accepted, its node socket cannot be
//	         opened, so it is closed (no_source_port) and accepting pauses
//	         rather than draining the backlog one closed client at a time.
func TestDescriptorLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	node := echoNodeProcess(t)
	for _, dp := range []string{"loop", "goroutine"} {
		for _, spare := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/spare-%d", dp, spare), func(t *testing.T) {
				testDescriptorLimit(t, node, dp, spare)
			})
		}
	}
}

func testDescriptorLimit(t *testing.T, node, dp string, spare int) {
	head := fmt.Sprintf("[global]\nmax_conns = 1000\ndata_path = %q\n", dp)
	p, addr := runBalancer(t, e2eConfig(head, "", "n1", node))
	roundTrip := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		_, err := io.ReadFull(c, buf)
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
			t.Fatalf("client %d before the limit: %v", i, err)
		}
	}
	limit := limitLeaving(t, p.cmd.Process.Pid, spare)
	if err := unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatal(err)
	}
	var extra []net.Conn
	for range 5 {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, c)
		c.Write([]byte("ping\n"))
	}
	const acceptFailed, paused = "accept failed; backing off", "out of descriptors; accepting paused"
	if spare == 0 {
		p.waitStderr(t, acceptFailed)
	} else {
		p.waitStderr(t, paused)
	}
	// The served clients are not hung by the shortage.
	for i, c := range held {
		if err := roundTrip(c); err != nil {
			t.Fatalf("client %d held at the limit: %v", i, err)
		}
	}
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
	t.Logf("MEASURED %s: limit %d descriptors (%d spare): 10 held; of 5 more, %d served once descriptors were freed, %d closed at once", dp, limit, spare, served, closed)
	if served == 0 {
		t.Fatal("no waiting client was served after the limit")
	}
}

// limitLeaving is a descriptor limit above every socket of process pid
// that leaves exactly spare descriptor numbers free below it (a new
// descriptor takes the lowest free number; those at or above the limit,
// such as a pipe inherited at a high number, do not count). The goroutine
// path's cached splice pipes may be closed by the garbage collector
// meanwhile and free more: either way it is a limit.
func limitLeaving(t *testing.T, pid, spare int) uint64 {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	top := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		open[fd] = true
		if l, _ := os.Readlink(dir + "/" + e.Name()); strings.HasPrefix(l, "socket:") {
			top = max(top, fd+1)
		}
	}
	free := 0
	for fd := range top {
		if !open[fd] {
			free++
		}
	}
	if free > spare {
		t.Fatalf("%d descriptor numbers free below the highest socket; want at most %d", free, spare)
	}
	limit := top
	for ; free < spare; limit++ {
		if !open[limit] {
			free++
		}
	}
	return uint64(limit)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
