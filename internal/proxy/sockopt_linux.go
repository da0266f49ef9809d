package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// keepIdle is how long a leg may be silent before the kernel starts probing
// it; with the kernel's default probe interval (75s) and count (9) a dead
// peer is reaped within about 12 minutes, well inside idle_timeout's 1h.
const keepIdle = 60 // seconds

// setKeepAlive turns TCP keepalive on with two setsockopts, where Go's
// KeepAliveConfig spends four per socket.
func setKeepAlive(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepIdle)
	})
}
