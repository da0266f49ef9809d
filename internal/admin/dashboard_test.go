package admin_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardRender is the server-side render: the first answer already
// shows every listener and node with its state, under the page's security
// headers, and the page with its assets stays small.
func TestDashboardRender(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	if _, err := roundTrip(f.listenerAddr("web"), []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if st, body, _ := f.call(t, "PUT", "/api/clusters/B/nodes/b2", `{"state": "yellow"}`); st != 200 {
		t.Fatalf("PUT: %d %s", st, body)
	}
	st, body, hdr := f.call(t, "GET", "/", "")
	if st != 200 || hdr.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %s\n%s", st, hdr.Get("Content-Type"), body)
	}
	page := string(body)
	for node, state := range map[string]string{"a1": "green", "a2": "green", "b1": "green", "b2": "yellow"} {
		re := regexp.MustCompile(`<tr id="n-\d-\d" data-node="` + node + `" data-state="` + state + `"`)
		if !re.MatchString(page) {
			t.Errorf("no row for node %s in state %s", node, state)
		}
	}
	for _, want := range []string{`data-listener="web"`, `data-listener="other"`, `data-cluster="A"`,
		`<option selected>A</option>`, `data-token="none"`, `data-affinity="false"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	csp := hdr.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || hdr.Get("X-Frame-Options") != "DENY" {
		t.Errorf("security headers: CSP %q, X-Frame-Options %q", csp, hdr.Get("X-Frame-Options"))
	}
	size := len(body)
	for path, ctype := range map[string]string{"/assets/app.js": "text/javascript; charset=utf-8", "/assets/style.css": "text/css; charset=utf-8"} {
		st, body, hdr := f.call(t, "GET", path, "")
		if st != 200 || hdr.Get("Content-Type") != ctype || hdr.Get("ETag") == "" {
			t.Errorf("GET %s: %d %q etag %q", path, st, hdr.Get("Content-Type"), hdr.Get("ETag"))
		}
		size += len(body)
		if st, _, _ := f.call(t, "GET", path, "", "If-None-Match", hdr.Get("ETag")); st != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", path, st)
		}
	}
	t.Logf("page with assets: %d bytes", size)
	if size > 100<<10 {
		t.Errorf("page with assets is %d bytes, want under 100 KiB", size)
	}

	st, body, _ = f.call(t, "GET", "/dashboard/main", "")
	if st != 200 || strings.Contains(string(body), "<html") || !strings.Contains(string(body), `data-node="b2" data-state="yellow"`) {
		t.Errorf("GET /dashboard/main: %d\n%s", st, body)
	}
	st, body, hdr = f.call(t, "POST", "/", "")
	wantError(t, 405, body, hdr, st, "method_not_allowed", "not allowed")
	st, body, hdr = f.call(t, "GET", "/assets/nope.js", "")
	wantError(t, 404, body, hdr, st, "not_found", "no such asset")
	st, body, hdr = f.call(t, "GET", "/", "", "Host", "evil.example:"+itoa(f.adm.Addr().Port()))
	wantError(t, 403, body, hdr, st, "forbidden", "DNS rebinding")
}

// TestDashboardToken: with a token file, a request without a token gets
// only the data-free shell and the assets; every figure and every change
// still needs the bearer token, and the Host check comes first.
func TestDashboardToken(t *testing.T) {
	f := newFixture(t, fixtureOpts{token: "s3cret-t0ken"})
	bad := "Bearer wrong"
	st, body, hdr := f.call(t, "GET", "/", "", "Authorization", "")
	page := string(body)
	if st != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") ||
		!strings.Contains(page, `data-token="required"`) || !strings.Contains(page, `id="login"`) ||
		strings.Contains(page, "data-node=") || strings.Contains(page, f.nodes["a1"].addr()) {
		t.Fatalf("GET / without token: %d %s\n%s", st, hdr.Get("Content-Type"), page)
	}
	if st, _, _ := f.call(t, "GET", "/assets/app.js", "", "Authorization", ""); st != 200 {
		t.Errorf("GET /assets/app.js without token: %d", st)
	}
	for _, c := range []struct{ method, path, body, auth string }{
		{"GET", "/dashboard/main", "", ""},
		{"GET", "/api/clusters", "", ""},
		{"GET", "/", "", bad},
		{"GET", "/assets/app.js", "", bad},
		{"PUT", "/api/clusters/A/nodes/a1", `{"state": "red"}`, ""},
	} {
		st, body, hdr := f.call(t, c.method, c.path, c.body, "Authorization", c.auth)
		wantError(t, 401, body, hdr, st, "unauthorized", "missing or wrong token")
	}
	st, body, hdr = f.call(t, "GET", "/", "", "Authorization", "", "Host", "evil.example:"+itoa(f.adm.Addr().Port()))
	wantError(t, 403, body, hdr, st, "forbidden", "DNS rebinding")

	st, body, _ = f.call(t, "GET", "/dashboard/main", "")
	if st != 200 || !strings.Contains(string(body), `data-node="a1" data-state="green"`) {
		t.Errorf("GET /dashboard/main with token: %d\n%s", st, body)
	}
	st, body, _ = f.call(t, "GET", "/", "")
	if st != 200 || !strings.Contains(string(body), `data-node="b2"`) {
		t.Errorf("GET / with token: %d\n%s", st, body)
	}
	// A cross-site change is refused even with the token (the page adds no
	// ambient credential, and the API's protection is unchanged).
	st, body, hdr = f.call(t, "PUT", "/api/clusters/A/nodes/a1", `{"state": "red"}`, "Sec-Fetch-Site", "cross-site")
	wantError(t, 403, body, hdr, st, "forbidden", "cross-site request refused")
}
