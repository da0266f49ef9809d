package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Security model (docs/admin.md, "Security"):
//   - Off loopback the server refuses to start without a token file
//     (tokenRequired); with a token file, on loopback too, every request
//     needs "Authorization: Bearer TOKEN", compared in constant time.
//   - DNS rebinding: a page served from evil.example whose name is
//     re-pointed at 127.0.0.1 reaches us with "Host: evil.example". The Host
//     header must name the admin address: its configured IP or name, or for
//     a loopback listener localhost, 127.0.0.1 or [::1], with the bound port.
//   - Cross-site requests: a page elsewhere can make the browser send a
//     POST to us (no preflight for simple forms). Non-GET requests whose
//     Sec-Fetch-Site is not same-origin/none, or whose Origin does not match
//     the Host, are refused (net/http's CrossOriginProtection).

// isLoopbackHost reports whether host (IP literal, "" for all addresses,
// or a name) certainly names only loopback addresses.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// tokenRequired decides whether the admin server on listen may run
// without a token: on a loopback address it may (a token file still makes
// it required); anywhere else (all addresses, a public IP, a name that
// could resolve anywhere) a token file is mandatory and its absence is an
// error naming the fix.
func tokenRequired(listen, tokenFile string) (bool, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, fmt.Errorf("admin listen %q: %v", listen, err)
	}
	if tokenFile != "" {
		return true, nil
	}
	if !isLoopbackHost(host) {
		return false, fmt.Errorf("admin listen %q is not a loopback address: set [admin] token_file "+
			"(a file holding the API token), or listen on 127.0.0.1", listen)
	}
	return false, nil
}

// readToken reads a token file: surrounding whitespace trimmed, empty
// refused.
func readToken(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("admin token_file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return nil, fmt.Errorf("admin token_file %s: empty token", path)
	}
	return []byte(tok), nil
}

// checkToken reports whether the request carries the bearer token.
// Both sides are hashed first so the comparison takes the same time
// whatever the length of the guess.
func checkToken(r *http.Request, want []byte) bool {
	auth := r.Header.Get("Authorization")
	scheme, got, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	a := sha256.Sum256([]byte(strings.TrimSpace(got)))
	b := sha256.Sum256(want)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// allowedHosts lists the Host header values that name the admin server
// bound at addr, configured as listen. nil means any Host is accepted
// (a wildcard listen, where the token is the protection).
func allowedHosts(listen string, addr netip.AddrPort, tls bool) map[string]bool {
	host, _, _ := net.SplitHostPort(listen)
	if a, err := netip.ParseAddr(host); host == "" || err == nil && a.IsUnspecified() {
		return nil
	}
	port := strconv.Itoa(int(addr.Port()))
	out := map[string]bool{}
	add := func(h string) {
		out[strings.ToLower(net.JoinHostPort(h, port))] = true
		if tls && port == "443" || !tls && port == "80" {
			out[strings.ToLower(bracket(h))] = true
		}
	}
	add(host)
	add(addr.Addr().Unmap().String())
	if isLoopbackHost(host) {
		add("localhost")
		add("127.0.0.1")
		add("::1")
	}
	return out
}

func bracket(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// guard wraps the API with the checks above, in order: Host, token, then
// cross-origin protection for state-changing methods.
func (s *Server) guard(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("admin: cross-site request refused", "remote", r.RemoteAddr, "method", r.Method,
			"path", r.URL.Path, "origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		writeError(w, r, errorf(http.StatusForbidden, "forbidden",
			"cross-site request refused: Origin %q / Sec-Fetch-Site %q does not match the admin address",
			r.Header.Get("Origin"), r.Header.Get("Sec-Fetch-Site")))
	}))
	protected := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.hosts != nil && !s.hosts[strings.ToLower(r.Host)] {
			s.log.Warn("admin: foreign Host refused (DNS rebinding?)", "remote", r.RemoteAddr, "host", r.Host)
			writeError(w, r, errorf(http.StatusForbidden, "forbidden",
				"Host %q does not name the admin server (DNS rebinding protection)", r.Host))
			return
		}
		if s.token != nil && !checkToken(r, s.token) {
			writeError(w, r, errorf(http.StatusUnauthorized, "unauthorized",
				"missing or wrong token: send Authorization: Bearer <token from token_file>"))
			return
		}
		protected.ServeHTTP(w, r)
	})
}
