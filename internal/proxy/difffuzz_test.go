//go:build linux

package proxy_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

// FuzzDataPaths is a differential test of the two data paths: the fuzz
// input decodes into a short script of what the client and the node of ONE
// proxied connection do, the script runs through a "loop" server and a
// "goroutine" server (the oracle) at once, and what each end observed must
// be the same on both.
//
// Script language: the input is read two bytes a step (op, arg), at most
// maxSteps steps; op%numOps picks the step, arg its size. X is the side
// acting, Y its peer; "node" is the node connection of the moment (node a,
// or node b after a fall-over).
//
//	cw/nw N    X writes the next N bytes of its byte stream (N from sizes)
//	cs/ns      X waits until Y has received everything X wrote
//	ch/nh      X half-closes (CloseWrite)
//	cc/nc      X closes (Close), after it has read everything Y wrote
//	cr/nr      X resets (SetLinger(0)+Close), after both ways are drained
//	cu/nu K    X stops reading, Y writes K bytes (unread[]), and once they
//	           sit in X's receive queue X closes: the kernel resets
//
// The cluster is node a (fallover = "b") and node b (standby), both
// scripted; the first connection goes to a. early_close_window is far
// longer than a run, so whether a close by a is a fall-over never depends
// on timing; idle_timeout and fin_timeout are 2s, so a connection left open
// by its script ends without any step.
//
// Rules that keep the comparison deterministic (each enforced by the
// runner, not by hoping the proxy is fast):
//
//   - Writes do not wait: bytes in flight next to a half-close are ordered
//     by TCP itself, so they are compared exactly.
//   - A close (cc/nc) first waits until the closing side has read all its
//     peer wrote, so the close sends a FIN, never a reset for unread data
//     (that case is cu/nu, where the unread bytes are known to be queued).
//   - A node's half-close first waits until it has received all the
//     client wrote: a FIN racing client bytes in flight is an early close
//     or not by a hair on either path (for a, and for b after a fall-over).
//   - A reset (cr/nr) first drains both directions: no byte is in flight
//     when the RST leaves, so no data race with it exists to compare.
//   - After every half-close, close and reset, the runner waits until the
//     peer has seen its end (EOF or RST), so that a later write of the peer
//     cannot overtake the end in the proxy; when node a closes before any
//     byte was written by either side (a possible early close), it waits
//     instead for node b's accept, the client's end, or the session's end.
//   - A close with unread bytes (cu/nu) after this side's own FIN: the
//     reset it sends races with the peer's next step, so the peer's
//     late-RST is not compared (racyLateRST).
//   - Writes to a peer that has gone (EPIPE, ECONNRESET, a partial write)
//     are racy by nature: their results are shown in the trace but never
//     compared; only what each reader received is.
//   - Each side's end is the first terminal event its reader saw: EOF, RST,
//     self (we closed it first) or open (nothing within the bound). A reset
//     arriving after an EOF is reported separately as late-RST (SO_ERROR
//     after the session ended, or a reset error on a later write).
//
// Beyond the comparison, each path must forward bytes unchanged: what a
// side received is a prefix of what its peer wrote.
func FuzzDataPaths(f *testing.F) {
	if os.Getenv("PB_DATA_PATH") == "goroutine" {
		f.Skip("the differential test runs once, with the loop pass")
	}
	for _, s := range diffSeeds {
		f.Add(encodeScript(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := decodeScript(data)
		if ignoreFinEarly && sc.finBeforeBytes() {
			return
		}
		runs := [2]*run{
			newRun(t, "loop", "127.0.14.1", "127.0.14.2"),
			newRun(t, "goroutine", "127.0.14.3", "127.0.14.4"),
		}
		var obs [2]observation
		var wg sync.WaitGroup
		for i, r := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				obs[i] = r.exec(sc)
			}()
		}
		wg.Wait()
		var problems []string
		for i, name := range []string{"loop", "goroutine"} {
			for _, v := range obs[i].violations {
				problems = append(problems, name+": "+v)
			}
		}
		problems = append(problems, obs[0].diff(&obs[1], ignoreLateRST, sc.racyLateRST())...)
		if len(problems) > 0 {
			t.Fatalf("data paths differ\nscript:\n%s\nproblems:\n  %s\nloop trace:\n%s\ngoroutine trace:\n%s",
				sc, strings.Join(problems, "\n  "), obs[0].trace, obs[1].trace)
		}
	})
}

const (
	maxSteps = 12
	// bound is how long the runner waits for any one thing that should
	// happen (a byte to arrive, an end to be seen). It is never reached
	// when both paths behave; it only keeps a misbehaving run finite.
	bound = 3 * time.Second
	// sessionBound waits for the proxy to end the session after the
	// script: above idle_timeout and fin_timeout (2s).
	sessionBound = 8 * time.Second
)

type opcode uint8

const (
	opCW opcode = iota
	opNW
	opCS
	opNS
	opCH
	opNH
	opCC
	opNC
	opCR
	opNR
	opCU
	opNU
	numOps
)

var opNames = [numOps]string{"cw", "nw", "cs", "ns", "ch", "nh", "cc", "nc", "cr", "nr", "cu", "nu"}

var (
	sizes  = [...]int{1, 3, 17, 100, 1000, 4096, 65536, 200_000}
	unread = [...]int{1, 10, 100, 1000}
)

type step struct {
	op opcode
	n  int // bytes, for writes and unread closes
}

type script []step

func (op opcode) client() bool { return op%2 == 0 }

func (s step) String() string {
	who := "node"
	if s.op.client() {
		who = "client"
	}
	switch s.op {
	case opCW, opNW:
		return fmt.Sprintf("%s writes %d B", who, s.n)
	case opCS, opNS:
		return who + " waits until its peer has received all it wrote"
	case opCH, opNH:
		return who + " half-closes (CloseWrite)"
	case opCC, opNC:
		return who + " closes (after reading all)"
	case opCR, opNR:
		return who + " resets (SetLinger 0 + Close)"
	default:
		return fmt.Sprintf("%s stops reading, peer writes %d B, %s closes with them unread", who, s.n, who)
	}
}

func (sc script) String() string {
	if len(sc) == 0 {
		return "  (no steps)"
	}
	var b strings.Builder
	for i, s := range sc {
		fmt.Fprintf(&b, "  %2d. %-4s %s\n", i+1, opNames[s.op], s)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func decodeScript(data []byte) script {
	var sc script
	for i := 0; i+1 < len(data) && len(sc) < maxSteps; i += 2 {
		op := opcode(data[i] % byte(numOps))
		s := step{op: op}
		switch op {
		case opCW, opNW:
			s.n = sizes[int(data[i+1])%len(sizes)]
		case opCU, opNU:
			s.n = unread[int(data[i+1])%len(unread)]
		}
		sc = append(sc, s)
	}
	return sc
}

// encodeScript is decodeScript's inverse, for the seeds.
func encodeScript(sc script) []byte {
	var b []byte
	for _, s := range sc {
		arg := 0
		switch s.op {
		case opCW, opNW:
			arg = indexOf(sizes[:], s.n)
		case opCU, opNU:
			arg = indexOf(unread[:], s.n)
		}
		b = append(b, byte(s.op), byte(arg))
	}
	return b
}

func indexOf(xs []int, v int) int {
	for i, x := range xs {
		if x == v {
			return i
		}
	}
	panic(fmt.Sprintf("no size %d", v))
}

// st is shorthand for the seeds.
func st(op opcode, n ...int) step {
	s := step{op: op}
	if len(n) > 0 {
		s.n = n[0]
	}
	return s
}

var diffSeeds = []script{
	// Half-close both ways, client first, with a reply after its FIN.
	{st(opCW, 100), st(opCH), st(opNW, 1000), st(opNH)},
	// Node half-closes first; the client keeps sending after the EOF.
	{st(opNW, 17), st(opNH), st(opCW, 65536), st(opCH)},
	// Server-first banner, then request and answer, then the client closes.
	{st(opNW, 17), st(opNS), st(opCW, 3), st(opCS), st(opNW, 100), st(opNS), st(opCC)},
	// Bulk 200 KB each way at once, then both half-close.
	{st(opCW, 200_000), st(opNW, 200_000), st(opCH), st(opNH)},
	// Early close before any byte: fall over to b, which serves.
	{st(opNC), st(opNW, 17), st(opCW, 100), st(opCH), st(opNH)},
	// Early reset before any byte: fall over to b.
	{st(opNR), st(opCW, 1000), st(opNW, 1000), st(opCC)},
	// Early half-close before any byte: fall over to b.
	{st(opNH), st(opNW, 3), st(opNS), st(opCC)},
	// The client resets after an exchange.
	{st(opCW, 100), st(opNW, 100), st(opCR)},
	// The node resets after an exchange, mid bulk transfer.
	{st(opNW, 65536), st(opCW, 4096), st(opNR)},
	// The node closes with unread client bytes: its kernel resets.
	{st(opCW, 17), st(opCS), st(opNU, 100)},
	// The client closes with unread node bytes.
	{st(opNW, 3), st(opCU, 1000)},
	// The client closes, then the node writes into the closed connection.
	{st(opCW, 17), st(opCC), st(opNW, 1000)},
	// The node closes after the exchange, then the client writes on.
	{st(opCW, 17), st(opNW, 17), st(opNC), st(opCW, 1000)},
	// An idle connection left open: the idle timeout ends it.
	{st(opCW, 1), st(opCS)},
	// A half-closed connection left open: the fin timeout ends it.
	{st(opNW, 1), st(opNS), st(opCH)},
	// Half-close, then a reset from the same side: the reset must still
	// reach the peer.
	{st(opCW, 17), st(opCH), st(opCR)},
}

// end is how a reader's stream ended.
const (
	endOpen = "open"
	endEOF  = "EOF"
	endRST  = "RST"
	endSelf = "self"
)

// peer is one end of the proxied connection as the test holds it.
type peer struct {
	name      string
	conn      *net.TCPConn
	got       []byte
	end       string // "" while the reader runs
	closed    bool   // closed by us
	wshut     bool   // CloseWrite done
	lateRST   bool   // a reset error on a write after the reader's EOF
	stopping  bool   // the reader is being stopped on purpose
	readerEnd chan struct{}
}

// run is one script's run through one server. mu guards every peer;
// changed is closed (and replaced) at every change a waiter may wait for.
type run struct {
	t       *testing.T
	path    string
	srv     *proxy.Server
	mu      sync.Mutex
	changed chan struct{}
	trace   strings.Builder

	client   *peer
	nodes    []*peer // a, then b after a fall-over
	aConns   chan *net.TCPConn
	bConns   chan *net.TCPConn
	bCount   int
	cStream  stream
	nStream  stream
	cWritten int // bytes the client wrote (accepted by its socket)
	nWritten int // bytes the nodes wrote
	moved    bool
}

type stream struct{ salt byte }

func (s stream) bytes(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		k := uint32(from + i)
		b[i] = byte(k*2654435761>>13) ^ byte(k>>9) ^ s.salt
	}
	return b
}

type observation struct {
	fellOver   bool
	bAccepts   int
	ends       map[string]string
	got        map[string][]byte
	lateRST    map[string]bool
	violations []string
	trace      string
}

// Discrepancies found earlier can be masked, so that a fuzzing run looks
// past them for new ones should they come back (both are fixed; their
// reproducers are in testdata): PB_DIFFFUZZ_IGNORE is a comma-separated
// list of
//
//	late-rst   a reset that arrives on a side whose reading direction
//	           already ended with EOF is not passed on (testdata
//	           late-reset-*)
//	fin-early  a node's close after the client's FIN, before any byte, is
//	           taken for an early close and falls over; the relay commits
//	           at the client's FIN (testdata early-close-after-client-fin):
//	           inputs where the client half-closes or closes before any
//	           byte are skipped
var (
	ignoreLateRST  = ignoring("late-rst")
	ignoreFinEarly = ignoring("fin-early")
)

func ignoring(what string) bool {
	for _, w := range strings.Split(os.Getenv("PB_DIFFFUZZ_IGNORE"), ",") {
		if w == what {
			return true
		}
	}
	return false
}

// finBeforeBytes reports whether the client half-closes or closes before
// either side writes.
func (sc script) finBeforeBytes() bool {
	for _, s := range sc {
		switch s.op {
		case opCW, opNW:
			return false
		case opCH, opCC:
			return true
		}
	}
	return false
}

// racyLateRST names the sides whose late-RST is not compared: a close
// with unread bytes (cu/nu) sends a reset that races with whatever the
// peer does next when the peer had already seen this side's FIN (the
// runner's wait for "the peer has seen its end" is then satisfied at
// once). Seen by fuzzing: each path reported the late reset in some runs
// and not in others, both ways round.
func (sc script) racyLateRST() map[string]bool {
	racy := map[string]bool{}
	clientFIN, nodeFIN := false, false
	for _, s := range sc {
		switch s.op {
		case opCH, opCC:
			clientFIN = true
		case opNH, opNC:
			nodeFIN = true
		case opCU:
			if clientFIN {
				racy["a"], racy["b"] = true, true
			}
		case opNU:
			if nodeFIN {
				racy["client"] = true
			}
		}
	}
	return racy
}

func (o *observation) diff(p *observation, ignoreLate bool, racy map[string]bool) []string {
	var out []string
	if o.fellOver != p.fellOver || o.bAccepts != p.bAccepts {
		out = append(out, fmt.Sprintf("fall-over to b: loop %v (%d accepts), goroutine %v (%d accepts)",
			o.fellOver, o.bAccepts, p.fellOver, p.bAccepts))
	}
	for _, who := range []string{"client", "a", "b"} {
		if o.ends[who] != p.ends[who] {
			out = append(out, fmt.Sprintf("%s's end: loop %s, goroutine %s", who, o.ends[who], p.ends[who]))
		}
		if !ignoreLate && !racy[who] && o.lateRST[who] != p.lateRST[who] {
			out = append(out, fmt.Sprintf("%s got a reset after its EOF: loop %v, goroutine %v", who, o.lateRST[who], p.lateRST[who]))
		}
		a, b := o.got[who], p.got[who]
		if string(a) != string(b) {
			i := 0
			for i < len(a) && i < len(b) && a[i] == b[i] {
				i++
			}
			out = append(out, fmt.Sprintf("%s received %d B on loop, %d B on goroutine (first difference at %d)", who, len(a), len(b), i))
		}
	}
	return out
}

// newRun starts a server on the given data path with its two scripted
// nodes; the server and the nodes are closed at the end of the test.
func newRun(t *testing.T, path, balIP, nodeIP string) *run {
	r := &run{t: t, path: path, changed: make(chan struct{}),
		aConns: make(chan *net.TCPConn, 4), bConns: make(chan *net.TCPConn, 4),
		cStream: stream{salt: 0x5a}, nStream: stream{salt: 0xa5}}
	lnA := r.listen(nodeIP, r.aConns, nil)
	lnB := r.listen(nodeIP, r.bConns, &r.bCount)
	toml := testConfig("", "idle_timeout = \"2s\"\nfin_timeout = \"2s\"\nearly_close_window = \"60s\"",
		tnode{"a", lnA.Addr().String(), `fallover = "b"`},
		tnode{"b", lnB.Addr().String(), "standby = true"})
	toml = strings.ReplaceAll(toml, "{{BIND}}", balIP+":0")
	cfg, err := config.Parse("diff.toml", []byte(toml), t.TempDir())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine(), Log: testLogger(t), DataPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdownNow(srv) })
	r.srv = srv
	return r
}

// exec runs sc through r's server (on any goroutine: it does not fail the
// test, it reports what it saw).
func (r *run) exec(sc script) observation {
	c, err := net.Dial("tcp", r.srv.Listeners()[0].Addrs()[0].String())
	if err != nil {
		return observation{violations: []string{"dial: " + err.Error()}}
	}
	r.client = r.startPeer("client", c.(*net.TCPConn))
	defer r.closeAll()
	select {
	case a := <-r.aConns:
		r.nodes = append(r.nodes, r.startPeer("a", a))
	case <-time.After(bound):
		r.logf("node a never accepted a connection")
	}
	if len(r.nodes) > 0 {
		for i, s := range sc {
			r.logf("%2d. %s", i+1, s)
			r.do(s)
		}
	}
	return r.finish()
}

// listen starts a scripted node's listener: accepted connections go to ch.
func (r *run) listen(ip string, ch chan *net.TCPConn, count *int) net.Listener {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		r.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Into the channel before the count: a runner that sees
			// the count must find the connection (awaitFallOver).
			select {
			case ch <- c.(*net.TCPConn):
			default:
				c.Close()
			}
			r.mu.Lock()
			if count != nil {
				*count++
			}
			r.notifyLocked()
			r.mu.Unlock()
		}
	}()
	r.t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for {
			select {
			case c := <-ch:
				c.Close()
			default:
				return
			}
		}
	})
	return ln
}

func (r *run) logf(format string, args ...any) {
	r.mu.Lock()
	fmt.Fprintf(&r.trace, "  "+format+"\n", args...)
	r.mu.Unlock()
}

func (r *run) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor waits until cond (called with r.mu held) holds, for at most
// bound. Peers and accepts signal r.changed; poll is set when cond also
// reads something without a signal (the listener's active count), which
// is then re-checked every millisecond.
func (r *run) waitFor(what string, limit time.Duration, poll bool, cond func() bool) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	var tick <-chan time.Time
	if poll {
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		r.mu.Lock()
		ok := cond()
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-tick:
		case <-deadline.C:
			r.logf("     (gave up waiting for %s)", what)
			return false
		}
	}
}

func (r *run) startPeer(name string, c *net.TCPConn) *peer {
	p := &peer{name: name, conn: c, readerEnd: make(chan struct{})}
	c.SetReadDeadline(time.Now().Add(4 * sessionBound)) // a last resort only
	go r.read(p)
	return p
}

func (r *run) read(p *peer) {
	defer close(p.readerEnd)
	buf := make([]byte, 64<<10)
	for {
		n, err := p.conn.Read(buf)
		r.mu.Lock()
		p.got = append(p.got, buf[:n]...)
		if err != nil && p.end == "" {
			switch {
			case errors.Is(err, io.EOF):
				p.end = endEOF
			case errors.Is(err, syscall.ECONNRESET):
				p.end = endRST
			case p.stopping || p.closed || errors.Is(err, net.ErrClosed):
				p.end = endSelf
			case errors.Is(err, os.ErrDeadlineExceeded):
				p.end = endOpen
			default:
				p.end = "error " + err.Error()
			}
		}
		r.notifyLocked()
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// node is the node connection of the moment.
func (r *run) node() *peer { return r.nodes[len(r.nodes)-1] }

// nodesGot is how many client bytes all node connections received.
func (r *run) nodesGotLocked() int {
	n := 0
	for _, p := range r.nodes {
		n += len(p.got)
	}
	return n
}

// drained reports (r.mu held) whether x has received everything its peer
// wrote, or cannot receive more.
func (r *run) drainedLocked(x *peer) bool {
	if x.end != "" {
		return true
	}
	if x == r.client {
		return len(x.got) >= r.nWritten
	}
	return r.nodesGotLocked() >= r.cWritten
}

func (r *run) do(s step) {
	x, y := r.client, r.node()
	if !s.op.client() {
		x, y = y, x
	}
	if s.op == opNH {
		// Whether a node's FIN is an early close (a's: fall over; b's
		// after a fall-over: no node left) must not hang on a race with
		// client bytes in flight to it: wait for them first, as a close
		// and a reset do. (Fuzzing found the race on b.)
		r.waitFor(x.name+" to receive all", bound, false, func() bool { return r.drainedLocked(x) })
	}
	r.mu.Lock()
	xClosed, xShut := x.closed, x.wshut
	// A close of node a before either side wrote a byte may be an early
	// close, which falls over to b.
	candidate := x == r.nodes[0] && len(r.nodes) == 1 && !r.moved
	clientEnd := r.client.end
	r.mu.Unlock()
	if xClosed || (xShut && (s.op == opCW || s.op == opNW || s.op == opCH || s.op == opNH)) {
		r.logf("     skipped: %s is closed", x.name)
		return
	}
	switch s.op {
	case opCW, opNW:
		r.write(x, s.n)
		return
	case opCS, opNS:
		r.waitFor(y.name+" to receive all of "+x.name+"'s bytes", bound, false, func() bool { return r.drainedLocked(y) })
		return
	case opCH, opNH:
		if err := x.conn.CloseWrite(); err != nil {
			r.logf("     CloseWrite: %v", err)
		}
		r.mu.Lock()
		x.wshut = true
		r.mu.Unlock()
	case opCC, opNC:
		r.waitFor(x.name+" to receive all", bound, false, func() bool { return r.drainedLocked(x) })
		r.closePeer(x, false)
	case opCR, opNR:
		r.waitFor(x.name+" to receive all", bound, false, func() bool { return r.drainedLocked(x) })
		r.waitFor(y.name+" to receive all", bound, false, func() bool { return r.drainedLocked(y) })
		r.closePeer(x, true)
	case opCU, opNU:
		r.closeUnread(x, y, s.n)
		r.mu.Lock()
		candidate = candidate && !r.moved
		r.mu.Unlock()
	}
	if candidate {
		r.awaitFallOver(clientEnd)
		return
	}
	r.waitFor(y.name+" to see the end", bound, false, func() bool { return y.end != "" })
}

func (r *run) write(x *peer, n int) {
	r.mu.Lock()
	from := r.cWritten
	s := r.cStream
	if x != r.client {
		from, s = r.nWritten, r.nStream
	}
	r.mu.Unlock()
	x.conn.SetWriteDeadline(time.Now().Add(bound))
	w, err := x.conn.Write(s.bytes(from, n))
	r.mu.Lock()
	if x == r.client {
		r.cWritten += w
	} else {
		r.nWritten += w
	}
	if w > 0 {
		r.moved = true
	}
	if err != nil && x.end == endEOF && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		x.lateRST = true
	}
	r.mu.Unlock()
	if err != nil {
		r.logf("     wrote %d B: %v (not compared)", w, err)
	}
}

// closePeer closes x, with a reset when abort is set.
func (r *run) closePeer(x *peer, abort bool) {
	r.mu.Lock()
	x.closed = true
	r.mu.Unlock()
	if abort {
		x.conn.SetLinger(0)
	}
	x.conn.Close()
	<-x.readerEnd
}

// closeUnread stops x's reader, has y write k bytes, waits until they are
// queued in x's socket and closes x, which makes its kernel send a reset.
func (r *run) closeUnread(x, y *peer, k int) {
	r.waitFor(x.name+" to receive all", bound, false, func() bool { return r.drainedLocked(x) })
	r.mu.Lock()
	x.stopping = true
	yCanWrite := !y.closed && !y.wshut
	r.mu.Unlock()
	x.conn.SetReadDeadline(time.Unix(1, 0))
	<-x.readerEnd
	if yCanWrite {
		r.write(y, k)
		x.conn.SetReadDeadline(time.Now().Add(bound))
		rc, err := x.conn.SyscallConn()
		if err == nil {
			queued := 0
			err = rc.Read(func(fd uintptr) bool {
				queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
				return queued >= k
			})
			if err != nil {
				r.logf("     %d of %d B queued unread: %v", queued, k, err)
			}
		}
	}
	r.closePeer(x, false)
}

// awaitFallOver follows a close of node a that may be an early close: the
// proxy either dials b (which then is the node) or ends the client's
// connection.
func (r *run) awaitFallOver(clientEnd string) {
	l := r.srv.Listeners()[0]
	r.waitFor("a fall-over or an end", bound, true, func() bool {
		return r.bCount > 0 || r.client.end != clientEnd || l.Stats.Active.Load() == 0
	})
	select {
	case b := <-r.bConns:
		p := r.startPeer("b", b)
		r.mu.Lock()
		r.nodes = append(r.nodes, p)
		r.mu.Unlock()
		r.logf("     fell over to b")
	default:
	}
}

// finish waits for the proxy to end the session, then records what each
// side saw.
func (r *run) finish() observation {
	l := r.srv.Listeners()[0]
	r.waitFor("the session to end", sessionBound, true, func() bool { return l.Stats.Active.Load() == 0 })
	r.waitFor("the ends to be seen", bound, false, func() bool {
		if r.client.end == "" {
			return false
		}
		for _, p := range r.nodes {
			if p.end == "" {
				return false
			}
		}
		return true
	})
	r.mu.Lock()
	o := observation{bAccepts: r.bCount, fellOver: len(r.nodes) > 1,
		ends: map[string]string{}, got: map[string][]byte{}, lateRST: map[string]bool{}}
	peers := append([]*peer{r.client}, r.nodes...)
	for _, p := range peers {
		end := p.end
		if end == "" {
			end = endOpen
		}
		o.ends[p.name] = end
		o.got[p.name] = p.got
		late := p.lateRST
		if p.end == endEOF && !p.closed {
			if rc, err := p.conn.SyscallConn(); err == nil {
				rc.Control(func(fd uintptr) {
					if e, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
						late = true
					}
				})
			}
		}
		o.lateRST[p.name] = late
	}
	// Bytes are forwarded unchanged: each side received a prefix of what
	// its peer wrote.
	if want := r.nStream.bytes(0, r.nWritten); !isPrefix(r.client.got, want) {
		o.violations = append(o.violations, fmt.Sprintf("the client received %d B that are not a prefix of the %d B the nodes wrote", len(r.client.got), r.nWritten))
	}
	var nodeGot []byte
	for _, p := range r.nodes {
		nodeGot = append(nodeGot, p.got...)
	}
	if want := r.cStream.bytes(0, r.cWritten); !isPrefix(nodeGot, want) {
		o.violations = append(o.violations, fmt.Sprintf("the nodes received %d B that are not a prefix of the %d B the client wrote", len(nodeGot), r.cWritten))
	}
	fmt.Fprintf(&r.trace, "  ends %v, received client %d B, nodes %d B, late resets %v\n", o.ends, len(r.client.got), len(nodeGot), o.lateRST)
	o.trace = r.trace.String()
	r.mu.Unlock()
	return o
}

func isPrefix(got, of []byte) bool {
	return len(got) <= len(of) && string(got) == string(of[:len(got)])
}

func (r *run) closeAll() {
	peers := []*peer{r.client}
	r.mu.Lock()
	peers = append(peers, r.nodes...)
	r.mu.Unlock()
	for _, p := range peers {
		p.conn.Close()
		<-p.readerEnd
	}
}
