package relay_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/relay"
)

// BenchmarkBulk streams through one relayed connection (the splice path
// after the first 64 KiB), b.N chunks of 256 KiB, next to a naive io.Copy
// relay (splice too, a pipe pinned per direction) for scale on a noisy box.
func BenchmarkBulk(b *testing.B) {
	for _, r := range []struct {
		name string
		r    relay.Relay
	}{{"goroutine", relay.NewGoroutine()}, {"io.Copy", ioCopyRelay{}}} {
		b.Run(r.name, func(b *testing.B) {
			const chunk = 256 << 10
			p := newRig(b).Pair(b, r.r, relay.Options{IdleTimeout: time.Minute})
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				buf := make([]byte, chunk)
				for {
					if _, err := p.Node.Read(buf); err != nil {
						return
					}
				}
			}()
			b.SetBytes(chunk)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Client.Write(block[:chunk]); err != nil {
					b.Fatal(err)
				}
			}
			_ = p.Client.CloseWrite()
			<-drained
		})
	}
}

// ioCopyRelay is the naive relay the design measured against: io.Copy per
// direction, half-close, no timeouts.
type ioCopyRelay struct{}

func (ioCopyRelay) Relay(client, node *net.TCPConn, _ relay.Options) relay.Result {
	var res relay.Result
	done := make(chan struct{})
	go func() {
		defer close(done)
		res.Up, _ = io.Copy(node, client)
		_ = node.CloseWrite()
	}()
	res.Down, _ = io.Copy(client, node)
	_ = client.CloseWrite()
	<-done
	_ = client.Close()
	_ = node.Close()
	return res
}

// BenchmarkRequestResponse is one small request and response per op on a
// kept-alive relayed connection (the buffered path).
func BenchmarkRequestResponse(b *testing.B) {
	p := newRig(b).Pair(b, relay.NewGoroutine(), relay.Options{IdleTimeout: time.Minute})
	const reqSize, respSize = 64, 512
	go func() { // the node: answer every request
		req := make([]byte, reqSize)
		for {
			if _, err := io.ReadFull(p.Node, req); err != nil {
				return
			}
			if _, err := p.Node.Write(block[:respSize]); err != nil {
				return
			}
		}
	}()
	resp := make([]byte, respSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Client.Write(block[:reqSize]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(p.Client, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShortConnection is one whole short connection per op: connect
// both legs, relay a request and a response, half-close, end. Allocations
// include the test's own dialling and accepting.
func BenchmarkShortConnection(b *testing.B) {
	rig := newRig(b)
	r := relay.NewGoroutine()
	opt := relay.Options{IdleTimeout: time.Minute, FinTimeout: time.Minute}
	req, resp := make([]byte, 64), make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		p := rig.Pair(b, r, opt)
		if _, err := p.Client.Write(block[:len(req)]); err != nil {
			b.Fatal(err)
		}
		_ = p.Client.CloseWrite()
		if _, err := io.ReadFull(p.Node, req); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Node.Write(block[:len(resp)]); err != nil {
			b.Fatal(err)
		}
		_ = p.Node.Close()
		if _, err := io.ReadFull(p.Client, resp); err != nil {
			b.Fatal(err)
		}
		if res := p.Close(b); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}
