//go:build !linux

package proxy

import "net/netip"

// The event-loop data path is Linux only; elsewhere these stand-ins keep
// the goroutine data path compiling.

const loopsAvailable = false

type loops struct{}

type loopSession struct{ l *Listener }

type rawSock struct{ addr netip.AddrPort }

type acceptor struct{}

func newLoops(*Server, int) (*loops, error) { panic("unreachable") }

func (*loops) stop()                              {}
func (*loops) resume()                            {}
func (*loops) closeConns(func(*loopSession) bool) {}
func (l *Listener) detachSockets() error          { return nil }
func (l *Listener) serveLoops(*loops)             {}
func (l *Listener) shutdownRaw()                  {}
func (l *Listener) closeRaw(*loops)               {}
