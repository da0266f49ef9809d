// Package proxyproto encodes and parses PROXY protocol headers, versions 1
// (text) and 2 (binary), as specified by HAProxy's proxy-protocol.txt, for
// TCP connections only.
//
// Decisions where the specification leaves a choice:
//   - A v2 LOCAL command (whatever its family) and a v2 PROXY command with
//     family AF_UNSPEC parse as Header{Local: true}, as does v1 "UNKNOWN":
//     the receiver keeps the real endpoints of the connection.
//   - A v2 PROXY command over DGRAM (UDP) or over AF_UNIX, and any unknown
//     family or transport, is an error: a TCP balancer has no client IP to
//     use for it, and falling back to the upstream's address would make all
//     such clients share one identity in the abuse guard and affinity.
//   - v2 TLVs are not interpreted, but their framing (type, length, value)
//     must fill the rest of the header exactly; they are counted in n.
//   - Parsing unmaps IPv4-mapped IPv6 addresses, and encoding writes an
//     address pair that is IPv4 after unmapping as TCP4 / AF_INET, so a
//     header re-encoded from a parsed one parses to the same Header.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// Header is the content of one PROXY header.
type Header struct {
	// Src is the client's address and Dst the address it connected to.
	// Both are zero when Local is set.
	Src, Dst netip.AddrPort
	// Local marks a connection made by the sender itself (v2 LOCAL, a v2
	// AF_UNSPEC PROXY, v1 UNKNOWN): the receiver keeps the connection's own
	// endpoints.
	Local bool
}

const (
	// v1MaxLen is the longest v1 line, CRLF included (from the spec).
	v1MaxLen = 107
	// v2HeadLen is the fixed part of a v2 header.
	v2HeadLen = 16

	// MaxLen is the most bytes a header that Parse accepts can take: a v1
	// line is at most 107 bytes, and a v2 header (16 fixed bytes, then 12 or
	// 36 bytes of addresses and any TLVs) is accepted up to 2048 bytes in
	// all. Longer v2 headers are rejected, which bounds what a reader must
	// buffer before it knows whether a header is good.
	MaxLen = 2048
)

// v2Sig opens every v2 header.
var v2Sig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// v2 command, family and transport values.
const (
	v2Version = 0x20
	cmdLocal  = 0x0
	cmdProxy  = 0x1
	famUnspec = 0x00
	famTCP4   = 0x11
	famTCP6   = 0x21
	v2Addr4   = 12 // two IPv4 addresses and two ports
	v2Addr6   = 36 // two IPv6 addresses and two ports
)

// ErrIncomplete is returned by Parse when its input is a valid beginning of
// a header but not a whole one: read more and parse again.
var ErrIncomplete = errors.New("proxyproto: incomplete header")

// ErrInvalid matches (errors.Is) every error Parse returns for a malformed
// or unsupported header.
var ErrInvalid = errors.New("proxyproto: invalid header")

// invalid is a malformed-header error; it matches ErrInvalid.
type invalid struct{ msg string }

func (e *invalid) Error() string        { return "proxyproto: " + e.msg }
func (e *invalid) Is(target error) bool { return target == ErrInvalid }

var (
	errSignature  = &invalid{"not a PROXY protocol header"}
	errV1Long     = &invalid{"v1: no CRLF within 107 bytes"}
	errV1CRLF     = &invalid{"v1: line not ended by CRLF"}
	errV1Proto    = &invalid{"v1: protocol is not TCP4, TCP6 or UNKNOWN"}
	errV1Fields   = &invalid{"v1: want source, destination, source port, destination port separated by single spaces"}
	errV1Char     = &invalid{"v1: unexpected character"}
	errV1Addr4    = &invalid{"v1: address is not an IPv4 address"}
	errV1Addr6    = &invalid{"v1: address is not an IPv6 address"}
	errV1Port     = &invalid{"v1: port is not a decimal number in 0..65535 without leading zeros"}
	errV2Version  = &invalid{"v2: version is not 2"}
	errV2Command  = &invalid{"v2: command is neither LOCAL nor PROXY"}
	errV2DGRAM    = &invalid{"v2: DGRAM (UDP) transport not supported by a TCP balancer"}
	errV2Unix     = &invalid{"v2: AF_UNIX family not supported by a TCP balancer"}
	errV2Family   = &invalid{"v2: unknown address family or transport"}
	errV2Long     = &invalid{"v2: header longer than MaxLen"}
	errV2AddrSize = &invalid{"v2: length too short for the address family"}
	errV2TLV      = &invalid{"v2: TLVs do not fill the header exactly"}
)

// Parse parses one v1 or v2 header at the start of b and returns it with
// its length n (TLVs included). It returns ErrIncomplete when b is a valid
// beginning of a header (so len(b) < MaxLen), and an error matching
// ErrInvalid, naming the fault, when b cannot begin a header we accept.
func Parse(b []byte) (h Header, n int, err error) {
	if len(b) == 0 {
		return Header{}, 0, ErrIncomplete
	}
	switch b[0] {
	case 'P':
		return parseV1(b)
	case v2Sig[0]:
		return parseV2(b)
	}
	return Header{}, 0, errSignature
}

// ---- version 1 ----

const v1Sig = "PROXY "

func parseV1(b []byte) (Header, int, error) {
	k := min(len(b), len(v1Sig))
	if string(b[:k]) != v1Sig[:k] {
		return Header{}, 0, errSignature
	}
	end := bytes.IndexByte(b[:min(len(b), v1MaxLen)], '\n')
	if end < 0 {
		if len(b) >= v1MaxLen {
			return Header{}, 0, errV1Long
		}
		if err := v1Prefix(b[k:]); err != nil {
			return Header{}, 0, err
		}
		return Header{}, 0, ErrIncomplete
	}
	// b[:6] is "PROXY ", so end >= 6 and a CR before it is past the space.
	if b[end-1] != '\r' {
		return Header{}, 0, errV1CRLF
	}
	line := b[len(v1Sig) : end-1]
	proto, rest, _ := bytes.Cut(line, []byte{' '})
	var want4 bool
	switch string(proto) {
	case "UNKNOWN":
		// Whatever follows UNKNOWN up to the CRLF is ignored (spec).
		return Header{Local: true}, end + 1, nil
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return Header{}, 0, errV1Proto
	}
	var f [4][]byte
	for i := range f {
		var ok bool
		f[i], rest, ok = bytes.Cut(rest, []byte{' '})
		if len(f[i]) == 0 || ok != (i < 3) {
			return Header{}, 0, errV1Fields
		}
	}
	src, err := v1Addr(f[0], want4)
	if err != nil {
		return Header{}, 0, err
	}
	dst, err := v1Addr(f[1], want4)
	if err != nil {
		return Header{}, 0, err
	}
	sp, ok1 := v1Port(f[2])
	dp, ok2 := v1Port(f[3])
	if !ok1 || !ok2 {
		return Header{}, 0, errV1Port
	}
	return Header{Src: netip.AddrPortFrom(src, sp), Dst: netip.AddrPortFrom(dst, dp)}, end + 1, nil
}

// v1Prefix checks the part of an unfinished v1 line after "PROXY ", so that
// garbage is refused before a reader waits for more of it.
func v1Prefix(rest []byte) error {
	proto, tail, spaced := bytes.Cut(rest, []byte{' '})
	if !spaced {
		// The protocol so far, perhaps followed by the CR of "UNKNOWN\r".
		if p, cr := bytes.CutSuffix(proto, []byte{'\r'}); cr {
			if string(p) != "UNKNOWN" {
				return errV1Proto
			}
			return nil
		}
		for _, name := range [...]string{"TCP4", "TCP6", "UNKNOWN"} {
			if len(proto) <= len(name) && string(proto) == name[:len(proto)] {
				return nil
			}
		}
		return errV1Proto
	}
	hex := false
	switch string(proto) {
	case "UNKNOWN":
		return nil
	case "TCP6":
		hex = true
	case "TCP4":
	default:
		return errV1Proto
	}
	spaces := 0
	for i, c := range tail {
		switch {
		case c == ' ':
			if i == 0 || tail[i-1] == ' ' {
				return errV1Fields
			}
			if spaces++; spaces > 3 {
				return errV1Fields
			}
		case c == '\r':
			if i != len(tail)-1 || spaces != 3 || tail[i-1] == ' ' {
				return errV1Fields
			}
		case c >= '0' && c <= '9', c == '.':
		case hex && (c == ':' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
		default:
			return errV1Char
		}
	}
	return nil
}

func v1Addr(s []byte, want4 bool) (netip.Addr, error) {
	bad := errV1Addr6
	if want4 {
		bad = errV1Addr4
	}
	a, err := netip.ParseAddr(string(s))
	if err != nil || a.Zone() != "" || a.Is4() != want4 {
		return netip.Addr{}, bad
	}
	return a.Unmap(), nil
}

func v1Port(s []byte) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

// ---- version 2 ----

func parseV2(b []byte) (Header, int, error) {
	k := min(len(b), len(v2Sig))
	if !bytes.Equal(b[:k], v2Sig[:k]) {
		return Header{}, 0, errSignature
	}
	if len(b) <= 12 {
		return Header{}, 0, ErrIncomplete
	}
	if b[12]&0xF0 != v2Version {
		return Header{}, 0, errV2Version
	}
	cmd := b[12] & 0x0F
	if cmd != cmdLocal && cmd != cmdProxy {
		return Header{}, 0, errV2Command
	}
	if len(b) <= 13 {
		return Header{}, 0, ErrIncomplete
	}
	addrLen := 0
	if cmd == cmdProxy {
		var err error
		if addrLen, err = v2Family(b[13]); err != nil {
			return Header{}, 0, err
		}
	}
	if len(b) < v2HeadLen {
		return Header{}, 0, ErrIncomplete
	}
	size := int(binary.BigEndian.Uint16(b[14:16]))
	total := v2HeadLen + size
	if total > MaxLen {
		return Header{}, 0, errV2Long
	}
	if size < addrLen {
		return Header{}, 0, errV2AddrSize
	}
	if len(b) < total {
		return Header{}, 0, ErrIncomplete
	}
	if cmd == cmdLocal || addrLen == 0 {
		// LOCAL: the block, family included, is to be discarded (spec).
		return Header{Local: true}, total, nil
	}
	if !tlvsFit(b[v2HeadLen+addrLen : total]) {
		return Header{}, 0, errV2TLV
	}
	a := b[v2HeadLen:]
	var src, dst netip.Addr
	var ports []byte
	if addrLen == v2Addr4 {
		src = netip.AddrFrom4([4]byte(a[0:4]))
		dst = netip.AddrFrom4([4]byte(a[4:8]))
		ports = a[8:12]
	} else {
		src = netip.AddrFrom16([16]byte(a[0:16])).Unmap()
		dst = netip.AddrFrom16([16]byte(a[16:32])).Unmap()
		ports = a[32:36]
	}
	return Header{
		Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(ports[0:2])),
		Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ports[2:4])),
	}, total, nil
}

// v2Family returns the address block size of a PROXY command's family and
// transport byte, 0 for AF_UNSPEC.
func v2Family(f byte) (int, error) {
	switch f {
	case famUnspec:
		return 0, nil
	case famTCP4:
		return v2Addr4, nil
	case famTCP6:
		return v2Addr6, nil
	}
	switch {
	case f>>4 > 3 || f&0x0F > 2 || f&0x0F == 0:
		return 0, errV2Family
	case f&0x0F == 2:
		return 0, errV2DGRAM
	case f>>4 == 3:
		return 0, errV2Unix
	}
	return 0, errV2Family // AF_UNSPEC over a transport
}

// tlvsFit reports whether b is a sequence of whole TLVs.
func tlvsFit(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 3 {
			return false
		}
		n := 3 + int(binary.BigEndian.Uint16(b[1:3]))
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return true
}

// ---- encoding ----

// addrs returns h's addresses unmapped and whether they make a TCP4 pair;
// ok is false when h is Local or lacks an address (encoded as LOCAL).
func (h Header) addrs() (src, dst netip.Addr, v4, ok bool) {
	src, dst = h.Src.Addr().Unmap().WithZone(""), h.Dst.Addr().Unmap().WithZone("")
	if h.Local || !src.IsValid() || !dst.IsValid() {
		return netip.Addr{}, netip.Addr{}, false, false
	}
	return src, dst, src.Is4() && dst.Is4(), true
}

// AppendV1 appends h as a v1 line: "PROXY UNKNOWN\r\n" when h is Local or
// lacks a valid address, else TCP4 when both addresses are IPv4 (mapped
// ones included), else TCP6. It allocates nothing when dst has room.
func AppendV1(dst []byte, h Header) []byte {
	src, to, v4, ok := h.addrs()
	if !ok {
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	if v4 {
		dst = append(dst, "PROXY TCP4 "...)
	} else {
		dst = append(dst, "PROXY TCP6 "...)
		src, to = as6(src), as6(to)
	}
	dst = src.AppendTo(dst)
	dst = append(dst, ' ')
	dst = to.AppendTo(dst)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(h.Src.Port()), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(h.Dst.Port()), 10)
	return append(dst, '\r', '\n')
}

// AppendV2 appends h as a v2 header without TLVs: LOCAL when h is Local or
// lacks a valid address, else PROXY over AF_INET when both addresses are
// IPv4 (mapped ones included), else AF_INET6. It allocates nothing when dst
// has room.
func AppendV2(dst []byte, h Header) []byte {
	dst = append(dst, v2Sig[:]...)
	src, to, v4, ok := h.addrs()
	switch {
	case !ok:
		return append(dst, v2Version|cmdLocal, famUnspec, 0, 0)
	case v4:
		dst = append(dst, v2Version|cmdProxy, famTCP4, 0, v2Addr4)
		s, d := src.As4(), to.As4()
		dst = append(dst, s[:]...)
		dst = append(dst, d[:]...)
	default:
		dst = append(dst, v2Version|cmdProxy, famTCP6, 0, v2Addr6)
		s, d := src.As16(), to.As16()
		dst = append(dst, s[:]...)
		dst = append(dst, d[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, h.Src.Port())
	return binary.BigEndian.AppendUint16(dst, h.Dst.Port())
}

// as6 is a as an IPv6 address (IPv4 ones mapped).
func as6(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }
