package admin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/config"
)

func TestDNSRebindingRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	port := f.adm.Addr().Port()
	for _, host := range []string{"evil.example", "evil.example:" + itoa(port), "127.0.7.1:1", "localhost:1"} {
		st, body, hdr := f.call(t, "GET", "/api/clusters", "", "Host", host)
		wantError(t, 403, body, hdr, st, "forbidden", "does not name the admin server")
	}
	for _, host := range []string{"127.0.7.1:" + itoa(port), "localhost:" + itoa(port), "LOCALHOST:" + itoa(port),
		"127.0.0.1:" + itoa(port), "[::1]:" + itoa(port)} {
		if st, body, _ := f.call(t, "GET", "/api/clusters", "", "Host", host); st != 200 {
			t.Errorf("Host %s: %d %s", host, st, body)
		}
	}
	if !strings.Contains(f.logs.String(), "foreign Host refused") {
		t.Error("refusal not logged")
	}
}

func TestCrossSiteRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	self := "http://" + f.adm.Addr().String()
	for _, h := range [][]string{
		{"Origin", "http://evil.example"},
		{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Origin", "null"},
	} {
		st, body, hdr := f.call(t, "PUT", "/api/clusters/A/nodes/a1", `{"state":"red"}`, h...)
		wantError(t, 403, body, hdr, st, "forbidden", "cross-site request refused")
	}
	if n, _ := f.srv.Cluster("A").Node("a1"); n.State().String() != "green" {
		t.Fatal("a cross-site request changed a node")
	}
	// The admin page itself, and tools that send neither header, may.
	for _, h := range [][]string{
		{"Origin", self, "Sec-Fetch-Site", "same-origin"},
		{"Origin", self},
		{"Sec-Fetch-Site", "none"},
		{},
	} {
		if st, body, _ := f.call(t, "PUT", "/api/clusters/A/nodes/a1", `{"weight":1}`, h...); st != 200 {
			t.Errorf("%v: %d %s", h, st, body)
		}
	}
	// Reads are not state-changing (and a cross-site page cannot read them).
	if st, _, _ := f.call(t, "GET", "/api/clusters", "", "Origin", "http://evil.example"); st != 200 {
		t.Errorf("cross-site GET: %d", st)
	}
}

func TestToken(t *testing.T) {
	f := newFixture(t, fixtureOpts{token: "s3cret-token"})
	for _, auth := range []string{"", "Bearer wrong", "Basic czNjcmV0LXRva2Vu", "Bearer s3cret-token-and-more", "Bearer"} {
		for _, path := range []string{"/api/clusters", "/metrics"} {
			st, body, hdr := f.call(t, "GET", path, "", "Authorization", auth)
			wantError(t, 401, body, hdr, st, "unauthorized", "missing or wrong token")
			if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", hdr.Get("WWW-Authenticate"))
			}
		}
	}
	// The file held "  s3cret-token\n": surrounding whitespace is trimmed.
	for _, auth := range []string{"Bearer s3cret-token", "bearer s3cret-token"} {
		if st, body, _ := f.call(t, "GET", "/metrics", "", "Authorization", auth); st != 200 {
			t.Errorf("%q: %d %s", auth, st, body)
		}
	}
	if st, _, _ := f.call(t, "PUT", "/api/clusters/A/nodes/a1", `{"weight":2}`); st != 200 {
		t.Errorf("PUT with token: %d", st)
	}
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n\t"), 0o600)
	half := filepath.Join(dir, "cert.pem")
	os.WriteFile(half, []byte("not a certificate"), 0o600)
	for _, c := range []struct {
		cfg  config.Admin
		want string
	}{
		// None of these binds: New decides before any socket is opened.
		{config.Admin{Listen: "0.0.0.0:9900"}, "not a loopback address: set [admin] token_file"},
		{config.Admin{Listen: ":9900"}, "not a loopback address"},
		{config.Admin{Listen: "[::]:9900"}, "not a loopback address"},
		{config.Admin{Listen: "192.0.2.10:9900"}, "not a loopback address"},
		{config.Admin{Listen: "admin.example.com:9900"}, "not a loopback address"},
		{config.Admin{Listen: "127.0.7.1:0", TokenFile: empty}, "empty token"},
		{config.Admin{Listen: "127.0.7.1:0", TokenFile: filepath.Join(dir, "missing")}, "no such file"},
		{config.Admin{Listen: "127.0.7.1:0", TLSCert: half, TLSKey: half}, "tls_cert/tls_key"},
		{config.Admin{Listen: ""}, "no listen address"},
	} {
		_, err := admin.New(c.cfg, nopController{}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

func TestStartBindError(t *testing.T) {
	ln, err := net.Listen("tcp", adminIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := admin.New(config.Admin{Listen: ln.Addr().String()}, nopController{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Start on a busy port: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	s, err := admin.New(config.Admin{Listen: adminIP + ":0", TLSCert: certFile, TLSKey: keyFile}, nopController{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s", s.URL())
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(s.URL() + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"version": "nop"`) {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	// Plain HTTP to the TLS port gets nowhere.
	if resp, err := http.Get("http://" + s.Addr().String() + "/api/status"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered on the TLS port")
		}
	}
}

// selfSigned writes a certificate for 127.0.7.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "protobalance test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP(adminIP)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
