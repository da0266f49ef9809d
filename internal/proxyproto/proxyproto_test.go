package proxyproto

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// v2 builds a v2 header from its hex-encoded bytes after the signature.
func v2(hexRest string) string {
	b, err := hex.DecodeString(strings.ReplaceAll(hexRest, " ", ""))
	if err != nil {
		panic(err)
	}
	return string(v2Sig[:]) + string(b)
}

var goodHeaders = []struct {
	name string
	in   string
	want Header
	n    int // 0 = len(in)
}{
	{"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
		Header{Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.2:443")}, 0},
	{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n",
		Header{Src: ap("[2001:db8::1]:65535"), Dst: ap("[2001:db8::2]:0")}, 0},
	{"v1 tcp6 mapped", "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
		Header{Src: ap("192.0.2.1:1"), Dst: ap("[::1]:2")}, 0},
	{"v1 unknown", "PROXY UNKNOWN\r\n", Header{Local: true}, 0},
	{"v1 unknown with junk", "PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535\r\n", Header{Local: true}, 0},
	{"v1 then data", "PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000\r\nGET / HTTP/1.0\r\n",
		Header{Src: ap("10.0.0.1:1000"), Dst: ap("10.0.0.2:2000")}, 40},
	{"v1 longest", "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		Header{Src: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dst: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}, 0},
	{"v2 local", v2("20 00 0000"), Header{Local: true}, 0},
	{"v2 local ignores family and block", v2("20 31 0003 abcdef"), Header{Local: true}, 0},
	{"v2 proxy unspec", v2("21 00 0000"), Header{Local: true}, 0},
	{"v2 tcp4", v2("21 11 000c c0000201 c6336402 dc04 01bb"),
		Header{Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.2:443")}, 0},
	{"v2 tcp4 tlvs and data", v2("21 11 0013 0a000001 0a000002 0001 0002 04 0000 03 0001 ff") + "data",
		Header{Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.2:2")}, 16 + 19},
	{"v2 tcp6", v2("21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 0050 1f90"),
		Header{Src: ap("[2001:db8::1]:80"), Dst: ap("[2001:db8::2]:8080")}, 0},
	{"v2 tcp6 mapped", v2("21 21 0024 00000000000000000000ffffc0000201 00000000000000000000ffffc6336402 0050 1f90"),
		Header{Src: ap("192.0.2.1:80"), Dst: ap("198.51.100.2:8080")}, 0},
}

var badHeaders = []struct{ name, in, want string }{
	{"http", "GET / HTTP/1.1\r\n", "not a PROXY"},
	{"lower case", "proxy TCP4 1.2.3.4 1.2.3.4 1 1\r\n", "not a PROXY"},
	{"v1 prefix wrong", "PROXZ", "not a PROXY"},
	{"v1 LF only", "PROXY UNKNOWN\n", "CRLF"},
	{"v1 bad proto", "PROXY UDP4 1.2.3.4 1.2.3.4 1 1\r\n", "protocol"},
	{"v1 bad proto prefix", "PROXY TCP5", "protocol"},
	{"v1 two spaces", "PROXY TCP4  1.2.3.4 1.2.3.4 1 1\r\n", "single spaces"},
	{"v1 missing port", "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "single spaces"},
	{"v1 extra field", "PROXY TCP4 1.2.3.4 1.2.3.4 1 1 1\r\n", "single spaces"},
	{"v1 trailing space", "PROXY TCP4 1.2.3.4 1.2.3.4 1 1 \r\n", "single spaces"},
	{"v1 v6 in tcp4", "PROXY TCP4 ::1 ::1 1 1\r\n", "IPv4"},
	{"v1 v4 in tcp6", "PROXY TCP6 1.2.3.4 ::1 1 1\r\n", "IPv6"},
	{"v1 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 1\r\n", "IPv6"},
	{"v1 zone prefix", "PROXY TCP6 fe80::1%", "unexpected character"},
	{"v1 zone complete", "PROXY TCP6 fe80::1%1 ::1 1 1\r\n", "IPv6"},
	{"v1 leading zero octet", "PROXY TCP4 01.2.3.4 1.2.3.4 1 1\r\n", "IPv4"},
	{"v1 port too big", "PROXY TCP4 1.2.3.4 1.2.3.4 65536 1\r\n", "port"},
	{"v1 port leading zero", "PROXY TCP4 1.2.3.4 1.2.3.4 01 1\r\n", "port"},
	{"v1 port sign", "PROXY TCP4 1.2.3.4 1.2.3.4 +1 1\r\n", "port"},
	{"v1 garbage char", "PROXY TCP4 1.2.3.4x", "unexpected character"},
	{"v1 too long", "PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n", "107"},
	{"v1 too long no CRLF", "PROXY UNKNOWN " + strings.Repeat("x", 93), "107"},
	{"v2 bad signature", "\r\n\r\n\x00\r\nQUIX", "not a PROXY"},
	{"v2 version 1", v2("11 11 000c"), "version"},
	{"v2 command 2", v2("22 11 000c"), "command"},
	{"v2 udp4", v2("21 12 000c"), "UDP"},
	{"v2 udp6", v2("21 22 0024"), "UDP"},
	{"v2 unix", v2("21 31 00d8"), "AF_UNIX"},
	{"v2 family 4", v2("21 41 000c"), "unknown address family"},
	{"v2 unspec stream", v2("21 01 0000"), "unknown address family"},
	{"v2 inet unspec transport", v2("21 10 000c"), "unknown address family"},
	{"v2 short for tcp4", v2("21 11 000b 0a000001 0a000002 0001 00"), "too short"},
	{"v2 short for tcp6", v2("21 21 000c 0a000001 0a000002 0001 0002"), "too short"},
	{"v2 too long", v2("21 11 07f1"), "MaxLen"},
	{"v2 broken tlv", v2("21 11 000e 0a000001 0a000002 0001 0002 0400"), "TLVs"},
	{"v2 tlv overruns", v2("21 11 0010 0a000001 0a000002 0001 0002 04 0005 00"), "TLVs"},
}

func TestParseGood(t *testing.T) {
	for _, tc := range goodHeaders {
		h, n, err := Parse([]byte(tc.in))
		want := tc.n
		if want == 0 {
			want = len(tc.in)
		}
		if err != nil || h != tc.want || n != want {
			t.Errorf("%s: Parse = %+v, %d, %v; want %+v, %d, nil", tc.name, h, n, err, tc.want, want)
		}
		for i := range want {
			if _, _, err := Parse([]byte(tc.in[:i])); err != ErrIncomplete {
				t.Errorf("%s: Parse of the first %d bytes: %v, want ErrIncomplete", tc.name, i, err)
				break
			}
		}
	}
}

func TestParseBad(t *testing.T) {
	for _, tc := range badHeaders {
		h, n, err := Parse([]byte(tc.in))
		if err == nil || err == ErrIncomplete || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse(%q) = %+v, %d, %v; want an error naming %q", tc.name, tc.in, h, n, err, tc.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	headers := []struct {
		h      Header
		want   Header // what parses back (zero = h)
		v1, v2 string // expected encodings' prefixes, for the family chosen
	}{
		{h: Header{Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.2:443")}, v1: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", v2: "\x21\x11"},
		{h: Header{Src: ap("[2001:db8::1]:1"), Dst: ap("[2001:db8::2]:65535")}, v1: "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", v2: "\x21\x21"},
		{h: Header{Src: ap("[::ffff:192.0.2.1]:5"), Dst: ap("[::ffff:127.0.0.1]:6")},
			want: Header{Src: ap("192.0.2.1:5"), Dst: ap("127.0.0.1:6")}, v1: "PROXY TCP4 192.0.2.1 127.0.0.1 5 6\r\n", v2: "\x21\x11"},
		{h: Header{Src: ap("192.0.2.1:5"), Dst: ap("[::1]:6")}, v1: "PROXY TCP6 ::ffff:192.0.2.1 ::1 5 6\r\n", v2: "\x21\x21"},
		{h: Header{Src: ap("[fe80::1%eth0]:5"), Dst: ap("[::1]:6")},
			want: Header{Src: ap("[fe80::1]:5"), Dst: ap("[::1]:6")}, v1: "PROXY TCP6 fe80::1 ::1 5 6\r\n", v2: "\x21\x21"},
		{h: Header{Local: true}, v1: "PROXY UNKNOWN\r\n", v2: "\x20\x00"},
		{h: Header{Local: true, Src: ap("1.2.3.4:5")}, want: Header{Local: true}, v1: "PROXY UNKNOWN\r\n", v2: "\x20\x00"},
		{h: Header{Src: ap("1.2.3.4:5")}, want: Header{Local: true}, v1: "PROXY UNKNOWN\r\n", v2: "\x20\x00"},
	}
	for _, tc := range headers {
		want := tc.want
		if want == (Header{}) {
			want = tc.h
		}
		b1 := AppendV1(nil, tc.h)
		if string(b1) != tc.v1 {
			t.Errorf("AppendV1(%+v) = %q, want %q", tc.h, b1, tc.v1)
		}
		b2 := AppendV2([]byte("x"), tc.h)[1:]
		if !bytes.HasPrefix(b2[12:], []byte(tc.v2)) {
			t.Errorf("AppendV2(%+v) = % x, want command and family % x", tc.h, b2, tc.v2)
		}
		for _, b := range [][]byte{b1, b2} {
			h, n, err := Parse(b)
			if err != nil || n != len(b) || h != want {
				t.Errorf("Parse(%q) = %+v, %d, %v; want %+v, %d", b, h, n, err, want, len(b))
			}
		}
	}
}

func TestAppendAllocs(t *testing.T) {
	h := Header{Src: ap("[2001:db8::1]:65535"), Dst: ap("[2001:db8::2]:65535")}
	buf := make([]byte, 0, 128)
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendV1(buf[:0], h)
		buf = AppendV2(buf[:0], h)
	}); n != 0 {
		t.Errorf("Append allocates %v times, want 0", n)
	}
}

func TestMaxLen(t *testing.T) {
	// The longest v2 header we accept parses; one byte more is refused.
	tlv := make([]byte, MaxLen-v2HeadLen-v2Addr4)
	tlv[0] = 0x04
	binary.BigEndian.PutUint16(tlv[1:], uint16(len(tlv)-3))
	b := AppendV2(nil, Header{Src: ap("1.2.3.4:1"), Dst: ap("5.6.7.8:2")})
	binary.BigEndian.PutUint16(b[14:], MaxLen-v2HeadLen)
	b = append(b, tlv...)
	if _, n, err := Parse(b); err != nil || n != MaxLen {
		t.Fatalf("Parse of a %d-byte header: %d, %v", len(b), n, err)
	}
	if _, _, err := Parse(b[:MaxLen-1]); err != ErrIncomplete {
		t.Fatalf("Parse of all but the last byte: %v", err)
	}
	binary.BigEndian.PutUint16(b[14:], MaxLen-v2HeadLen+1)
	if _, _, err := Parse(b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse of a header one byte over MaxLen: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range goodHeaders {
		f.Add([]byte(tc.in))
	}
	for _, tc := range badHeaders {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		switch {
		case err == ErrIncomplete:
			if n != 0 || len(b) >= MaxLen {
				t.Fatalf("ErrIncomplete with n=%d for %d bytes", n, len(b))
			}
			return
		case err != nil:
			if !errors.Is(err, ErrInvalid) || n != 0 {
				t.Fatalf("error %v (n=%d) does not match ErrInvalid", err, n)
			}
			return
		}
		if n <= 0 || n > len(b) || n > MaxLen {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		if h.Local && h != (Header{Local: true}) {
			t.Fatalf("Local header with addresses: %+v", h)
		}
		for i := range n {
			if _, _, err := Parse(b[:i]); err != ErrIncomplete {
				t.Fatalf("prefix of %d bytes of a %d-byte header: %v", i, n, err)
			}
		}
		for _, enc := range [][]byte{AppendV1(nil, h), AppendV2(nil, h)} {
			h2, n2, err := Parse(enc)
			if err != nil || n2 != len(enc) || h2 != h {
				t.Fatalf("re-encoded %+v as %q: parsed %+v, %d, %v", h, enc, h2, n2, err)
			}
		}
	})
}
