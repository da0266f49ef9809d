package config

import (
	"net/netip"
	"testing"
)

func TestParseBind(t *testing.T) {
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		in   string
		want Bind
		ok   bool
	}{
		{"127.0.0.1:8080", Bind{ip("127.0.0.1"), 8080, 8080}, true},
		{"0.0.0.0:30000-30099", Bind{ip("0.0.0.0"), 30000, 30099}, true},
		{"[::]:30000-30000", Bind{ip("::"), 30000, 30000}, true},
		{"[::1]:0", Bind{ip("::1"), 0, 0}, true},
		{"[fe80::1%eth0]:80", Bind{ip("fe80::1%eth0"), 80, 80}, true},
		{"127.0.0.1:0-0", Bind{}, false},
		{"127.0.0.1", Bind{}, false},
		{"127.0.0.1:", Bind{}, false},
		{"127.0.0.1:+80", Bind{}, false},
		{"127.0.0.1:80-", Bind{}, false},
		{"127.0.0.1:80-90-100", Bind{}, false},
		{"[127.0.0.1]:80", Bind{}, false},
		{"::1:80", Bind{}, false},
		{"[::1:80", Bind{}, false},
		{"host:80", Bind{}, false},
	} {
		got, err := parseBind(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseBind(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err == nil && got.String() != tc.in && tc.in != "[::]:30000-30000" {
			t.Errorf("Bind(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestParseNodeAddress(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port uint16
		ok   bool
	}{
		{"10.0.0.1:80", "10.0.0.1", 80, true},
		{"10.0.0.1", "10.0.0.1", 0, true},
		{"[::1]:80", "::1", 80, true},
		{"[::1]", "::1", 0, true},
		{"::1", "::1", 0, true},
		{"[fe80::1%eth0]:22", "fe80::1%eth0", 22, true},
		{"db-1.internal:5432", "db-1.internal", 5432, true},
		{"db-1.internal.", "db-1.internal.", 0, true},
		{"_srv.example.com", "_srv.example.com", 0, true},
		{"localhost", "localhost", 0, true},
		{"", "", 0, false},
		{"host:", "", 0, false},
		{"host:0", "", 0, false},
		{"host:65536", "", 0, false},
		{":80", "", 0, false},
		{"a..b", "", 0, false},
		{"-a.b", "", 0, false},
		{"a b", "", 0, false},
		{"[10.0.0.1]", "", 0, false},
		{"[::1]x", "", 0, false},
		{"a:b:c", "", 0, false},
		{"[::1]:", "", 0, false},
	} {
		host, port, err := parseNodeAddress(tc.in)
		if (err == nil) != tc.ok || host != tc.host || port != tc.port {
			t.Errorf("parseNodeAddress(%q) = %q, %d, %v; want %q, %d ok=%v", tc.in, host, port, err, tc.host, tc.port, tc.ok)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.1/8", "10.0.0.0/8"},
		{"10.0.0.1", "10.0.0.1/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"10.0.0.0/33", ""},
		{"10.0.0", ""},
		{"fe80::1%eth0", ""},
	} {
		p, err := parsePrefix(tc.in)
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != tc.want {
			t.Errorf("parsePrefix(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
