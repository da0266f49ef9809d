// Package admin serves the management HTTP API of a running balancer:
// JSON and XML documents, node and listener changes, reloads, and the
// Prometheus /metrics. It talks to the balancer only through a
// Controller, and owns the HTTP server, its routes, its security checks
// (see security.go) and the metric definitions (metrics.go).
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/protobalance/protobalance/internal/config"
)

// Server timeouts: an operator's tool answers small documents quickly;
// these bound what a slow or idle client can hold.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
)

// Server is the admin HTTP server. Create it with New, bind it with Start,
// stop it with Shutdown. Its methods are safe for concurrent use.
type Server struct {
	cfg  config.Admin
	ctl  Controller
	log  *slog.Logger
	tls  *tls.Config // nil = plain HTTP
	http *http.Server

	token []byte          // nil = no token required
	hosts map[string]bool // accepted Host headers (set by Start); nil = any

	mu   sync.Mutex
	ln   net.Listener
	done chan struct{} // closed when the serving goroutine ends
}

// New checks cfg and prepares a server without binding: a listen address
// off loopback without token_file, an unreadable or empty token file, or
// an unloadable TLS key pair are errors. cfg.Listen must not be "" (the
// caller skips the admin server then). log may be nil.
func New(cfg config.Admin, ctl Controller, log *slog.Logger) (*Server, error) {
	if ctl == nil {
		return nil, errors.New("admin: no controller")
	}
	if cfg.Listen == "" {
		return nil, errors.New("admin: no listen address")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, ctl: ctl, log: log}
	need, err := tokenRequired(cfg.Listen, cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	if need {
		if s.token, err = readToken(cfg.TokenFile); err != nil {
			return nil, err
		}
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("admin tls_cert/tls_key: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.http = &http.Server{
		Handler:           s.dashboardGate(s.guard(s.routes())),
		TLSConfig:         s.tls,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Start binds the listen address and serves in the background. It returns
// the bind error, if any; it may be called once.
func (s *Server) Start() error { return s.StartWith(nil) }

// StartWith is Start binding with listen ("tcp", [admin] listen) in place
// of net.Listen when listen is not nil: `protobalance run` passes
// tableflip's so the admin socket is handed over at a binary upgrade too.
func (s *Server) StartWith(listen func(network, addr string) (net.Listener, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("admin: already started")
	}
	if listen == nil {
		listen = net.Listen
	}
	ln, err := listen("tcp", s.cfg.Listen)
	if err == nil {
		if _, ok := ln.Addr().(*net.TCPAddr); !ok {
			ln.Close()
			err = fmt.Errorf("got a %T listener, want TCP", ln)
		}
	}
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", s.cfg.Listen, err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	s.hosts = allowedHosts(s.cfg.Listen, addr, s.tls != nil)
	s.ln = ln
	s.done = make(chan struct{})
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	s.log.Info("admin API listening", "addr", addr.String(), "tls", s.tls != nil, "token", s.token != nil)
	return nil
}

// Addr is the bound address (resolving port 0); invalid before Start.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return netip.AddrPort{}
	}
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// URL is the base URL of the API ("http://127.0.0.1:9900").
func (s *Server) URL() string {
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	return scheme + "://" + s.Addr().String()
}

// Shutdown stops accepting, waits for requests in flight until ctx is done,
// then closes what remains; it returns when the serving goroutine has
// ended. Calling it before Start, or twice, is harmless.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	<-done
	return err
}

// routes maps each path to its handlers by method; a known path with
// another method answers 405 with Allow, an unknown path 404, both with
// an error document.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, byMethod map[string]http.HandlerFunc) {
		mux.Handle(pattern, methods(byMethod))
	}
	route("/api/status", map[string]http.HandlerFunc{"GET": s.getStatus})
	route("/api/clusters", map[string]http.HandlerFunc{"GET": s.getClusters})
	route("/api/clusters/{cluster}", map[string]http.HandlerFunc{"GET": s.getCluster})
	route("/api/clusters/{cluster}/nodes", map[string]http.HandlerFunc{"POST": s.postNode})
	route("/api/clusters/{cluster}/nodes/{node}", map[string]http.HandlerFunc{
		"GET": s.getNode, "PUT": s.putNode, "DELETE": s.deleteNode})
	route("/api/listeners", map[string]http.HandlerFunc{"GET": s.getListeners})
	route("/api/listeners/{listener}", map[string]http.HandlerFunc{"GET": s.getListener, "PUT": s.putListener})
	route("/api/reload", map[string]http.HandlerFunc{"POST": s.postReload})
	route("/api/affinity/{ip}", map[string]http.HandlerFunc{"GET": s.getAffinity, "DELETE": s.deleteAffinity})
	route("/api/bans", map[string]http.HandlerFunc{"GET": s.getBans})
	route("/api/bans/{ip}", map[string]http.HandlerFunc{"DELETE": s.deleteBan})
	route("/metrics", map[string]http.HandlerFunc{"GET": s.getMetrics})
	s.dashboardRoutes(mux) // "/", "/dashboard/main", "/assets/" (dashboard.go)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errorf(http.StatusNotFound, "not_found", "no such endpoint: %s %s (see docs/admin.md)", r.Method, r.URL.Path))
	})
	return mux
}

// methods dispatches by method; GET also serves HEAD.
func methods(byMethod map[string]http.HandlerFunc) http.Handler {
	allow := ""
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE"} {
		if byMethod[m] != nil || m == "HEAD" && byMethod["GET"] != nil {
			if allow != "" {
				allow += ", "
			}
			allow += m
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := r.Method
		if m == "HEAD" {
			m = "GET"
		}
		h := byMethod[m]
		if h == nil {
			w.Header().Set("Allow", allow)
			writeError(w, r, errorf(http.StatusMethodNotAllowed, "method_not_allowed",
				"method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
			return
		}
		h(w, r)
	})
}
