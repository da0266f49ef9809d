package config

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"strconv"
)

// config converts the whole document: each section in isolation first, then
// the references between sections (refs.go).
func (b *builder) config(raw *rawDoc) *Config {
	c := &Config{Global: DefaultGlobal(), Admin: DefaultAdmin(), Store: DefaultStore()}
	if g := raw.Global; g != nil {
		s := scope{path: "global", what: "[global]"}
		b.intIn(s, "max_conns", g.MaxConns, &c.Global.MaxConns, 0, math.MaxInt)
		b.dur(s, "shutdown_timeout", g.ShutdownTimeout, &c.Global.ShutdownTimeout, zeroOK)
		b.oneOf(s, "data_path", g.DataPath, &c.Global.DataPath, DataPaths...)
	}
	if a := raw.Admin; a != nil {
		s := scope{path: "admin", what: "[admin]"}
		if a.Listen != nil && *a.Listen != "" {
			if err := validListen(*a.Listen); err != nil {
				b.errf(s, "listen", "listen %q: %v", *a.Listen, err)
			}
		}
		setIf(&c.Admin.Listen, a.Listen)
		setIf(&c.Admin.TokenFile, a.TokenFile)
		setIf(&c.Admin.TLSCert, a.TLSCert)
		setIf(&c.Admin.TLSKey, a.TLSKey)
		switch {
		case c.Admin.TLSCert != "" && c.Admin.TLSKey == "":
			b.errf(s, "tls_cert", "tls_cert: needs tls_key as well")
		case c.Admin.TLSKey != "" && c.Admin.TLSCert == "":
			b.errf(s, "tls_key", "tls_key: needs tls_cert as well")
		}
	}
	if st := raw.Store; st != nil {
		s := scope{path: "store", what: "[store]"}
		setIf(&c.Store.Path, st.Path)
		if st.Redis != nil && *st.Redis != "" {
			u, err := url.Parse(*st.Redis)
			if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
				b.errf(s, "redis", `redis %q: expected a URL such as "redis://127.0.0.1:6379/0"`, *st.Redis)
			}
		}
		setIf(&c.Store.Redis, st.Redis)
	}
	for i := range raw.Listener {
		c.Listeners = append(c.Listeners, b.listener(i, &raw.Listener[i]))
	}
	for i := range raw.Cluster {
		c.Clusters = append(c.Clusters, b.cluster(i, &raw.Cluster[i]))
	}
	b.refs(c)
	return c
}

// elemScope names the i-th element of an array of tables by its name, or by
// its position when it has none.
func (b *builder) elemScope(parent scope, key string, i int, name *string) scope {
	what := key + " #" + strconv.Itoa(i+1)
	if name != nil && *name != "" {
		what = fmt.Sprintf("%s %q", key, *name)
	}
	return parent.elem(key, i, what)
}

func (b *builder) listener(i int, r *rawListener) Listener {
	s := b.elemScope(scope{}, "listener", i, r.Name)
	l := DefaultListener()
	l.Line = b.ix.line(s.path)
	l.Name = b.name(s, r.Name)

	switch {
	case r.Bind == nil || *r.Bind == "":
		b.errf(s, "bind", `bind: required (e.g. "0.0.0.0:8080" or "0.0.0.0:30000-30099")`)
	default:
		bind, err := parseBind(*r.Bind)
		if err != nil {
			b.errf(s, "bind", "bind %q: %v", *r.Bind, err)
		}
		l.Bind = bind
	}
	if r.Cluster == nil || *r.Cluster == "" {
		b.errf(s, "cluster", "cluster: required")
	} else {
		l.Cluster = *r.Cluster // existence is checked in refs
	}
	setIf(&l.AcceptProxy, r.AcceptProxy)
	l.Allow = b.prefixes(s, "allow", r.Allow)
	l.Deny = b.prefixes(s, "deny", r.Deny)
	setIf(&l.AllowFile, r.AllowFile)
	setIf(&l.DenyFile, r.DenyFile)
	b.intIn(s, "max_conns", r.MaxConns, &l.MaxConns, 0, math.MaxInt)
	b.intIn(s, "max_conn_rate", r.MaxConnRate, &l.MaxConnRate, 0, math.MaxInt)
	b.intIn(s, "max_client_conns", r.MaxClientConns, &l.MaxClientConns, 0, math.MaxInt)
	b.intIn(s, "client_mask_v4", r.ClientMaskV4, &l.ClientMaskV4, 0, 32)
	b.intIn(s, "client_mask_v6", r.ClientMaskV6, &l.ClientMaskV6, 0, 128)
	b.dur(s, "ban_time", r.BanTime, &l.BanTime, zeroOK)
	return l
}

// prefixes parses a CIDR list, blaming each bad element's own line.
func (b *builder) prefixes(s scope, key string, xs []string) []netip.Prefix {
	var out []netip.Prefix
	for i, x := range xs {
		p, err := parsePrefix(x)
		if err != nil {
			b.errf(s, key+"["+strconv.Itoa(i)+"]", "%s %q: %v", key, x, err)
			continue
		}
		out = append(out, p)
	}
	return out
}
