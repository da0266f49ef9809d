//go:build !linux

package proxy

import (
	"net"
	"time"
)

func setKeepAlive(c *net.TCPConn) {
	c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Minute})
}
