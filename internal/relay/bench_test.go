package relay_test

import (
	"io"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/relay"
)

// BenchmarkBulk streams through one relayed connection (the splice path
// after the first 64 KiB); b.N chunks of 256 KiB.
func BenchmarkBulk(b *testing.B) {
	const chunk = 256 << 10
	p := newRig(b).Pair(b, relay.NewGoroutine(), relay.Options{IdleTimeout: time.Minute})
	drained := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, p.Node)
		drained <- n
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
