// Package node is the benchmark's backend: it answers the wire protocol of
// bench/internal/wire on any number of listeners.
package node

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/protobalance/protobalance/bench/internal/wire"
)

// Node answers the wire protocol on its listeners. Its fields are read-only
// once Serve has been called.
type Node struct {
	// Name starts every request/response answer.
	Name string
	// Mode is "auto" (the client's first line decides) or forces one
	// behaviour for every connection: "rr", "echo" or "hold".
	Mode string
	// Log receives unusual events; nil = the standard logger.
	Log *log.Logger
}

// Modes lists the valid values of Node.Mode.
var Modes = []string{"auto", "rr", "echo", "hold"}

func (n *Node) logf(format string, args ...any) {
	if n.Log != nil {
		n.Log.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Serve accepts connections on ln and serves each on its own goroutine. It
// returns nil once ln is closed and never returns otherwise: accept errors
// such as EMFILE are logged and retried after 10 ms.
func (n *Node) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and friends: keep serving what we have.
			n.logf("benchnode %s: accept: %v", n.Name, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go n.handle(c.(*net.TCPConn))
	}
}

// handle serves one connection until the client's EOF or an error.
func (n *Node) handle(c *net.TCPConn) {
	defer c.Close()
	// Small buffer: idle connections are held by the thousand.
	r := bufio.NewReaderSize(c, 512)
	switch n.Mode {
	case "rr":
		n.requests(c, r, nil)
		return
	case "echo":
		echo(c, r)
		return
	case "hold":
		io.Copy(io.Discard, r)
		return
	}
	line, err := readLine(r)
	if err != nil || line == "" {
		return
	}
	switch line[0] {
	case 'R':
		n.requests(c, r, []byte(line))
	case 'E':
		echo(c, r)
	case 'B':
		if err := bulk(c, r, line); err != nil {
			n.logf("benchnode %s: bulk: %v", n.Name, err)
		}
	default:
		n.logf("benchnode %s: unknown first line %.40q", n.Name, line)
	}
}

// readLine returns one line without its '\n', refusing lines over wire.MaxLine.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if err == nil {
			return strings.TrimSuffix(string(b), "\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
		if len(b) > wire.MaxLine {
			return "", errors.New("line too long")
		}
	}
}

// requests answers request lines, the first of which may already be read.
func (n *Node) requests(c *net.TCPConn, r *bufio.Reader, first []byte) {
	var cache []byte // the last response, reused while the size repeats
	line := string(first)
	for {
		if line == "" {
			var err error
			if line, err = readLine(r); err != nil {
				return
			}
		}
		size := wire.DefaultResponse
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "R" {
			if v, err := strconv.Atoi(f[1]); err == nil && v > 0 && v <= 1<<20 {
				size = v
			}
		}
		if len(cache) != size {
			cache = wire.Response(n.Name, size)
		}
		if _, err := c.Write(cache); err != nil {
			return
		}
		line = ""
	}
}

func echo(c *net.TCPConn, r *bufio.Reader) {
	buf := make([]byte, 512)
	for {
		m, err := r.Read(buf)
		if m > 0 {
			if _, werr := c.Write(buf[:m]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// bulk serves "B <up> <down> <sum>": see package wire.
func bulk(c *net.TCPConn, r *bufio.Reader, line string) error {
	f := strings.Fields(line)
	if len(f) != 4 {
		return fmt.Errorf("bad header %q", line)
	}
	down, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || down < 0 {
		return fmt.Errorf("bad down count in %q", line)
	}
	sent, err := wire.NewSum(f[3])
	if err != nil {
		return err
	}
	recv, _ := wire.NewSum(f[3])
	var (
		wg    sync.WaitGroup
		count int64
		rerr  error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			m, err := r.Read(buf)
			recv.Write(buf[:m])
			count += int64(m)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					rerr = err
				}
				return
			}
		}
	}()
	if _, err := wire.WritePayload(c, sent, down, down, 0); err != nil {
		wg.Wait()
		return err
	}
	if _, err := fmt.Fprintf(c, "%x\n", sent.Sum(nil)); err != nil {
		wg.Wait()
		return err
	}
	wg.Wait()
	if rerr != nil {
		return rerr
	}
	_, err = fmt.Fprintf(c, "%d %x\n", count, recv.Sum(nil))
	return err
}
