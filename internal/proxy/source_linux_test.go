package proxy

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func getsockoptNoPort(fd int) (int, error) {
	return unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT)
}

// prepareDialSocket on a real socket: the connection leaves from the
// chosen address, with IP_BIND_ADDRESS_NO_PORT set and a port the kernel
// chose at connect time.
func TestPrepareDialSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.4.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, transparent := range []bool{false, true} {
		src := netip.MustParseAddr("127.0.4.21")
		var noPort int
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			rc.Control(func(fd uintptr) {
				if err = prepareDialSocket(int(fd), src, transparent); err == nil {
					noPort, err = getsockoptNoPort(int(fd))
				}
			})
			return err
		}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if transparent && errors.Is(err, syscall.EPERM) {
			t.Logf("SKIPPED transparent part: %v (no CAP_NET_ADMIN)", err)
			continue
		}
		if err != nil {
			t.Fatalf("transparent=%v: %v", transparent, err)
		}
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.Close()
		if local.Addr() != src || local.Port() == 0 || noPort != 1 {
			t.Errorf("transparent=%v: left from %v (IP_BIND_ADDRESS_NO_PORT=%d); want %v:N with the option set", transparent, local, noPort, src)
		}
	}
	// A family mismatch is an error, not a silent fallback.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := prepareDialSocket(fd, netip.MustParseAddr("::1"), false); err == nil {
		t.Error("an IPv4 socket was bound to ::1")
	}
}
