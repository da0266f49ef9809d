package config

import (
	"strings"
	"testing"
)

func TestNodeFromAPI(t *testing.T) {
	w, neg, red := 3, -1, "red"
	n, err := NodeFromAPI(APINode{Name: "n4", Address: "127.0.0.1:9004", Weight: &w, State: &red, Standby: true})
	if err != nil {
		t.Fatal(err)
	}
	want := Node{Name: "n4", Host: "127.0.0.1", Port: 9004, Weight: 3, Standby: true, State: "red"}
	if n != want {
		t.Errorf("got %+v, want %+v", n, want)
	}
	n, err = NodeFromAPI(APINode{Name: "n5", Address: "db.example.com"})
	if err != nil || n.Weight != 1 || n.State != "green" || !n.PortLess() {
		t.Errorf("defaults: %+v %v", n, err)
	}
	bad := "purple"
	_, err = NodeFromAPI(APINode{Name: "x", Address: "1.2.3.4:99999", Weight: &neg, State: &bad, Fallover: "x"})
	for _, msg := range []string{
		`node "x": address "1.2.3.4:99999": invalid port "99999" (0-65535)`,
		`node "x": weight -1: must be >= 0`,
		`node "x": state "purple": must be one of "green", "yellow", "red"`,
		`node "x": fallover "x": a node cannot stand in for itself`,
	} {
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("error %v lacks %q", err, msg)
		}
	}
	if _, err := NodeFromAPI(APINode{}); err == nil || !strings.Contains(err.Error(), "name: required") {
		t.Errorf("empty node: %v", err)
	}
}

func TestAdminTLSPaths(t *testing.T) {
	src := minimal + "[admin]\ntls_cert = \"tls/admin.pem\"\ntls_key = \"/k/admin.key\"\n"
	c, err := Parse("pb.toml", []byte(src), "/etc/pb")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.TLSCert != "/etc/pb/tls/admin.pem" || c.Admin.TLSKey != "/k/admin.key" {
		t.Errorf("tls paths: %q %q", c.Admin.TLSCert, c.Admin.TLSKey)
	}
}
