package config

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Load reads and validates the config file at path. Config.File is path as
// given and Config.Dir its directory, against which relative paths in the
// file are resolved. A read failure is returned as the os error; any problem
// in the content is returned as Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, filepath.Dir(path))
}

// Parse validates a config document. file names it in errors and in
// Config.File; dir is the base for relative paths ("" leaves them relative
// to the process's working directory). On failure the error is a non-empty
// Errors listing every problem found, by line; the Config is then nil.
//
// Decoding problems (syntax, unknown keys, wrong types) stop before
// validation, since the values are not trustworthy; all validation
// problems are reported together.
func Parse(file string, data []byte, dir string) (*Config, error) {
	raw, errs := decode(file, data)
	if errs != nil {
		sortErrors(errs)
		return nil, errs
	}
	b := &builder{file: file, ix: buildIndex(data)}
	c := b.config(raw)
	c.File, c.Dir = file, dir
	if len(b.errs) > 0 {
		sortErrors(b.errs)
		return nil, b.errs
	}
	c.resolvePaths()
	return c, nil
}

// resolvePaths makes the file's relative paths relative to its directory.
func (c *Config) resolvePaths() {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(c.Dir, *p)
		}
	}
	abs(&c.Store.Path)
	abs(&c.Admin.TokenFile)
	abs(&c.Admin.TLSCert)
	abs(&c.Admin.TLSKey)
	for i := range c.Listeners {
		abs(&c.Listeners[i].AllowFile)
		abs(&c.Listeners[i].DenyFile)
	}
}

// builder turns the raw document into a Config, collecting every problem.
type builder struct {
	file string
	ix   *lineIndex
	errs Errors
}

// scope is where a value lives: its index path (for the line) and the
// message prefix naming it for a human, e.g. `cluster "web": node "n3"`.
type scope struct {
	path string
	what string
}

func (s scope) child(key, what string) scope {
	return scope{path: join(s.path, key), what: joinWhat(s.what, what)}
}

func (s scope) elem(key string, i int, what string) scope {
	return scope{path: join(s.path, key) + "[" + strconv.Itoa(i) + "]", what: joinWhat(s.what, what)}
}

func joinWhat(a, b string) string {
	if a == "" {
		return b
	}
	return a + ": " + b
}

// errf records a problem with key (a path below s, "" for s itself).
func (b *builder) errf(s scope, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.errs = append(b.errs, &Error{
		File: b.file,
		Line: b.ix.line(join(s.path, key)),
		Msg:  joinWhat(s.what, msg),
	})
}

// intIn applies an integer key, which must lie in [lo, hi].
func (b *builder) intIn(s scope, key string, src *int, dst *int, lo, hi int) {
	if src == nil {
		return
	}
	switch v := *src; {
	case v >= lo && v <= hi:
		*dst = v
	case hi == math.MaxInt:
		b.errf(s, key, "%s %d: must be >= %d", key, v, lo)
	default:
		b.errf(s, key, "%s %d: must be between %d and %d", key, v, lo, hi)
	}
}

// durKind says which durations a key accepts.
type durKind int

const (
	positive durKind = iota // 0 would make no sense (a timeout of nothing)
	zeroOK                  // 0 means none / off
)

// dur applies a duration key written in Go syntax ("3s", "720h", "0").
func (b *builder) dur(s scope, key string, src *duration, dst *time.Duration, k durKind) {
	if src == nil {
		return
	}
	d, err := time.ParseDuration(string(*src))
	switch {
	case err != nil:
		b.errf(s, key, `%s %q: not a duration (write e.g. "500ms", "30s", "1h")`, key, *src)
	case d < 0:
		b.errf(s, key, "%s %q: must not be negative", key, *src)
	case d == 0 && k == positive:
		b.errf(s, key, "%s %q: must be greater than 0", key, *src)
	default:
		*dst = d
	}
}

// oneOf applies a string key restricted to a fixed set of values.
func (b *builder) oneOf(s scope, key string, src *string, dst *string, allowed ...string) {
	if src == nil {
		return
	}
	for _, a := range allowed {
		if *src == a {
			*dst = a
			return
		}
	}
	b.errf(s, key, "%s %q: must be one of %s", key, *src, quoteList(allowed))
}

func quoteList(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(x)
	}
	return out
}

// name reads a required name and returns it with the scope naming it.
func (b *builder) name(s scope, src *string) string {
	if src == nil || *src == "" {
		b.errf(s, "name", "name: required")
		return ""
	}
	return *src
}
