package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/bench/internal/wire"
)

// reqFlags are the request/response settings shared by short and keepalive.
type reqFlags struct {
	common
	n, c, req, resp int
}

func parseReq(name string, args []string, defN int) (*reqFlags, error) {
	f := &reqFlags{}
	fs := newFlags(name, &f.common)
	fs.IntVar(&f.n, "n", defN, "total "+map[bool]string{true: "connections", false: "requests"}[name == "short"])
	fs.IntVar(&f.c, "c", 50, "concurrency")
	fs.IntVar(&f.req, "req", 100, "request size in bytes")
	fs.IntVar(&f.resp, "resp", wire.DefaultResponse, "response size in bytes")
	if err := f.parse(fs, args); err != nil {
		return nil, err
	}
	if f.n <= 0 || f.c <= 0 || f.resp < 2 {
		return nil, errors.New("-n, -c and -resp must be positive")
	}
	return f, nil
}

// roundTrip sends one request on conn and reads the whole response,
// returning the answering node's name.
func roundTrip(conn *net.TCPConn, req, buf []byte, timeout time.Duration) (string, error) {
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(req); err != nil {
		return "", err
	}
	if _, err := io.ReadFull(conn, buf); err != nil {
		return "", fmt.Errorf("reading response: %w", err)
	}
	sp := bytes.IndexByte(buf, ' ')
	if sp <= 0 || buf[len(buf)-1] != '\n' {
		return "", fmt.Errorf("malformed response %.20q", buf)
	}
	return string(buf[:sp]), nil
}

func runShort(args []string) (*Result, error) {
	f, err := parseReq("short", args, 20000)
	if err != nil {
		return nil, err
	}
	req := wire.Request(f.req, f.resp)
	var (
		t       tally
		claimed atomic.Int64
	)
	elapsed, timedOut := workers(f.c, f.max, func() func() bool {
		buf := make([]byte, f.resp)
		return func() bool {
			if claimed.Add(1) > int64(f.n) {
				return false
			}
			start := time.Now()
			conn, err := f.dial()
			if err != nil {
				t.fail(err)
				return true
			}
			node, err := roundTrip(conn, req, buf, f.timeout)
			conn.Close()
			if err != nil {
				t.fail(err)
				return true
			}
			t.success(time.Since(start), node)
			return true
		}
	})
	r := t.result(&Result{Mode: "short"}, f.target, elapsed)
	r.TimedOut = timedOut && r.OK+r.Errors < int64(f.n)
	return r, nil
}

func runKeepalive(args []string) (*Result, error) {
	f, err := parseReq("keepalive", args, 100000)
	if err != nil {
		return nil, err
	}
	req := wire.Request(f.req, f.resp)
	var (
		t       tally
		claimed atomic.Int64
	)
	// Each worker owns one connection for the whole run and redials only
	// after an error.
	elapsed, timedOut := workers(f.c, f.max, func() func() bool {
		buf := make([]byte, f.resp)
		var conn *net.TCPConn
		return func() bool {
			if claimed.Add(1) > int64(f.n) {
				if conn != nil {
					conn.Close()
				}
				return false
			}
			if conn == nil {
				var err error
				if conn, err = f.dial(); err != nil {
					t.fail(err)
					return true
				}
			}
			start := time.Now()
			node, err := roundTrip(conn, req, buf, f.timeout)
			if err != nil {
				t.fail(err)
				conn.Close()
				conn = nil
				return true
			}
			t.success(time.Since(start), node)
			return true
		}
	})
	r := t.result(&Result{Mode: "keepalive"}, f.target, elapsed)
	r.TimedOut = timedOut && r.OK+r.Errors < int64(f.n)
	return r, nil
}
