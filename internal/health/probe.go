package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

// maxReply caps what one check reads: the first 4 KiB of a reply hold any
// banner or HTTP status line worth checking.
const maxReply = 4 << 10

// errReplyFull ends a read that reached maxReply undecided.
var errReplyFull = fmt.Errorf("no match in the first %d bytes", maxReply)

// probeFunc runs one check against addr and returns why it failed, nil
// when it passed. The caller bounds it with ctx (timeout and Stop); every
// I/O aborts when ctx ends.
type probeFunc func(ctx context.Context, addr string) error

var (
	_ probeFunc = checkTCP
	_ probeFunc = (*sendExpect)(nil).check
	_ probeFunc = (*httpCheck)(nil).check
)

// checkTCP passes when a connection to addr opens; it closes it at once.
func checkTCP(ctx context.Context, addr string) error {
	_, done, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	done()
	return nil
}

// sendExpect writes send and matches the first reply.
type sendExpect struct {
	send   []byte
	expect string       // as configured, for messages
	exp    *expectation // nil = any reply passes
}

func newSendExpect(cfg config.Check) *sendExpect {
	s := &sendExpect{send: []byte(cfg.Send), expect: cfg.Expect}
	re := cfg.ExpectRE
	if re == nil && cfg.Expect != "" {
		re = regexp.MustCompile(`^(?:` + cfg.Expect + `)`)
	}
	if re != nil {
		s.exp = newExpectation(re)
	}
	return s
}

func (s *sendExpect) check(ctx context.Context, addr string) error {
	conn, done, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer done()
	if len(s.send) > 0 {
		if _, err := conn.Write(s.send); err != nil {
			return fmt.Errorf("send: %w", reason(err))
		}
	}
	var ok bool
	r := s.exp.newReply()
	reply, err := readReply(conn, func(b []byte) bool {
		var decided bool
		ok, decided = r.decide(b)
		return decided
	})
	if ok {
		return nil
	}
	what := "expect a reply"
	if s.exp != nil {
		what = fmt.Sprintf("expect %q", s.expect)
	}
	switch {
	case err == nil:
		return fmt.Errorf("%s: got %s", what, quote(reply))
	case errors.Is(err, errReplyFull):
		return fmt.Errorf("%s: got %s (%w)", what, quote(reply), err)
	}
	return fmt.Errorf("%s: got %s (read: %w)", what, quote(reply), reason(err))
}

// httpCheck sends a GET for path and expects status.
type httpCheck struct {
	path   string
	status int
}

func newHTTPCheck(cfg config.Check) *httpCheck {
	return &httpCheck{path: cfg.Path, status: cfg.Status}
}

// check sends a minimal HTTP/1.1 request, Host being addr, and reads no
// further than the status line.
func (h *httpCheck) check(ctx context.Context, addr string) error {
	conn, done, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer done()
	req := "GET " + h.path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUser-Agent: protobalance-health\r\nConnection: close\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return fmt.Errorf("send: %w", reason(err))
	}
	reply, err := readReply(conn, func(b []byte) bool { return bytes.IndexByte(b, '\n') >= 0 })
	switch {
	case errors.Is(err, errReplyFull):
		return fmt.Errorf("http: no status line in the first %d bytes", maxReply)
	case err != nil:
		return fmt.Errorf("http: no status line: got %s (read: %w)", quote(reply), reason(err))
	}
	line, _, _ := bytes.Cut(reply, []byte("\n"))
	code, ok := parseStatusLine(string(line))
	if !ok {
		return fmt.Errorf("http: malformed status line %s", quote(line))
	}
	if code != h.status {
		return fmt.Errorf("status %d, want %d", code, h.status)
	}
	return nil
}

// parseStatusLine returns the code of "HTTP/1.1 200 OK\r".
func parseStatusLine(line string) (int, bool) {
	proto, rest, ok := strings.Cut(strings.TrimSuffix(line, "\r"), " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/") || len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return 0, false
	}
	for _, c := range rest[:3] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	code, _ := strconv.Atoi(rest[:3])
	return code, true
}

// aLongTimeAgo is a deadline in the past: it aborts blocked I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// dial connects to addr and binds the connection to ctx: its deadline
// becomes the connection's, and cancelling ctx aborts blocked I/O. done
// releases both and closes the connection; call it exactly once.
func dial(ctx context.Context, addr string) (conn net.Conn, done func(), err error) {
	var d net.Dialer
	conn, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", reason(err))
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	return conn, func() { stop(); _ = conn.Close() }, nil
}

// readReply reads from conn until decided says the bytes so far settle the
// check (err nil), maxReply bytes arrived (errReplyFull), or a read fails.
// decided sees every non-empty prefix that arrives.
func readReply(conn net.Conn, decided func(b []byte) bool) ([]byte, error) {
	buf := make([]byte, 0, maxReply)
	for {
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 && decided(buf) {
			return buf, nil
		}
		if len(buf) == cap(buf) {
			return buf, errReplyFull
		}
		if err != nil {
			return buf, err
		}
	}
}

// reason strips an I/O error to its cause ("connection refused", "i/o
// timeout", "EOF"), keeping it matchable with errors.Is.
func reason(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// quote shows at most 64 bytes of a reply, trailing line break dropped.
func quote(b []byte) string {
	const limit = 64
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return "nothing"
	}
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}
