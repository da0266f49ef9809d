package admin

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// TestTokenRequired is the start-up decision, tested as a pure function so
// that no test ever listens off loopback.
func TestTokenRequired(t *testing.T) {
	for _, c := range []struct {
		listen, tokenFile string
		need              bool
		err               string
	}{
		{"127.0.0.1:9900", "", false, ""},
		{"127.0.7.1:0", "", false, ""},
		{"[::1]:9900", "", false, ""},
		{"localhost:9900", "", false, ""},
		{"127.0.0.1:9900", "/etc/pb/token", true, ""},
		{"0.0.0.0:9900", "/etc/pb/token", true, ""},
		{"0.0.0.0:9900", "", false, "is not a loopback address: set [admin] token_file"},
		{":9900", "", false, "is not a loopback address"},
		{"[::]:9900", "", false, "is not a loopback address"},
		{"10.1.2.3:9900", "", false, "is not a loopback address"},
		{"[::ffff:10.1.2.3]:9900", "", false, "is not a loopback address"},
		{"admin.example.com:9900", "", false, "is not a loopback address"},
		{"nonsense", "", false, "missing port"},
	} {
		need, err := tokenRequired(c.listen, c.tokenFile)
		if need != c.need || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("tokenRequired(%q, %q) = %v, %v; want %v, %q", c.listen, c.tokenFile, need, err, c.need, c.err)
		}
	}
}

func TestAllowedHosts(t *testing.T) {
	got := allowedHosts("127.0.0.1:9900", netip.MustParseAddrPort("127.0.0.1:9900"), false)
	want := map[string]bool{"127.0.0.1:9900": true, "localhost:9900": true, "[::1]:9900": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loopback: %v", got)
	}
	got = allowedHosts("localhost:0", netip.MustParseAddrPort("127.0.0.1:4711"), false)
	if !got["localhost:4711"] || !got["127.0.0.1:4711"] || got["localhost:0"] {
		t.Errorf("port 0: %v", got)
	}
	got = allowedHosts("10.0.0.5:80", netip.MustParseAddrPort("10.0.0.5:80"), false)
	want = map[string]bool{"10.0.0.5:80": true, "10.0.0.5": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("port 80: %v", got)
	}
	if got := allowedHosts("0.0.0.0:9900", netip.MustParseAddrPort("0.0.0.0:9900"), false); got != nil {
		t.Errorf("wildcard: %v (want any Host: the token protects it)", got)
	}
}

// FuzzDecodeRequests feeds arbitrary bodies to the request decoding of
// the node PUT and POST and the listener PUT: no panic, and a body that
// decodes re-encodes to one that decodes to the same value.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{
		`{"state": "yellow"}`, `{"weight": 3}`, `{"weight": -1, "state": "red"}`, `{"cluster": "other"}`,
		`{"name": "n4", "address": "10.0.0.4:80", "weight": 2, "fallover": "n1", "standby": true, "max_conns": 9, "state": "green"}`,
		`{"state": null}`, `null`, `[]`, `{"weight": 1e999}`, `{"a":1}`, `{} {}`, `{"state":"\u0000"}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(v, fresh any) {
			if err := decodeJSON(data, v); err != nil {
				if _, ok := err.(*apiError); !ok {
					t.Fatalf("error %T is not an *apiError", err)
				}
				return
			}
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := decodeJSON(again, fresh); err != nil {
				t.Fatalf("re-encoded %s does not decode: %v", again, err)
			}
			if !reflect.DeepEqual(v, fresh) {
				t.Fatalf("round trip changed %#v into %#v", v, fresh)
			}
		}
		var u, u2 NodeUpdate
		check(&u, &u2)
		_ = u.check()
		var s, s2 NodeSpec
		check(&s, &s2)
		var l, l2 ListenerUpdate
		check(&l, &l2)
	})
}

func TestSeriesEscapesLabels(t *testing.T) {
	s := series{}
	s.add("protobalance_x", []string{"cluster", "a\\b\"c\nd", "node", "n"}, 1.5)
	s.add("protobalance_y", nil, 3)
	if got, want := s["protobalance_x"][0], `protobalance_x{cluster="a\\b\"c\nd",node="n"} 1.5`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := s["protobalance_y"][0]; got != "protobalance_y 3" {
		t.Errorf("got %s", got)
	}
}
