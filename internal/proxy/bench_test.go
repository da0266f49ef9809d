package proxy_test

import (
	"io"
	"net"
	"testing"
)

// BenchmarkShortConnection: one connection per request through the
// balancer (a 100-byte request, a 1 KB answer), client and node in this
// process. For profiles of the connection path; the cross-process figures
// against HAProxy come from bench/run.sh.
func BenchmarkShortConnection(b *testing.B) {
	answer := make([]byte, 1024)
	node := startServer(b, "n1", func(_ *server, c *net.TCPConn) {
		buf := make([]byte, 100)
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(answer)
		}
	})
	_, addr := balancer(b, oneNode(node.addr()))
	req := make([]byte, 100)
	buf := make([]byte, 1024)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, len(buf))
		for pb.Next() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			c.Write(req)
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Error(err)
			}
			c.Close()
		}
	})
}
