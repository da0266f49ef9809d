package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startRedis runs a real redis-server on 127.0.5.4 at port (below the
// ephemeral range), without persistence. A missing binary skips loudly,
// except under CI=true, where it fails.
func startRedis(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (CI must install it: apt-get install redis-server)")
		}
		t.Skip("SKIPPING: redis-server is not installed; the twin test needs a real Redis")
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.5.4", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", "127.0.5.4:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			return cmd
		}
		if i == 500 {
			t.Fatalf("redis-server did not start: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeLowPort finds a free port below the ephemeral range on 127.0.5.4.
func freeLowPort(t *testing.T) int {
	for p := 21000 + os.Getpid()%2000; p < 32000; p++ {
		ln, err := net.Listen("tcp", "127.0.5.4:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// Twin balancers sharing affinity through a real Redis (F5, F9): with the
// random algorithm, a client reaching either lands on the same node. Redis
// killed: nothing fails, both keep serving on their local tables. Redis
// back: sharing resumes.
func TestTwinsShareAffinityThroughRedis(t *testing.T) {
	port := freeLowPort(t)
	redis := startRedis(t, port)
	nodes := namedNodes(t, "a", "b", "c", "d")
	config := func(store string) string {
		head := fmt.Sprintf("[store]\npath = %q\nredis = \"redis://127.0.5.4:%d/0\"\n", store, port)
		return e2eConfig(head, "algorithm = \"random\"\naffinity = true", nodes...)
	}
	dir := t.TempDir()
	_, one := runBalancer(t, config(filepath.Join(dir, "one.db")))
	_, two := runBalancer(t, config(filepath.Join(dir, "two.db")))
	client := func(i int) string { return fmt.Sprintf("127.2.%d.%d", i/250, i%250+1) }

	// Learnt on one, used by two after the stated propagation bound (0.5 s).
	learnt := map[string]string{}
	for i := range 100 {
		learnt[client(i)] = askFrom(t, client(i), one)
	}
	time.Sleep(500 * time.Millisecond)
	for from, want := range learnt {
		if got := askFrom(t, from, two); got != want {
			t.Fatalf("client %s: balancer one sent it to %s, balancer two to %s", from, want, got)
		}
	}

	// Redis goes away: every connection still succeeds, known clients stay.
	redis.Process.Kill()
	redis.Wait()
	for i := 100; i < 150; i++ {
		askFrom(t, client(i), one)
		askFrom(t, client(i), two)
	}
	for from, want := range learnt {
		if got := askFrom(t, from, one); got != want {
			t.Fatalf("with Redis down, client %s moved from %s to %s", from, want, got)
		}
	}

	// Redis is back: sharing resumes (the balancers reconnect by themselves).
	startRedis(t, port)
	// Agreement on 8 fresh clients in a row cannot be chance (4^-8).
	deadline := time.Now().Add(20 * time.Second)
	for next := 200; ; next += 8 {
		fresh := map[string]string{}
		for i := next; i < next+8; i++ {
			fresh[client(i)] = askFrom(t, client(i), two)
		}
		time.Sleep(500 * time.Millisecond)
		agreed := 0
		for from, want := range fresh {
			if askFrom(t, from, one) == want {
				agreed++
			}
		}
		if agreed == len(fresh) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sharing did not resume within 20 s of Redis coming back (last round: %d of 8 agreed)", agreed)
		}
	}
}

// askFrom sends one line through addr from the client address from (any
// 127.x.y.z can be bound) and returns the one-line answer.
func askFrom(t *testing.T, from, addr string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("client %s: %v", from, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hi\n")
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("client %s: %v", from, err)
	}
	return strings.TrimSpace(l)
}

// A state change made through one twin's API is in force on the other
// (F9), through a real Redis.
func TestTwinsShareAdministrativeChanges(t *testing.T) {
	port := freeLowPort(t)
	startRedis(t, port)
	nodes := namedNodes(t, "a", "b")
	dir := t.TempDir()
	config := func(name string) string {
		head := fmt.Sprintf("[admin]\nlisten = \"127.0.5.3:0\"\n[store]\npath = %q\nredis = \"redis://127.0.5.4:%d/0\"\n",
			filepath.Join(dir, name+".db"), port)
		return e2eConfig(head, "", nodes...)
	}
	adminOf := func(p *proc) string {
		m := adminAddrRE.FindStringSubmatch(p.stderr())
		if m == nil {
			t.Fatalf("no admin address in:\n%s", p.stderr())
		}
		return "http://" + m[1]
	}
	one, _ := runBalancer(t, config("one"))
	two, twoAddr := runBalancer(t, config("two"))
	req, _ := http.NewRequest("PUT", adminOf(one)+"/api/clusters/c/nodes/a", strings.NewReader(`{"state": "red"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT on balancer one: %v %v", resp, err)
	}
	resp.Body.Close()
	two.waitStderr(t, "administrative change from a twin applied")
	for i := range 4 {
		if got := askFrom(t, "127.0.5.9", twoAddr); got != "b" {
			t.Fatalf("connection %d through balancer two went to %s: a is red on its twin", i, got)
		}
	}
}
