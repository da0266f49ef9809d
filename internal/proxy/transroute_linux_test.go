package proxy

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/protobalance/protobalance/internal/config"
)

// transparent = true is refused in a namespace without the policy routing
// that brings the nodes' replies back, per family, and accepted once the
// rule and the local default route of docs/transparent.md are in place.
func TestTransparentRouteCheckNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		needOrSkip(t, "needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		needOrSkip(t, "needs ip(8) (Debian package iproute2)")
	}
	ns := fmt.Sprintf("pb-tr-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED — the kernel refused a network namespace: %v\n%s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	ipIn := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ipIn("link", "set", "lo", "up")
	cfg, err := config.Parse("t.toml", []byte(`
[[listener]]
name = "l"
bind = "127.0.0.1:1"
cluster = "c"

[[cluster]]
name = "c"
transparent = true

[[cluster.node]]
name = "a"
address = "10.9.0.2:80"

[[cluster.node]]
name = "b"
address = "[fd00::2]:80"
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The checks run on this goroutine's thread, moved into ns.
	inNetns(t, ns, func() {
		if err := checkSources(cfg); err == nil || !strings.Contains(err.Error(), "(IPv4)") {
			t.Errorf("no routing set-up: %v; want the IPv4 routing error", err)
		}
		ipIn("rule", "add", "iif", "lo", "lookup", "100")
		ipIn("route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
		if err := checkSources(cfg); err == nil || !strings.Contains(err.Error(), "(IPv6)") {
			t.Errorf("IPv4 set up only: %v; want the IPv6 routing error for node b", err)
		}
		ipIn("-6", "rule", "add", "iif", "lo", "lookup", "100")
		ipIn("-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")
		if err := checkSources(cfg); err != nil {
			t.Errorf("both families set up: %v", err)
		}
	})
}

// inNetns runs f on a thread that has joined network namespace ns.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", ns, err)
	}
	defer func() {
		// A thread that cannot go back stays locked: the runtime ends it
		// with the goroutine.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("back to the original namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	f()
}

func needOrSkip(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", msg)
	}
	t.Skipf("SKIPPED — %s", msg)
}

func TestTransparentRouteErrorText(t *testing.T) {
	err := transparentRouteError("web", false)
	for _, want := range []string{`cluster "web": transparent = true`, "(IPv4)", `"ip route add local 0.0.0.0/0 dev lo table 100"`, "docs/transparent.md"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if err := transparentRouteError("web", true); !strings.Contains(err.Error(), `"ip -6 route add local ::/0 dev lo table 100"`) {
		t.Errorf("IPv6: %q", err)
	}
}
