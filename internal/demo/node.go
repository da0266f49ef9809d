// Package demo runs small named servers that stand in for a cluster's
// nodes: each answers with its own name, so a balancer in front of them
// shows where every connection went. They back `protobalance demo` and the
// end-to-end tests.
package demo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Node is a named demo server. It speaks just enough HTTP/1.1 to answer
// curl ("hello from NAME"), and otherwise a line protocol that answers each
// line with "NAME: line".
type Node struct {
	Name string
	ln   net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Listen starts a node named name on addr (use port 0 for any port).
func Listen(name, addr string) (*Node, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, ln: ln, conns: make(map[net.Conn]struct{})}
	n.wg.Add(1)
	go n.serve()
	return n, nil
}

// Addr is the node's listening address.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Close stops the node and closes its open connections.
func (n *Node) Close() error {
	err := n.ln.Close()
	n.mu.Lock()
	for c := range n.conns {
		c.Close()
	}
	n.mu.Unlock()
	n.wg.Wait()
	return err
}

func (n *Node) serve() {
	defer n.wg.Done()
	for {
		c, err := n.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and friends: don't spin
			continue
		}
		n.mu.Lock()
		n.conns[c] = struct{}{}
		n.mu.Unlock()
		n.wg.Add(1)
		go n.handle(c)
	}
}

func (n *Node) handle(c net.Conn) {
	defer n.wg.Done()
	defer func() {
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if line == "" && err != nil {
			return
		}
		if isHTTPRequestLine(line) {
			n.answerHTTP(c, r)
			return
		}
		if _, err := fmt.Fprintf(c, "%s: %s", n.Name, line); err != nil {
			return
		}
		if err != nil {
			return
		}
	}
}

func isHTTPRequestLine(line string) bool {
	return strings.HasSuffix(strings.TrimRight(line, "\r\n"), " HTTP/1.1") ||
		strings.HasSuffix(strings.TrimRight(line, "\r\n"), " HTTP/1.0")
}

// answerHTTP skips the request headers and answers with the node's name,
// closing the connection afterwards so every curl is a new connection.
func (n *Node) answerHTTP(w io.Writer, r *bufio.Reader) {
	for {
		h, err := r.ReadString('\n')
		if err != nil || strings.TrimRight(h, "\r\n") == "" {
			break
		}
	}
	body := "hello from " + n.Name + "\n"
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nX-Node: %s\r\nConnection: close\r\n\r\n%s", len(body), n.Name, body)
	w.Write(b.Bytes())
}
