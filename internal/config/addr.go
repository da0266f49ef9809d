package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// parseBind reads "IP:PORT", "[v6]:PORT" or an inclusive range
// "IP:FIRST-LAST". Port 0 (the kernel picks one) is only meaningful for a
// single port. Host names are refused: a listener binds an address.
func parseBind(s string) (Bind, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Bind{}, errors.New(`expected "IP:PORT" or "IP:FIRST-LAST"`)
	}
	host, ports := s[:i], s[i+1:]
	if host == "" {
		return Bind{}, fmt.Errorf(`missing IP address (use "0.0.0.0%s" or "[::]%s")`, s, s)
	}
	addr, err := parseHostIP(host)
	if err != nil {
		return Bind{}, err
	}
	first, last, isRange := strings.Cut(ports, "-")
	lo, err := parsePort(first)
	if err != nil {
		return Bind{}, err
	}
	hi := lo
	if isRange {
		if hi, err = parsePort(last); err != nil {
			return Bind{}, err
		}
		if lo == 0 {
			return Bind{}, errors.New("a port range cannot start at 0")
		}
		if lo > hi {
			return Bind{}, fmt.Errorf("port range %d-%d: first port above last", lo, hi)
		}
	}
	return Bind{Addr: addr, FirstPort: lo, LastPort: hi}, nil
}

// parseHostIP reads an IP literal, IPv6 in brackets ("[::1]"). A bare IPv6
// address is refused here because "::1:80" is ambiguous.
func parseHostIP(host string) (netip.Addr, error) {
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if bracketed {
		host = host[1 : len(host)-1]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", host)
	}
	if a.Is6() && !bracketed {
		return netip.Addr{}, errors.New("an IPv6 address needs brackets: [ADDR]:PORT")
	}
	if a.Is4() && bracketed {
		return netip.Addr{}, errors.New("brackets are for IPv6 addresses only")
	}
	return a, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || s == "" || s[0] == '+' {
		return 0, fmt.Errorf("invalid port %q (0-65535)", s)
	}
	return uint16(n), nil
}

// parseNodeAddress reads "host:port" or "host" alone (port 0: the client's
// port). The host is an IP literal or a DNS name, checked for syntax only;
// IPv6 may be written "[::1]:80", "[::1]" or "::1".
func parseNodeAddress(s string) (host string, port uint16, err error) {
	if s == "" {
		return "", 0, errors.New("empty address")
	}
	if a, err := netip.ParseAddr(s); err == nil { // "::1", "10.0.0.1", "fe80::1%eth0"
		return a.String(), 0, nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		if err != nil || !a.Is6() {
			return "", 0, fmt.Errorf("%q is not an IPv6 address", s)
		}
		return a.String(), 0, nil
	}
	h, p, splitErr := net.SplitHostPort(s)
	if splitErr != nil {
		// No usable port: the whole string must be a host name.
		if strings.Contains(s, ":") {
			return "", 0, errors.New(`expected "host:port" or "host"`)
		}
		h, p = s, ""
	}
	if splitErr == nil {
		if port, err = parsePort(p); err != nil {
			return "", 0, err
		}
		if port == 0 {
			return "", 0, errors.New("port 0: omit the port to use the client's port")
		}
	}
	if h == "" {
		return "", 0, errors.New("missing host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Is6() && !strings.HasPrefix(s, "[") {
			return "", 0, errors.New("an IPv6 address needs brackets: [ADDR]:PORT")
		}
		return a.String(), port, nil
	}
	if !validHostName(h) {
		if h == s {
			return "", 0, errors.New("neither an IP address nor a valid host name")
		}
		return "", 0, fmt.Errorf("host %q is neither an IP address nor a valid host name", h)
	}
	return h, port, nil
}

// validHostName checks RFC 1123 syntax: dot-separated labels of letters,
// digits and inner hyphens, 1-63 bytes each, 253 in all; a final dot is
// allowed. Underscores are accepted, as resolvers do for service names.
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// parsePrefix reads a CIDR; a bare IP is a host prefix (/32 or /128) and
// host bits are cleared, so "10.0.0.1/8" means 10.0.0.0/8.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errors.New("not an IP address or CIDR")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not a CIDR")
	}
	return p.Masked(), nil
}

// validListen checks the admin address: "host:port", where host may be
// empty (all addresses), a name or an IP.
func validListen(s string) error {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New(`expected "host:port"`)
	}
	if _, err := parsePort(p); err != nil {
		return err
	}
	if h == "" {
		return nil
	}
	if _, err := netip.ParseAddr(h); err != nil && !validHostName(h) {
		return fmt.Errorf("%q is neither an IP address nor a host name", h)
	}
	return nil
}
