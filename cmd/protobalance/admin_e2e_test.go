package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/demo"
)

const runAdminConfig = `[admin]
listen = %q
[[listener]]
name = "e2e"
bind = "127.0.5.1:0"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n1"
address = %q
`

var adminAddrRE = regexp.MustCompile(`admin API listening" addr=(\S+)`)

// TestRunServesAdmin: `run` starts the admin API after the listeners; POST
// /api/reload takes the same path as SIGHUP (a bad file is refused with
// FILE:LINE, a good one applied); SIGTERM stops both.
func TestRunServesAdmin(t *testing.T) {
	n, err := demo.Listen("n1", "127.0.5.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	file := filepath.Join(t.TempDir(), "pb.toml")
	good := fmt.Sprintf(runAdminConfig, "127.0.5.3:0", n.Addr())
	os.WriteFile(file, []byte(good), 0o600)
	p := start(t, exec.Command(binary(t), "run", "-c", file))
	p.waitStderr(t, "admin API listening")
	m := adminAddrRE.FindStringSubmatch(p.stderr())
	if m == nil {
		t.Fatalf("no admin address in:\n%s", p.stderr())
	}
	url := "http://" + m[1]
	post := func() (int, string) {
		resp, err := http.Post(url+"/api/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	os.WriteFile(file, []byte(strings.Replace(good, `name = "n1"`, "name = \"n1\"\nweight = -1", 1)), 0o600)
	if st, body := post(); st != 422 || !strings.Contains(body, file+`:11: cluster \"c\": node \"n1\": weight -1: must be >= 0`) {
		t.Errorf("bad reload: %d %s", st, body)
	}
	os.WriteFile(file, []byte(strings.Replace(good, `name = "n1"`, "name = \"n1\"\nweight = 7", 1)), 0o600)
	if st, body := post(); st != 200 {
		t.Errorf("good reload: %d %s", st, body)
	}
	resp, err := http.Get(url + "/api/clusters/c/nodes/n1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"weight": 7`) {
		t.Errorf("after reload: %s", body)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr())
	}
	if !strings.Contains(p.stderr(), `"configuration reloaded" via=api`) {
		t.Errorf("API reload not logged:\n%s", p.stderr())
	}
}

// TestRunRefusesOpenAdminWithoutToken: off loopback without token_file the
// process refuses to start. The refusal comes before any bind, so the
// test never listens on a public address.
func TestRunRefusesOpenAdminWithoutToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pb.toml")
	os.WriteFile(file, []byte(fmt.Sprintf(runAdminConfig, "0.0.0.0:0", "127.0.5.2:9")), 0o600)
	out, err := exec.Command(binary(t), "run", "-c", file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `admin listen "0.0.0.0:0" is not a loopback address: set [admin] token_file`) {
		t.Errorf("run: %v\n%s", err, out)
	}
}

// TestDemoPrintsCtl: the demo runs the admin API and says how to use it.
func TestDemoPrintsCtl(t *testing.T) {
	p := start(t, exec.Command(binary(t), "demo", "--listen", "127.0.5.1:0", "--admin", "127.0.5.3:0"))
	line := p.waitLine(t, "node demo node-1 state yellow")
	args := strings.Fields(line)[1:] // drop "protobalance"
	var out, errb strings.Builder
	if code := realMain(args, &out, &errb); code != 0 || !strings.Contains(out.String(), `node "node-1": state yellow`) {
		t.Errorf("%v: exit %d %s %s", args, code, out.String(), errb.String())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("demo did not stop")
	}
}
