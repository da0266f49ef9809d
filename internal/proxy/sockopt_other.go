//go:build !linux

package proxy

import (
	"net"
	"time"
)

func setKeepAlive(c *net.TCPConn) {
	c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Minute})
}

// stopListening is Linux-only; elsewhere a copy of the descriptor held by
// an Options.Listen hook keeps the socket listening.
func stopListening(*net.TCPListener) {}

// Listening is Linux-only; elsewhere it reports true.
func Listening(net.Listener) bool { return true }
