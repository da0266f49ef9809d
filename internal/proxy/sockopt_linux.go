package proxy

import (
	"net"
	"syscall"

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

// stopListening takes the socket out of the listening state for every
// descriptor sharing it (shutdown(2) on a listening socket): queued and
// new clients are refused, and with SO_REUSEADDR the address can be bound
// again while a copy of the descriptor stays open.
func stopListening(ln *net.TCPListener) {
	if rc, err := ln.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RD) })
	}
}

// Listening reports whether ln's socket is still listening: false for one
// stopListening shut down while a copy of its descriptor was kept (an
// Options.Listen hook may hand such a copy back).
func Listening(ln net.Listener) bool {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	on := 1
	rc.Control(func(fd uintptr) { on, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN) })
	return err != nil || on != 0
}
