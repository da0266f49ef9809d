//go:build linux

package evloop

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop issues its socket calls with RawSyscall: every descriptor it
// touches is non-blocking and no close lingers, so none of these calls can
// block, and skipping the runtime's entersyscall/exitsyscall pair (a P
// hand-off candidate for sysmon, and a stall point for the garbage
// collector's stop-the-world) was worth about a fifth of the CPU per
// connection in the prototype. Never add a call here that can block.

func rawRead(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), e
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), e
}

func rawClose(fd int) {
	syscall.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawShutdown(fd, how int) syscall.Errno {
	_, _, e := syscall.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return e
}

func rawSplice(in, out, n int) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
		unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	return int(r), e
}

func rawSetsockoptInt(fd, level, opt, value int) syscall.Errno {
	v := int32(value)
	_, _, e := syscall.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&v)), 4, 0)
	return e
}

func rawSoError(fd int) syscall.Errno {
	var v int32
	l := uint32(4)
	_, _, e := syscall.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ERROR,
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return syscall.Errno(v)
}

// setLinger0 makes close send a reset instead of a FIN (abort).
func setLinger0(fd int) {
	l := unix.Linger{Onoff: 1, Linger: 0}
	syscall.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER,
		uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
}

// rawAccept accepts one connection, non-blocking and close-on-exec, and
// returns its descriptor and the peer's address.
func rawAccept(lfd int) (int, netip.AddrPort, syscall.Errno) {
	var sa unix.RawSockaddrAny
	l := uint32(unsafe.Sizeof(sa))
	fd, _, e := syscall.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&sa)),
		uintptr(unsafe.Pointer(&l)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(fd), decodeSockaddr(&sa), 0
}

// rawSockname is the local address of fd.
func rawSockname(fd int) netip.AddrPort {
	var sa unix.RawSockaddrAny
	l := uint32(unsafe.Sizeof(sa))
	_, _, e := syscall.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return netip.AddrPort{}
	}
	return decodeSockaddr(&sa)
}

func decodeSockaddr(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), ntohs(p.Port))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr), ntohs(p.Port))
	}
	return netip.AddrPort{}
}

func ntohs(p uint16) uint16 { return p>>8 | p<<8 }

// rawSocket opens a non-blocking, close-on-exec TCP socket for addr's family.
func rawSocket(addr netip.AddrPort) (int, syscall.Errno) {
	family := unix.AF_INET6
	if addr.Addr().Is4() {
		family = unix.AF_INET
	}
	fd, _, e := syscall.RawSyscall(unix.SYS_SOCKET, uintptr(family),
		unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	return int(fd), e
}

// rawConnect starts a non-blocking connect; EINPROGRESS is the usual answer.
func rawConnect(fd int, addr netip.AddrPort) syscall.Errno {
	var e syscall.Errno
	if a := addr.Addr(); a.Is4() {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Port: ntohs(addr.Port()), Addr: a.As4()}
		_, _, e = syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	} else {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: ntohs(addr.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			sa.Scope_id = zoneIndex(z)
		}
		_, _, e = syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}
	return e
}

func zoneIndex(z string) uint32 {
	ifi, err := interfaceIndex(z)
	if err != nil {
		return 0
	}
	return uint32(ifi)
}

// epoll event bits the loop registers every socket with, once: readable,
// writable and peer-closed, edge-triggered.
const sockEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

func epollAdd(epfd, fd int, events uint32, seq uint32) syscall.Errno {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(seq)}
	_, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_ADD, uintptr(fd),
		uintptr(unsafe.Pointer(&ev)), 0, 0)
	return e
}

func epollDel(epfd, fd int) {
	var ev unix.EpollEvent
	syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_DEL, uintptr(fd),
		uintptr(unsafe.Pointer(&ev)), 0, 0)
}

// epollPoll collects ready events without waiting (timeout 0): the loop
// waits in Go's netpoller, not here.
func epollPoll(epfd int, evs []unix.EpollEvent) int {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])),
		uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

// Accept accepts one connection from the non-blocking listening socket
// lfd: the new socket (non-blocking, close-on-exec) and the peer address.
func Accept(lfd int) (int, netip.AddrPort, syscall.Errno) { return rawAccept(lfd) }

// Reset closes fd with a reset (a refused client: no FIN handshake, no
// TIME-WAIT on our side).
func Reset(fd int) {
	setLinger0(fd)
	rawClose(fd)
}

// SetKeepAlive turns TCP keepalive on with the given idle time in seconds.
func SetKeepAlive(fd, idle int) {
	rawSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, idle)
}

// LocalAddr is fd's local address.
func LocalAddr(fd int) netip.AddrPort { return rawSockname(fd) }
