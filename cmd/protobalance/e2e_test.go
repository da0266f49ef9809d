package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The end-to-end tests run the real binary. This package binds 127.0.5.x.

// TestMain doubles as a helper process: with PB_E2E_ROLE=echo the test
// binary is a node that echoes every connection (a third process with its
// own descriptor limit, for the 9,900-connection test).
func TestMain(m *testing.M) {
	if os.Getenv("PB_E2E_ROLE") == "echo" {
		runEchoNode()
		return
	}
	code := m.Run()
	if code == 0 {
		// In-process tests (ctl, report, admin) must leave no goroutine.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func runEchoNode() {
	ln, err := net.Listen("tcp", "127.0.5.2:0")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }() // parent gone: stop
	for {
		c, err := ln.Accept()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// A plain buffered copy: io.Copy between TCP sockets would splice
		// and hold a pipe (two descriptors) per connection.
		go func() {
			io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, make([]byte, 512))
			c.Close()
		}()
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds protobalance once for the package's tests.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pb-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "protobalance")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a started child process with its stdout lines on a channel.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	errb  *bytes.Buffer
}

func start(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 100), errb: &bytes.Buffer{}}
	cmd.Stderr = &syncWriter{w: p.errb}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			p.lines <- s.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), p.stderr())
		}
	})
	return p
}

func (p *proc) stderr() string {
	w := p.cmd.Stderr.(*syncWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.errb.String()
}

// waitLine returns the first stdout line containing substr.
func (p *proc) waitLine(t *testing.T, substr string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("process ended before printing %q", substr)
			}
			if strings.Contains(l, substr) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line with %q within 30s", substr)
		}
	}
}

// waitStderr polls the process's log until it contains substr.
// waitStderr waits until the log contains one of substrs.
func (p *proc) waitStderr(t *testing.T, substrs ...string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, s := range substrs {
			if strings.Contains(p.stderr(), s) {
				return
			}
		}
	}
	t.Fatalf("log never contained any of %q", substrs)
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func TestDemoAnswers(t *testing.T) {
	p := start(t, exec.Command(binary(t), "demo", "--listen", "127.0.5.1:0"))
	line := p.waitLine(t, "curl -s http://")
	url := strings.Fields(line[strings.Index(line, "http://"):])[0]
	url = strings.TrimSuffix(url, ";")
	seen := map[string]int{}
	for range 8 {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[strings.TrimSpace(string(body))]++
	}
	want := map[string]int{"hello from node-1": 4, "hello from node-2": 2, "hello from node-3": 2}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("answers %v, want %v", seen, want)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("demo did not exit cleanly on SIGTERM: %v", err)
	}
}
