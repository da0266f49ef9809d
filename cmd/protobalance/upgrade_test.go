package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var startedPIDRE = regexp.MustCompile(`msg=started .* pid=(\d+)`)

// TestUpgradeUnderLoad (F8): SIGUSR2 starts the new binary with the
// listening sockets (proxy and admin); once it is ready the old process
// drains and exits. Four clients connect without pause throughout: not one
// connection is refused, reset or unanswered, connections keep being
// served once the old process has gone, and the affinity records the old
// process flushed before handing over the store are used by the new one.
func TestUpgradeUnderLoad(t *testing.T) {
	dir := t.TempDir()
	head := fmt.Sprintf("[global]\nshutdown_timeout = \"10s\"\n[admin]\nlisten = \"127.0.5.1:0\"\n[store]\npath = %q\n",
		filepath.Join(dir, "pb.db"))
	cfg := e2eConfig(head, "algorithm = \"random\"\naffinity = true", namedNodes(t, "a", "b", "c")...)
	u := startUpgradable(t, dir, cfg)
	old, exited, readLog, waitLog, bin := u.cmd, u.exited, u.readLog, u.waitLog, u.bin
	waitLog(startedPIDRE, 1)
	addr := listenRE.FindStringSubmatch(readLog())[2]
	adminAddr := adminAddrRE.FindStringSubmatch(readLog())[1]

	// Clients learnt before the upgrade: flushed when the store is handed
	// over, restored by the new process.
	learnt := map[string]string{}
	for i := range 50 {
		from := fmt.Sprintf("127.6.0.%d", i+1)
		learnt[from] = askFrom(t, from, addr)
	}

	var ok, failed atomic.Int64
	var afterExit atomic.Int64 // answered once the old process had gone
	var oldGone atomic.Bool
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				from := fmt.Sprintf("127.7.%d.%d", g, i%250+1)
				if err := ask(from, addr); err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(errs) < 10 {
						errs = append(errs, err.Error())
					}
					errMu.Unlock()
					continue
				}
				ok.Add(1)
				if oldGone.Load() {
					afterExit.Add(1)
				}
			}
		}()
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopLoad()

	time.Sleep(300 * time.Millisecond) // load before the swap
	// The binary is replaced on disk before SIGUSR2 (a new inode, as an
	// install does): the new process must run the new file.
	copyFile(t, binary(t), bin+".new")
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	beforeSwap := ok.Load()
	if err := old.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	m := waitLog(startedPIDRE, 2)
	newPID, _ := strconv.Atoi(m[1][1])
	if newPID == old.Process.Pid || newPID <= 0 {
		t.Fatalf("second start logged pid %d (old %d)", newPID, old.Process.Pid)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("old process: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("old process did not exit within 30 s of the upgrade")
	}
	oldGone.Store(true)
	waitLog(regexp.MustCompile(`msg="upgrade: ready`), 1)
	time.Sleep(500 * time.Millisecond) // load after the swap, new process only
	stopLoad()

	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d connections failed across the upgrade, e.g. %q", f, f+ok.Load(), errs)
	}
	if afterExit.Load() == 0 || beforeSwap == 0 {
		t.Fatalf("load: %d answered before the swap, %d after the old process exited; want some of both",
			beforeSwap, afterExit.Load())
	}
	t.Logf("%d connections, 0 failed: %d before SIGUSR2, %d after the old process (pid %d) exited, served by pid %d",
		ok.Load(), beforeSwap, afterExit.Load(), old.Process.Pid, newPID)
	exe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", newPID))
	if err != nil {
		t.Fatalf("new process %d: %v", newPID, err)
	}
	if installed, err := os.Stat(bin); err != nil || !os.SameFile(exe, installed) {
		t.Fatalf("the new process does not run the binary installed before SIGUSR2 (%v)", err)
	}

	// Both logged the same sockets (the admin API binds the same "host:0"
	// as the listener: each still gets its own), the admin socket came
	// over too, and the affinity store works.
	if l := listenRE.FindAllStringSubmatch(readLog(), -1); len(l) != 2 || l[1][2] != addr {
		t.Fatalf("listener addresses logged: %q; want %s twice", l, addr)
	}
	if a := adminAddrRE.FindAllStringSubmatch(readLog(), -1); len(a) != 2 || a[1][1] != adminAddr {
		t.Fatalf("admin addresses logged: %q; want %s twice", a, adminAddr)
	}
	resp, err := http.Get("http://" + adminAddr + "/api/status")
	if err != nil {
		t.Fatalf("admin API after the upgrade: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin API after the upgrade: %s", resp.Status)
	}
	for from, want := range learnt {
		if got := askFrom(t, from, addr); got != want {
			t.Fatalf("client %s: %s before the upgrade, %s after", from, want, got)
		}
	}

	// The new process stops cleanly on SIGTERM (it is not our child: its
	// log says so, one "stopped" per process).
	syscall.Kill(newPID, syscall.SIGTERM)
	waitLog(regexp.MustCompile(`msg=stopped`), 2)
}

// ask sends one line through addr from the client address from and checks
// that a node answered.
func ask(from, addr string) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		return err
	}
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(l) == "" {
		return errors.New("empty answer")
	}
	return nil
}

// A new process that cannot start (here: the config file went bad) fails
// the upgrade: the old process logs it and keeps serving, and a later
// SIGUSR2 with the file fixed upgrades.
func TestUpgradeFailureKeepsServing(t *testing.T) {
	dir := t.TempDir()
	cfg := e2eConfig(fmt.Sprintf("[store]\npath = %q\n", filepath.Join(dir, "pb.db")), "affinity = true",
		namedNodes(t, "a")...)
	u := startUpgradable(t, dir, cfg)
	u.waitLog(startedPIDRE, 1)
	addr := listenRE.FindStringSubmatch(u.readLog())[2]
	if err := os.WriteFile(u.file, []byte("[[listener]]\nbogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u.cmd.Process.Signal(syscall.SIGUSR2)
	u.waitLog(regexp.MustCompile(`msg="upgrade failed`), 1)
	if err := ask("127.8.0.1", addr); err != nil {
		t.Fatalf("after the failed upgrade: %v", err)
	}
	if err := os.WriteFile(u.file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	u.cmd.Process.Signal(syscall.SIGUSR2)
	u.waitLog(startedPIDRE, 2)
	select {
	case err := <-u.exited:
		if err != nil {
			t.Fatalf("old process: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("old process did not exit after the second upgrade")
	}
	if err := ask("127.8.0.1", addr); err != nil {
		t.Fatalf("after the second upgrade: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// upgradable is a `protobalance run` started from its own copy of the
// binary (bin), logging to a file.
type upgradable struct {
	cmd     *exec.Cmd
	file    string // the config file
	bin     string
	exited  chan error // the old process's Wait
	readLog func() string
	waitLog func(re *regexp.Regexp, n int) [][]string
}

func startUpgradable(t *testing.T, dir, cfg string) *upgradable {
	t.Helper()
	file := filepath.Join(dir, "pb.toml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The log goes to a file, not a pipe: the new process inherits it, and
	// a pipe would keep the old process's Wait waiting for the new one.
	logf, err := os.Create(filepath.Join(dir, "pb.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	readLog := func() string {
		b, _ := os.ReadFile(logf.Name())
		return string(b)
	}
	waitLog := func(re *regexp.Regexp, n int) [][]string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if m := re.FindAllStringSubmatch(readLog(), -1); len(m) >= n {
				return m
			}
		}
		t.Fatalf("log never matched %v %d times:\n%s", re, n, readLog())
		return nil
	}
	bin := filepath.Join(dir, "protobalance")
	copyFile(t, binary(t), bin)
	old := exec.Command(bin, "run", "-c", file)
	old.Stderr = logf
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- old.Wait() }()
	// Whatever happens, stop every process this test started: the old one
	// and the new one (its child, found by the PID it logs).
	t.Cleanup(func() {
		old.Process.Kill()
		for _, m := range startedPIDRE.FindAllStringSubmatch(readLog(), -1) {
			if pid, _ := strconv.Atoi(m[1]); pid > 0 && pid != old.Process.Pid {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("log:\n%s", readLog())
		}
	})
	return &upgradable{cmd: old, file: file, bin: bin, exited: exited, readLog: readLog, waitLog: waitLog}
}
