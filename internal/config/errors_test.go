package config

import (
	"errors"
	"strings"
	"testing"
)

// TestDecodeErrors: syntax, unknown keys and wrong types name the line and
// the key by its TOML path, never our Go types.
func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"", "t.toml:1: no [[listener]]: at least one listener is required"},
		{"[[listener]]\nname = 'a'\nname = 'b'\n", "t.toml:3: key name is already defined"},
		{"[[listener]]\nallow = [1, 2]\n", "t.toml:2: listener.allow: expected an array of strings, found an integer"},
		{"listener = 3\n", "t.toml:1: listener: expected tables ([[listener]]), found an integer"},
		{"[global]\nmax_conns = 1.5\n", "t.toml:2: global.max_conns: expected an integer, found a float"},
		{"[global]\nmax_conns = 99999999999999999999\n", "t.toml:2: global.max_conns: decimal number is too large to fit in a 64-bit signed integer"},
		{"[[cluster]]\ncheck = 3\n", "t.toml:2: cluster.check: expected a table, found an integer"},
		{"[[cluster]]\nnode = {name='x'}\n", "t.toml:2: cluster.node: expected tables ([[cluster.node]]), found an inline table"},
		{"[[cluster]]\nidle_timeout = 0\n", `t.toml:2: cluster.idle_timeout: expected a duration string such as "30s" or "0", found an integer`},
		{"[[cluster]]\naffinity = 'yes'\n", "t.toml:2: cluster.affinity: expected true or false, found a string"},
		{"[global]\nfoo.bar = 1\n", `t.toml:2: unknown key "global.foo.bar"`},
		{"a = 1\n\n[x]\n", "t.toml:1: unknown key \"a\"\nt.toml:3: unknown table \"x\""},
		{"[[listener]\n", "t.toml:1: invalid TOML: expected ']]' to close array table name"},
		{"[[cluster]]\nconect_timeout = '1s'\n", `t.toml:2: unknown key "cluster.conect_timeout" (did you mean "connect_timeout"?)`},
		{"[globl]\n", `t.toml:1: unknown table "globl" (did you mean "global"?)`},
		{"[[cluster]]\n[cluster.chek]\n", `t.toml:2: unknown table "cluster.chek" (did you mean "check"?)`},
	} {
		_, err := Parse("t.toml", []byte(tc.src), "")
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q):\n got %v\nwant %s", tc.src, err, tc.want)
		}
	}
}

func TestErrorTypes(t *testing.T) {
	_, err := Parse("t.toml", []byte("[global]\nmax_conns = -1\nshutdown_timeout = \"x\"\n"), "")
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 { // two in [global], no listener
		t.Fatalf("want 3 Errors, got %#v", err)
	}
	var first *Error
	if !errors.As(err, &first) || first.File != "t.toml" || first.Line != 1 || !strings.HasPrefix(first.Msg, "no [[listener]]") {
		t.Errorf("errors.As(*Error) = %+v", first)
	}
	if got := (&Error{File: "f", Msg: "m"}).Error(); got != "f: m" {
		t.Errorf("line-less error = %q", got)
	}
	if _, err := Load("testdata/does-not-exist.toml"); err == nil || errors.As(err, &es) {
		t.Errorf("a missing file must be the os error, got %v", err)
	}
}
