package proxy

import (
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

const sourcesSupported = true

// prepareDialSocket readies fd, a fresh TCP socket not yet connected, to
// leave from src: IP_BIND_ADDRESS_NO_PORT (the port is chosen at connect
// time, per 4-tuple, not reserved by bind), IP_TRANSPARENT or
// IPV6_TRANSPARENT when transparent (src may then be a foreign address,
// such as the client's), then bind(src:0). src must be of the socket's
// family. It is a plain function of the descriptor so that a data path on
// raw non-blocking sockets can call it as net.Dialer.Control does.
func prepareDialSocket(fd int, src netip.Addr, transparent bool) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
		return os.NewSyscallError("setsockopt IP_BIND_ADDRESS_NO_PORT", err)
	}
	src = src.Unmap()
	var sa unix.Sockaddr
	if src.Is4() {
		if transparent {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TRANSPARENT, 1); err != nil {
				return os.NewSyscallError("setsockopt IP_TRANSPARENT", err)
			}
		}
		sa = &unix.SockaddrInet4{Addr: src.As4()}
	} else {
		if transparent {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, 1); err != nil {
				return os.NewSyscallError("setsockopt IPV6_TRANSPARENT", err)
			}
		}
		sa = &unix.SockaddrInet6{Addr: src.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind "+src.String(), err)
	}
	return nil
}

// probeTransparent reports whether this process may set IP_TRANSPARENT
// (CAP_NET_ADMIN or CAP_NET_RAW over its network namespace), on a socket
// made for the purpose: IPv4, or IPv6 on a host without IPv4.
func probeTransparent() error {
	level, opt, name := unix.IPPROTO_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		level, opt, name = unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return os.NewSyscallError("socket", err)
		}
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		return os.NewSyscallError("setsockopt "+name, err)
	}
	return nil
}
