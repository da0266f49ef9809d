package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The dashboard (DESIGN F14, section 3) is one server-rendered page at "/"
// plus two static assets; the page's script then polls the same GET
// endpoints the CLI reads and changes things through the same PUT/POST
// endpoints, so it passes every check the API makes (guard in security.go).
//
// Tokens. With token_file set, a browser cannot attach a bearer token to a
// navigation, and we deliberately give it no ambient credential (no cookie,
// no HTTP Basic): the page's shell and its two assets, which hold no data,
// are served to a request without an Authorization header once its Host
// passes the DNS-rebinding check; the operator types the token into the
// page, which keeps it in sessionStorage (this tab, this origin only) and
// sends "Authorization: Bearer" on each fetch. Every request that reads or
// changes anything therefore carries the token exactly as ctl does, and
// CrossOriginProtection stays in front of every change: a same-origin fetch
// passes it, a cross-site one does not, and a cross-site page has no
// credential to send anyway. Without a token (loopback, the default) "/"
// renders the current state directly.

//go:embed ui/index.html.tmpl ui/app.js ui/style.css
var uiFiles embed.FS

// dashboardTmpl renders the whole page ("page") and the fragment the
// script reloads when listeners, clusters or nodes come or go ("main").
var dashboardTmpl = template.Must(template.New("index.html.tmpl").Funcs(template.FuncMap{
	"bytes":  humanBytes,
	"rate":   humanRate,
	"uptime": humanUptime,
}).ParseFS(uiFiles, "ui/index.html.tmpl"))

// asset is one embedded static file with its validator.
type asset struct {
	ctype string
	data  []byte
	etag  string
}

// assets are the page's script and style sheet, by URL path.
var assets = func() map[string]asset {
	out := map[string]asset{}
	for name, ctype := range map[string]string{"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"} {
		data, err := uiFiles.ReadFile("ui/" + name)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(data)
		out["/assets/"+name] = asset{ctype, data, `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}()

// dashboardPoll is how often the page refreshes its figures; ?poll=MS in
// the page's URL overrides it (the browser tests use a short one).
const dashboardPoll = 2 * time.Second

// pageCSP allows the page nothing but itself: no inline script or style, no
// framing (the buttons must not be clickjacked), no form posts elsewhere.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboardRoutes adds the page, its fragment and its assets to mux.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	mux.Handle("/{$}", methods(map[string]http.HandlerFunc{"GET": s.getDashboard}))
	mux.Handle("/dashboard/main", methods(map[string]http.HandlerFunc{"GET": s.getDashboardMain}))
	mux.Handle("/assets/", methods(map[string]http.HandlerFunc{"GET": serveAsset}))
}

// dashboardGate lets a browser load the data-free shell of the page and its
// assets when a token is required and the request carries none (see the
// comment at the top of this file). Everything else, including a request
// with a foreign Host or with any Authorization header, goes to next (the
// guard), unchanged.
func (s *Server) dashboardGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token == nil || r.Header.Get("Authorization") != "" ||
			r.Method != http.MethodGet && r.Method != http.MethodHead ||
			s.hosts != nil && !s.hosts[strings.ToLower(r.Host)] {
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case r.URL.Path == "/":
			w.Header().Set("WWW-Authenticate", `Bearer realm="protobalance"`)
			s.renderPage(w, r, http.StatusUnauthorized, dashView{Locked: true, TokenRequired: true})
		case assets[r.URL.Path].data != nil:
			serveAsset(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.URL.Path]
	if !ok {
		writeError(w, r, errorf(http.StatusNotFound, "not_found", "no such asset: %s", r.URL.Path))
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.data))
}

// dashView is what the template renders.
type dashView struct {
	// Locked: a token is required and the request brought none; the page
	// is the shell that asks for it.
	Locked        bool
	TokenRequired bool
	PollMS        int
	Status        Status
	Listeners     []Listener
	Clusters      []dashCluster
	ClusterNames  []string
	// Bans is nil when the build or the config has no bans; BansNote then
	// says why, in the API's words.
	Bans     []Ban
	BansNote string
}

// dashCluster is a cluster with what the page links to.
type dashCluster struct {
	Cluster
	Index int
	// Feeds are the listeners pointing at this cluster now.
	Feeds []string
	Nodes []dashNode
}

type dashNode struct {
	Node
	ID         string // element id of the row: "n-CLUSTERINDEX-NODEINDEX"
	FalloverID string // element id of the fall-over node's row, "" = none
}

// view collects everything the page shows.
func (s *Server) view() dashView {
	v := dashView{TokenRequired: s.token != nil, Status: s.status(), Listeners: s.ctl.Listeners()}
	feeds := map[string][]string{}
	for _, l := range v.Listeners {
		feeds[l.Cluster] = append(feeds[l.Cluster], l.Name)
	}
	for ci, c := range s.ctl.Clusters() {
		dc := dashCluster{Cluster: c, Index: ci, Feeds: feeds[c.Name]}
		ids := map[string]string{}
		for ni, n := range c.Nodes {
			ids[n.Name] = "n-" + strconv.Itoa(ci) + "-" + strconv.Itoa(ni)
		}
		for _, n := range c.Nodes {
			dc.Nodes = append(dc.Nodes, dashNode{Node: n, ID: ids[n.Name], FalloverID: ids[n.Fallover]})
		}
		v.Clusters = append(v.Clusters, dc)
		v.ClusterNames = append(v.ClusterNames, c.Name)
	}
	bans, err := s.ctl.Bans()
	switch {
	case err == nil:
		v.Bans = append([]Ban{}, bans...)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnsupported):
		v.BansNote = err.Error()
	default:
		v.BansNote = "bans: " + err.Error()
	}
	return v
}

func (s *Server) getDashboard(w http.ResponseWriter, r *http.Request) {
	s.renderPage(w, r, http.StatusOK, s.view())
}

// getDashboardMain answers the script's request for a fresh "main"
// fragment, after the set of listeners, clusters or nodes changed.
func (s *Server) getDashboardMain(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "main", s.view())
}

func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, v dashView) {
	s.render(w, r, status, "page", v)
}

// render executes one template into a buffer first, so that a template
// error is a clean 500 and not half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, v dashView) {
	v.PollMS = int(dashboardPoll / time.Millisecond)
	var buf bytes.Buffer
	if err := dashboardTmpl.ExecuteTemplate(&buf, name, v); err != nil {
		s.log.Error("admin: dashboard template", "err", err)
		writeError(w, r, fmt.Errorf("dashboard: %w", err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// humanBytes formats a byte count the way app.js does (fmtBytes).
func humanBytes(n any) string {
	var f float64
	switch v := n.(type) {
	case uint64:
		f = float64(v)
	case int64:
		f = float64(v)
	case float64:
		f = v
	}
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(f, 'f', 0, 64) + " B"
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i]
}

// humanRate formats a per-second figure the way app.js does (fmtRate).
func humanRate(f float64) string {
	if f < 10 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 0, 64)
}

// humanUptime formats seconds as "3d 4h", "2h 5m", "4m 10s".
func humanUptime(sec float64) string {
	d := time.Duration(sec) * time.Second
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dm %ds", d/time.Minute, d%time.Minute/time.Second)
}
