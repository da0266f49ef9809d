package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Passive FTP through the balancer with real vsftpd servers and real curl
// clients (F11, F5, F7). Everything binds 127.0.13.x: the balancer is
// 127.0.13.1, the two vsftpd nodes 127.0.13.2 and .3, clients .10 and up.
// docs/ftp.md is the recipe this test follows.

const ftpBalancerIP = "127.0.13.1"

var ftpNodeIPs = map[string]string{"n1": "127.0.13.2", "n2": "127.0.13.3"}

// ftpPorts: the control port (the same on the balancer and both nodes), then
// the passive range shared by the balancer's data listener and every node.
type ftpPorts struct{ ctrl, lo, hi int }

const ftpPasvPorts = 10

// needFTPTool finds a binary the FTP test needs: missing, it skips loudly,
// except under CI=true, where it fails.
func needFTPTool(t *testing.T, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (CI must install it: apt-get install vsftpd curl)", name)
	}
	t.Skipf("SKIPPING the passive FTP test: %s is not installed (apt-get install vsftpd curl)", name)
	return ""
}

// ftpPortBlock finds 1+ftpPasvPorts consecutive free ports in a random block
// of 20000-29999, free on the balancer's address and on both nodes'.
func ftpPortBlock(t *testing.T) ftpPorts {
	t.Helper()
	ips := []string{ftpBalancerIP, ftpNodeIPs["n1"], ftpNodeIPs["n2"]}
	for range 100 {
		lo := 20000 + rand.IntN(10000-ftpPasvPorts-1)
		var held []net.Listener
		ok := true
		for p := lo; ok && p <= lo+ftpPasvPorts; p++ {
			for _, ip := range ips {
				ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
				if err != nil {
					ok = false
					break
				}
				held = append(held, ln)
			}
		}
		for _, ln := range held {
			ln.Close()
		}
		if ok {
			return ftpPorts{ctrl: lo, lo: lo + 1, hi: lo + ftpPasvPorts}
		}
	}
	t.Fatal("no free block of ports for FTP in 20000-29999")
	return ftpPorts{}
}

// vsftpdConfig is one node's configuration: standalone on its own address,
// anonymous with uploads into pub/, announcing the balancer's address and
// the shared passive range. pasv_promiscuous stays NO (the default): the
// balancer connects to a node from one source address for both control and
// data connections, which is what vsftpd checks.
const vsftpdConfig = `listen=YES
listen_ipv6=NO
listen_address=%s
listen_port=%d
background=NO
anonymous_enable=YES
local_enable=NO
anon_root=%s
write_enable=YES
anon_upload_enable=YES
pasv_enable=YES
pasv_address=%s
pasv_min_port=%d
pasv_max_port=%d
seccomp_sandbox=NO
secure_chroot_dir=%s
xferlog_enable=YES
vsftpd_log_file=%s
log_ftp_protocol=YES
`

// ftpNode is a running vsftpd: its pub directory (uploads land there) and
// its log.
type ftpNode struct {
	name, pub, log string
}

// ftpSeed is what every node serves in pub/ (plus node.txt, naming it).
var ftpSeed = map[string][]byte{
	"zero.bin":  {},
	"one.txt":   []byte("x"),
	"mid.txt":   bytes.Repeat([]byte("passive ftp\r\n"), 300),
	"big.bin":   seedBytes(1, 1<<20+13),
	"small.bin": seedBytes(2, 4097),
}

func seedBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// startVsftpd runs one vsftpd node, seeded, until the test ends (killed by
// its PID), and waits until its control port accepts.
func startVsftpd(t *testing.T, bin, name string, ports ftpPorts) *ftpNode {
	t.Helper()
	ip := ftpNodeIPs[name]
	dir := t.TempDir()
	// The session process chroots into root/ and drops to the ftp user:
	// root/ must be readable by it but not writable (vsftpd refuses a
	// writable anonymous root); pub/ is the ftp user's, for uploads.
	root := filepath.Join(dir, "root")
	pub := filepath.Join(root, "pub")
	empty := filepath.Join(dir, "empty")
	for _, d := range []string{root, pub, filepath.Join(pub, "empty"), empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	u, err := user.Lookup("ftp")
	if err != nil {
		t.Fatalf("no ftp user (the vsftpd package creates it): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(pub, uid, gid); err != nil {
		t.Fatal(err)
	}
	for f, b := range ftpSeed {
		if err := os.WriteFile(filepath.Join(pub, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pub, "node.txt"), []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &ftpNode{name: name, pub: pub, log: filepath.Join(dir, "vsftpd.log")}
	conf := filepath.Join(dir, "vsftpd.conf")
	text := fmt.Sprintf(vsftpdConfig, ip, ports.ctrl, root, ftpBalancerIP, ports.lo, ports.hi, empty, n.log)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf)
	out := &syncWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	output := func() string {
		out.mu.Lock()
		defer out.mu.Unlock()
		return out.w.(*bytes.Buffer).String()
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(n.log)
			t.Logf("vsftpd %s output:\n%s\nlog (last 4 KiB):\n%s", name, output(), tail(b, 4096))
		}
	})
	addr := net.JoinHostPort(ip, strconv.Itoa(ports.ctrl))
	for i := 0; ; i++ {
		select {
		case <-done:
			t.Fatalf("vsftpd %s exited at start: %s\n%s", name, cmd.ProcessState, output())
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return n
		}
		if i == 500 {
			t.Fatalf("vsftpd %s does not accept on %s: %v\n%s", name, addr, err, output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// ftpBalancerConfig: the control listener and cluster, and the data
// listener on the passive range with its port-less cluster; cluster holds
// the lines both clusters share (algorithm, affinity).
func ftpBalancerConfig(ports ftpPorts, cluster, dataPath string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\ndata_path = %q\n", dataPath)
	fmt.Fprintf(&b, "[admin]\nlisten = \"%s:0\"\n", ftpBalancerIP)
	fmt.Fprintf(&b, "[[listener]]\nname = \"ftp\"\nbind = \"%s:%d\"\ncluster = \"ftp\"\n", ftpBalancerIP, ports.ctrl)
	fmt.Fprintf(&b, "[[listener]]\nname = \"ftp-data\"\nbind = \"%s:%d-%d\"\ncluster = \"ftp-data\"\n", ftpBalancerIP, ports.lo, ports.hi)
	for _, c := range []string{"ftp", "ftp-data"} {
		fmt.Fprintf(&b, "[[cluster]]\nname = %q\n%s\n", c, cluster)
		for _, n := range []string{"n1", "n2"} {
			addr := ftpNodeIPs[n]
			if c == "ftp" {
				addr = net.JoinHostPort(addr, strconv.Itoa(ports.ctrl))
			}
			fmt.Fprintf(&b, "[[cluster.node]]\nname = %q\naddress = %q\n", n, addr)
		}
	}
	return b.String()
}

// ftpSetup is two vsftpd nodes behind a running balancer.
type ftpSetup struct {
	curl  string
	ctrl  string // the balancer's control address
	admin string // http://host:port of its admin API
	nodes map[string]*ftpNode
}

// newFTPSetup starts the nodes and a balancer on the given data path.
func newFTPSetup(t *testing.T, cluster, dataPath string) *ftpSetup {
	t.Helper()
	vsftpd := needFTPTool(t, "vsftpd")
	curl := needFTPTool(t, "curl")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the passive FTP test runs vsftpd as root (anonymous chroot)")
		}
		t.Skip("SKIPPING the passive FTP test: vsftpd's anonymous chroot needs root")
	}
	ports := ftpPortBlock(t)
	s := &ftpSetup{curl: curl, nodes: map[string]*ftpNode{}}
	for _, n := range []string{"n1", "n2"} {
		s.nodes[n] = startVsftpd(t, vsftpd, n, ports)
	}
	p, _ := runBalancer(t, ftpBalancerConfig(ports, cluster, dataPath))
	p.waitStderr(t, "admin API listening")
	m := adminAddrRE.FindStringSubmatch(p.stderr())
	if m == nil {
		t.Fatalf("no admin address in:\n%s", p.stderr())
	}
	s.admin = "http://" + m[1]
	s.ctrl = net.JoinHostPort(ftpBalancerIP, strconv.Itoa(ports.ctrl))
	return s
}

// curlFTP runs curl from client address from on path (under the balancer's
// ftp:// URL) and returns what it wrote to stdout. strict makes curl use
// PASV and the address the server announces (pasv_address); otherwise it
// uses EPSV, which names only a port.
func (s *ftpSetup) curlFTP(from, path string, strict bool, args ...string) ([]byte, error) {
	a := []string{"-sS", "--max-time", "20", "--ftp-pasv", "--interface", from}
	if strict {
		a = append(a, "--disable-epsv", "--no-ftp-skip-pasv-ip")
	}
	a = append(a, args...)
	a = append(a, "ftp://"+s.ctrl+"/"+path)
	cmd := exec.Command(s.curl, a...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("curl %s: %v: %s", strings.Join(a, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// ftpClientRun is what one client did: the node its sessions reached (by
// node.txt) and the files it uploaded.
type ftpClientRun struct {
	ip      string
	node    string
	uploads map[string][]byte
}

// workload is one client's sequence of sessions: downloads checked against
// the seed, uploads, a listing of an empty directory, a zero-byte file
// both ways; every other session uses PASV with the announced address.
func (s *ftpSetup) workload(ip, dir string) (*ftpClientRun, error) {
	run := &ftpClientRun{ip: ip, uploads: map[string][]byte{}}
	strict := false
	next := func() bool { strict = !strict; return strict }
	whoami := func() (string, error) {
		b, err := s.curlFTP(ip, "pub/node.txt", next())
		return string(b), err
	}
	get := func(f string) error {
		b, err := s.curlFTP(ip, "pub/"+f, next())
		if err != nil {
			return err
		}
		if !bytes.Equal(b, ftpSeed[f]) {
			return fmt.Errorf("client %s: %s: got %d bytes, not the seed's %d", ip, f, len(b), len(ftpSeed[f]))
		}
		return nil
	}
	put := func(size int) error {
		name := fmt.Sprintf("up-%s-%d", ip, len(run.uploads))
		body := seedBytes(rand.Uint64(), size)
		local := filepath.Join(dir, name)
		if err := os.WriteFile(local, body, 0o644); err != nil {
			return err
		}
		if _, err := s.curlFTP(ip, "pub/"+name, next(), "-T", local); err != nil {
			return err
		}
		run.uploads[name] = body
		return nil
	}
	var err error
	if run.node, err = whoami(); err != nil {
		return nil, err
	}
	steps := []func() error{
		func() error { return get("big.bin") },
		func() error { return put(65536 + rand.IntN(4096)) },
		func() error {
			b, err := s.curlFTP(ip, "pub/empty/", next())
			if err == nil && len(b) != 0 {
				err = fmt.Errorf("client %s: listing of the empty directory: %q", ip, b)
			}
			return err
		},
		func() error { return get("zero.bin") },
		func() error { return put(0) },
		func() error { return get("mid.txt") },
		func() error { return get("one.txt") },
		func() error { return put(1 + rand.IntN(3000)) },
		func() error { return get("small.bin") },
		func() error {
			again, err := whoami()
			if err == nil && again != run.node {
				err = fmt.Errorf("client %s: first session on %s, last on %s", ip, run.node, again)
			}
			return err
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return run, nil
}

// clients runs the workload from n client addresses at once (each one's
// sessions in turn) and checks where their uploads landed. It returns the
// node of each client.
func (s *ftpSetup) clients(t *testing.T, n int) map[string]string {
	t.Helper()
	dir := t.TempDir()
	runs := make([]*ftpClientRun, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { runs[i], errs[i] = s.workload(fmt.Sprintf("127.0.13.%d", 10+i), dir) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	nodeOf := map[string]string{}
	for _, r := range runs {
		node, ok := s.nodes[r.node]
		if !ok {
			t.Fatalf("client %s: node.txt said %q", r.ip, r.node)
		}
		nodeOf[r.ip] = r.node
		for name, body := range r.uploads {
			got, err := os.ReadFile(filepath.Join(node.pub, name))
			if err != nil {
				t.Fatalf("client %s's session was on %s, but its upload is not there: %v", r.ip, r.node, err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("client %s: upload %s on %s: %d bytes, sent %d", r.ip, name, r.node, len(got), len(body))
			}
			for other, on := range s.nodes {
				if other != r.node {
					if _, err := os.Stat(filepath.Join(on.pub, name)); err == nil {
						t.Fatalf("client %s's upload %s is on %s too", r.ip, name, other)
					}
				}
			}
		}
	}
	t.Logf("clients per node: %v", perNode(nodeOf))
	return nodeOf
}

func perNode(nodeOf map[string]string) map[string]int {
	n := map[string]int{}
	for _, node := range nodeOf {
		n[node]++
	}
	return n
}

// TestFTPPassiveAffinityGroup: the control and data clusters share one
// client table (affinity_group), so a round-robin spreads clients over both
// nodes and each client's data connections follow its control connection.
// Then F7 on a live session: its node turned yellow still takes the
// session's data connections; a new client goes to the other node; red
// closes the session's control connection. (On the event loops; the
// ip-hash test runs on the goroutine data path.)
func TestFTPPassiveAffinityGroup(t *testing.T) {
	s := newFTPSetup(t, "algorithm = \"round-robin\"\naffinity = true\naffinity_group = \"ftp\"", "loop")
	if spread := perNode(s.clients(t, 6)); spread["n1"] == 0 || spread["n2"] == 0 {
		t.Fatalf("round-robin over 6 clients left a node without any: %v", spread)
	}

	// A session held open by hand, from a new client.
	f := dialRawFTP(t, "127.0.13.20", s.ctrl)
	home := string(f.retr(t, "pub/node.txt"))
	other := map[string]string{"n1": "n2", "n2": "n1"}[home]
	for _, c := range []string{"ftp", "ftp-data"} {
		s.setState(t, c, home, "yellow")
	}
	if got := string(f.retr(t, "pub/node.txt")); got != home {
		t.Fatalf("after %s turned yellow, the open session's data connection reached %s", home, got)
	}
	if got := f.retr(t, "pub/big.bin"); !bytes.Equal(got, ftpSeed["big.bin"]) {
		t.Fatalf("open session on yellow %s: big.bin came back with %d bytes", home, len(got))
	}
	b, err := s.curlFTP("127.0.13.21", "pub/node.txt", true)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != other {
		t.Fatalf("a new client went to %s while %s is yellow", b, home)
	}
	s.setState(t, "ftp", home, "red")
	f.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := f.r.ReadLine(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("control connection on red %s still open: %q, %v", home, line, err)
	}
	f.c.Close()
	// The client comes back: its record follows it to the other node.
	b, err = s.curlFTP("127.0.13.20", "pub/node.txt", true)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != other {
		t.Fatalf("client of red %s came back on %s", home, b)
	}
}

// TestFTPPassiveIPHash: ip-hash over the same node names with the same
// hash_key agrees for control and data connections without any table; with
// a node yellow in both clusters, its clients' new sessions agree on the
// stand-in.
func TestFTPPassiveIPHash(t *testing.T) {
	s := newFTPSetup(t, "algorithm = \"ip-hash\"\nhash_key = \"ftp\"", "goroutine")
	nodeOf := s.clients(t, 6)
	client, home := "127.0.13.10", nodeOf["127.0.13.10"]
	for _, c := range []string{"ftp", "ftp-data"} {
		s.setState(t, c, home, "yellow")
	}
	for _, strict := range []bool{true, false} {
		b, err := s.curlFTP(client, "pub/big.bin", strict)
		if err != nil {
			t.Fatalf("%s yellow in both clusters: %v", home, err)
		}
		if !bytes.Equal(b, ftpSeed["big.bin"]) {
			t.Fatalf("%s yellow in both clusters: big.bin came back with %d bytes", home, len(b))
		}
		if b, err = s.curlFTP(client, "pub/node.txt", strict); err != nil || string(b) == home {
			t.Fatalf("%s yellow in both clusters: client %s's new session on %q (%v)", home, client, b, err)
		}
	}
}

func (s *ftpSetup) setState(t *testing.T, cluster, node, state string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", s.admin+"/api/clusters/"+cluster+"/nodes/"+node,
		strings.NewReader(`{"state": "`+state+`"}`))
	req.Header.Set("Content-Type", "application/json")
	client := http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s/%s state %s: %s %s", cluster, node, state, resp.Status, body)
	}
}

// rawFTP is a passive FTP session spoken by hand, so that it can stay open
// while node states change.
type rawFTP struct {
	ip string
	c  net.Conn
	r  *textproto.Reader
	w  *textproto.Writer
}

var pasvRE = regexp.MustCompile(`\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)`)

func dialRawFTP(t *testing.T, from, addr string) *rawFTP {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tc := textproto.NewConn(c)
	f := &rawFTP{ip: from, c: c, r: &tc.Reader, w: &tc.Writer}
	f.expect(t, 220)
	f.cmd(t, 331, "USER anonymous")
	f.cmd(t, 230, "PASS test@")
	f.cmd(t, 200, "TYPE I")
	return f
}

func (f *rawFTP) expect(t *testing.T, code int) string {
	t.Helper()
	f.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, msg, err := f.r.ReadResponse(code)
	if err != nil {
		t.Fatalf("client %s: expected %d: %v", f.ip, code, err)
	}
	return msg
}

func (f *rawFTP) cmd(t *testing.T, code int, line string) string {
	t.Helper()
	if err := f.w.PrintfLine("%s", line); err != nil {
		t.Fatal(err)
	}
	return f.expect(t, code)
}

// retr downloads path over a passive data connection to the announced
// address, from the session's client address.
func (f *rawFTP) retr(t *testing.T, path string) []byte {
	t.Helper()
	m := pasvRE.FindStringSubmatch(f.cmd(t, 227, "PASV"))
	if m == nil {
		t.Fatalf("client %s: no address in the PASV reply", f.ip)
	}
	host := strings.Join(m[1:5], ".")
	if host != ftpBalancerIP {
		t.Fatalf("PASV announced %s, not the balancer (pasv_address)", host)
	}
	hi, _ := strconv.Atoi(m[5])
	lo, _ := strconv.Atoi(m[6])
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(f.ip)}, Timeout: 10 * time.Second}
	dc, err := d.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(hi*256+lo)))
	if err != nil {
		t.Fatalf("client %s: data connection: %v", f.ip, err)
	}
	defer dc.Close()
	f.cmd(t, 150, "RETR "+path)
	dc.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(dc)
	if err != nil {
		t.Fatalf("client %s: RETR %s: %v", f.ip, path, err)
	}
	f.expect(t, 226)
	return b
}
