package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ping is the round trip that proves an echo connection alive.
var ping = []byte("ping\n")

func echoOnce(conn *net.TCPConn, msg []byte, timeout time.Duration) error {
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	want := msg[len(msg)-len(ping):]
	got := make([]byte, len(want))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("reading echo: %w", err)
	}
	if string(got) != string(want) {
		return fmt.Errorf("echo returned %q", got)
	}
	return nil
}

func runIdle(args []string) (*Result, error) {
	var f common
	fs := newFlags("idle", &f)
	k := fs.Int("k", 9900, "connections to open and hold")
	c := fs.Int("c", 100, "connections being opened at once")
	hold := fs.Duration("hold", 5*time.Second, "how long to hold them all open after the last one opened")
	ready := fs.String("ready", "", "file to create once all are open (its content: the count)")
	if err := f.parse(fs, args); err != nil {
		return nil, err
	}
	if *k <= 0 || *c <= 0 {
		return nil, errors.New("-k and -c must be positive")
	}
	var (
		t       tally
		claimed atomic.Int64
	)
	conns := make([]*net.TCPConn, *k)
	first := append([]byte("E\n"), ping...)
	start := time.Now()
	deadline := start.Add(f.max)
	openTime, _ := workers(*c, f.max, func() func() bool {
		return func() bool {
			i := claimed.Add(1) - 1
			if i >= int64(*k) {
				return false
			}
			conn, err := f.dial()
			if err != nil {
				t.fail(err)
				return true
			}
			if err := echoOnce(conn, first, f.timeout); err != nil {
				conn.Close()
				t.fail(err)
				return true
			}
			conns[i] = conn
			t.success(0, "")
			return true
		}
	})
	opened := t.ok
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(strconv.FormatInt(opened, 10)+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	if rest := time.Until(deadline); rest < *hold {
		*hold = max(rest, 0)
	}
	time.Sleep(*hold)

	// Second round trip on every held connection, c at a time.
	var alive atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, *c)
	for _, conn := range conns {
		if conn == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			if err := echoOnce(conn, ping, f.timeout); err != nil {
				t.fail(fmt.Errorf("after hold: %w", err))
			} else {
				alive.Add(1)
			}
			conn.Close()
			<-sem
		}()
	}
	wg.Wait()
	r := t.result(&Result{Mode: "idle"}, f.target, time.Since(start))
	r.Rate = 0
	r.Opened, r.Alive = opened, alive.Load()
	r.OK = r.Alive
	r.OpenSec = round3(openTime.Seconds())
	return r, nil
}

// runProbe measures launch-to-first-forwarded-connection: it repeats tiny
// echo round trips until one succeeds and reports the time since -since.
func runProbe(args []string) (*Result, error) {
	var f common
	fs := newFlags("probe", &f)
	since := fs.String("since", "", "launch time as bash's $EPOCHREALTIME (seconds.micros); default: probe start")
	pause := fs.Duration("pause", 250*time.Microsecond, "pause between failed attempts")
	if err := f.parse(fs, args); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if *since != "" {
		sec, frac, _ := strings.Cut(*since, ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		us, err2 := strconv.ParseInt((frac + "000000")[:6], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("-since %q: want seconds.micros", *since)
		}
		t0 = time.Unix(s, us*1000)
	}
	deadline := time.Now().Add(f.max)
	msg := append([]byte("E\n"), ping...)
	var t tally
	for time.Now().Before(deadline) {
		conn, err := f.dial()
		if err == nil {
			err = echoOnce(conn, msg, f.timeout)
			conn.Close()
			if err == nil {
				r := t.result(&Result{Mode: "probe"}, f.target, time.Since(t0))
				r.OK, r.Rate = 1, 0
				r.LaunchMs = round3(float64(time.Since(t0).Microseconds()) / 1000)
				return r, nil
			}
		}
		t.fail(err)
		time.Sleep(*pause)
	}
	r := t.result(&Result{Mode: "probe", TimedOut: true}, f.target, time.Since(t0))
	r.Rate = 0
	return r, nil
}
