//go:build linux

package proxy

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// localDivert reports whether this network namespace delivers packets for
// foreign addresses (IPv6 ones with v6) to local sockets, as
// transparent mode needs for the nodes' replies to the client's IP: some
// policy rule leads to a table that holds a local default route ("ip rule
// add ... lookup 100" with "ip route add local 0.0.0.0/0 dev lo table
// 100"). Both set-ups of docs/transparent.md (by interface and by socket
// mark) have that shape; what selects the packets (interface, mark) is not
// checked.
func localDivert(v6 bool) (bool, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	tables, err := localDefaultTables(family)
	if err != nil || len(tables) == 0 {
		return false, err
	}
	msgs, err := netlinkDump(unix.RTM_GETRULE, family)
	if err != nil {
		return false, err
	}
	for _, m := range msgs {
		// struct fib_rule_hdr: family, dst_len, src_len, tos, table,
		// res1, res2, action (u8 each), flags (u32); then attributes.
		if m.Header.Type != unix.RTM_NEWRULE || len(m.Data) < 12 || m.Data[7] != unix.FR_ACT_TO_TBL {
			continue
		}
		table := uint32(m.Data[4])
		if v, ok := attrU32(m.Data[12:], unix.FRA_TABLE); ok {
			table = v
		}
		if tables[table] {
			return true, nil
		}
	}
	return false, nil
}

// localDefaultTables are the routing tables of family holding a local
// route for every address (type local, prefix length 0).
func localDefaultTables(family int) (map[uint32]bool, error) {
	msgs, err := netlinkDump(unix.RTM_GETROUTE, family)
	if err != nil {
		return nil, err
	}
	tables := map[uint32]bool{}
	for _, m := range msgs {
		// struct rtmsg: family, dst_len, src_len, tos, table, protocol,
		// scope, type (u8 each), flags (u32); then attributes.
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < 12 {
			continue
		}
		if int(m.Data[0]) != family || m.Data[1] != 0 || m.Data[7] != unix.RTN_LOCAL {
			continue
		}
		table := uint32(m.Data[4])
		if v, ok := attrU32(m.Data[12:], unix.RTA_TABLE); ok {
			table = v
		}
		tables[table] = true
	}
	return tables, nil
}

// netlinkDump returns the messages of a routing netlink dump (req: an
// RTM_GET* request) for family.
func netlinkDump(req, family int) ([]syscall.NetlinkMessage, error) {
	b, err := syscall.NetlinkRIB(req, family)
	if err != nil {
		return nil, os.NewSyscallError("netlink dump", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, fmt.Errorf("netlink dump: %w", err)
	}
	return msgs, nil
}

// attrU32 finds a 32-bit attribute of type typ in netlink attributes b.
func attrU32(b []byte, typ uint16) (uint32, bool) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(b) {
			return 0, false
		}
		if t == typ && l >= 8 {
			return binary.NativeEndian.Uint32(b[4:]), true
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return 0, false
}
