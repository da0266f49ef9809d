package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A node taken red through the API stays red across a restart; once the
// file changes that node's state, the file wins (F8 precedence).
func TestAdminStateSurvivesRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pb.toml")
	cfg := e2eConfig("[admin]\nlisten = \"127.0.5.3:0\"\n", "", namedNodes(t, "a", "b")...)
	os.WriteFile(file, []byte(cfg), 0o600)
	run := func() (*proc, string, string) {
		p := start(t, exec.Command(binary(t), "run", "-c", file))
		p.waitStderr(t, "msg=started")
		m := adminAddrRE.FindStringSubmatch(p.stderr())
		l := listenRE.FindStringSubmatch(p.stderr())
		if m == nil || l == nil {
			t.Fatalf("no addresses in:\n%s", p.stderr())
		}
		return p, "http://" + m[1], l[2]
	}
	stop := func(p *proc) {
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("exit: %v", err)
		}
	}
	stateOf := func(url string) string {
		resp, err := http.Get(url + "/api/clusters/c/nodes/a")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, s := range []string{"green", "yellow", "red"} {
			if strings.Contains(string(body), `"state": "`+s+`"`) {
				return s
			}
		}
		t.Fatalf("no state in %s", body)
		return ""
	}

	p, url, _ := run()
	req, _ := http.NewRequest("PUT", url+"/api/clusters/c/nodes/a", strings.NewReader(`{"state": "red"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT state red: %v %v", resp, err)
	}
	resp.Body.Close()
	stop(p)

	p, url, addr := run()
	if s := stateOf(url); s != "red" {
		t.Fatalf("after a restart node a is %s, want red (taken red through the API)", s)
	}
	for i := range 4 {
		if got := askFrom(t, "127.0.5.9", addr); got != "b" {
			t.Fatalf("connection %d went to %s with a red", i, got)
		}
	}
	stop(p)

	// The file now says yellow for a: the file has the last word.
	os.WriteFile(file, []byte(strings.Replace(cfg, `name = "a"`, "name = \"a\"\nstate = \"yellow\"", 1)), 0o600)
	p, url, _ = run()
	if s := stateOf(url); s != "yellow" {
		t.Fatalf("after the file changed a's state: %s, want the file's yellow", s)
	}
	stop(p)
	if _, err := os.Stat(filepath.Join(filepath.Dir(file), "protobalance.db.admin.json")); err == nil {
		t.Error("the dropped change is still saved")
	}
}
