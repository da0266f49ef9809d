package health

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

// probeOnce runs one check of cfg against addr as the checker does.
func probeOnce(t *testing.T, cfg config.Check, addr string) (time.Duration, error) {
	t.Helper()
	c := New(cfg, nil, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := c.probe(ctx, addr)
	return time.Since(start), err
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("err %q, want a pass", err)
	case want != "" && err == nil:
		t.Errorf("passed, want %q", want)
	case want != "" && err.Error() != want:
		t.Errorf("err %q\nwant %q", err, want)
	}
}

func TestTCP(t *testing.T) {
	cfg := config.Check{Type: "tcp", Timeout: 2 * time.Second}
	s := serve(t, hold)
	_, err := probeOnce(t, cfg, s.Addr())
	wantErr(t, err, "")

	_, err = probeOnce(t, cfg, closedAddr(t))
	wantErr(t, err, "connect: connection refused")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("errors.Is(%v, ECONNREFUSED) = false", err)
	}
}

// banner answers every connection with msg, then holds it open, as an SMTP
// server waits for a command after its greeting.
func banner(msg ...string) func(net.Conn) {
	return func(c net.Conn) {
		for i, m := range msg {
			if i > 0 {
				time.Sleep(10 * time.Millisecond) // a separate segment, most likely
			}
			if _, err := io.WriteString(c, m); err != nil {
				return
			}
		}
		hold(c)
	}
}

func TestSendExpect(t *testing.T) {
	// Replies that cannot match fail at once, long before this timeout.
	const timeout = 5 * time.Second
	tests := []struct {
		name, send, expect string
		handle             func(net.Conn)
		timeout            time.Duration
		want               string
	}{
		{name: "prefix", expect: "220", handle: banner("220 ok\r\n")},
		{name: "regexp", expect: `2\d\d ok`, handle: banner("220 ok\r\n")},
		{name: "split reply", expect: "220 ok", handle: banner("2", "20", " ok\r\n")},
		{name: "any reply", handle: banner("x")},
		{name: "bad banner, prefix", expect: "220", handle: banner("554 go away\r\n"),
			want: `expect "220": got "554 go away"`},
		{name: "bad banner, regexp", expect: `(220|250) `, handle: banner("554 go away\r\n"),
			want: `expect "(220|250) ": got "554 go away"`},
		{name: "partial then bad", expect: "220", handle: banner("2", "54\r\n"),
			want: `expect "220": got "254"`},
		{name: "closed without reply", expect: "220", handle: func(net.Conn) {},
			want: `expect "220": got nothing (read: EOF)`},
		{name: "closed mid-reply", expect: "220", handle: func(c net.Conn) { io.WriteString(c, "22") },
			want: `expect "220": got "22" (read: EOF)`},
		{name: "silent", expect: "220", handle: hold, timeout: 100 * time.Millisecond,
			want: `expect "220": got nothing (read: i/o timeout)`},
		{name: "silent, any reply", handle: hold, timeout: 100 * time.Millisecond,
			want: `expect a reply: got nothing (read: i/o timeout)`},
		{name: "capped", expect: `x*y`, handle: banner(strings.Repeat("x", 5000)),
			want: `expect "x*y": got "` + strings.Repeat("x", 64) + `"... (no match in the first 4096 bytes)`},
		{name: "send then expect", send: "EHLO check\r\n", expect: "250 hello EHLO check",
			handle: func(c net.Conn) {
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					io.WriteString(c, "250 hello "+line)
				}
				hold(c)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, tt.handle)
			cfg := config.Check{Type: "send-expect", Send: tt.send, Expect: tt.expect, Timeout: timeout}
			if tt.timeout > 0 {
				cfg.Timeout = tt.timeout
			}
			if tt.expect != "" && tt.name != "prefix" { // "prefix" lets New compile Expect
				cfg.ExpectRE = anchored(tt.expect)
			}
			took, err := probeOnce(t, cfg, s.Addr())
			wantErr(t, err, tt.want)
			if tt.timeout == 0 && took > timeout/2 {
				t.Errorf("took %v: the reply should have decided it", took)
			}
		})
	}
}

// httpServer answers each connection's request with resp and hands the
// parsed request to got.
func httpServer(t *testing.T, resp string, got chan<- *http.Request) *server {
	return serve(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			t.Errorf("server: %v", err)
			return
		}
		if got != nil {
			got <- req
		}
		io.WriteString(c, resp)
	})
}

func TestHTTP(t *testing.T) {
	const ok200 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
	tests := []struct {
		name   string
		status int
		resp   string
		want   string
	}{
		{name: "200", resp: ok200},
		{name: "204 wanted", status: 204, resp: "HTTP/1.1 204 No Content\r\n\r\n"},
		{name: "HTTP/1.0, no reason", resp: "HTTP/1.0 200\r\n\r\n"},
		{name: "503", resp: "HTTP/1.1 503 Service Unavailable\r\n\r\n", want: "status 503, want 200"},
		{name: "200 unwanted", status: 204, resp: ok200, want: "status 200, want 204"},
		{name: "not http", resp: "220 mail.example ESMTP\r\n", want: `http: malformed status line "220 mail.example ESMTP"`},
		{name: "bad code", resp: "HTTP/1.1 2x0 OK\r\n\r\n", want: `http: malformed status line "HTTP/1.1 2x0 OK"`},
		{name: "no reply", resp: "", want: "http: no status line: got nothing (read: EOF)"},
		{name: "endless line", resp: strings.Repeat("H", 5000),
			want: "http: no status line in the first 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan *http.Request, 1)
			s := httpServer(t, tt.resp, got)
			cfg := config.Check{Type: "http", Path: "/health?full=1", Status: tt.status, Timeout: 2 * time.Second}
			_, err := probeOnce(t, cfg, s.Addr())
			wantErr(t, err, tt.want)
			req := <-got
			if req.Method != "GET" || req.RequestURI != "/health?full=1" || req.Host != s.Addr() ||
				req.Proto != "HTTP/1.1" || !req.Close {
				t.Errorf("request %s %s %s, Host %q, Close %v; want GET /health?full=1 HTTP/1.1, Host %q, Close true",
					req.Method, req.RequestURI, req.Proto, req.Host, req.Close, s.Addr())
			}
		})
	}
}

func TestHTTPRefused(t *testing.T) {
	_, err := probeOnce(t, config.Check{Type: "http"}, closedAddr(t))
	wantErr(t, err, "connect: connection refused")
}

// Stop's cancellation aborts a check blocked in a read at once.
func TestProbeCancel(t *testing.T) {
	s := serve(t, hold)
	c := New(config.Check{Type: "send-expect", Expect: "220", Timeout: time.Minute}, nil, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := c.probe(ctx, s.Addr())
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("cancelled check: err %v after %v", err, time.Since(start))
	}
}

func TestParseStatusLine(t *testing.T) {
	tests := []struct {
		line string
		code int
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r", 200, true},
		{"HTTP/1.0 503 Service Unavailable", 503, true},
		{"HTTP/1.1 204", 204, true},
		{"HTTP/1.1 2000 OK", 0, false},
		{"HTTP/1.1 20", 0, false},
		{"HTTP/1.1 +20 OK", 0, false},
		{"HTTP/1.1", 0, false},
		{"SSH-2.0-OpenSSH", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		code, ok := parseStatusLine(tt.line)
		if code != tt.code || ok != tt.ok {
			t.Errorf("parseStatusLine(%q) = %d, %v; want %d, %v", tt.line, code, ok, tt.code, tt.ok)
		}
	}
}
