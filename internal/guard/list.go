package guard

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/protobalance/protobalance/ebtree"
	"github.com/protobalance/protobalance/internal/config"
)

// maxLineErrors caps the problems reported for one list file: a file that
// is not a list at all should not print a million lines.
const maxLineErrors = 20

// maxLine is the longest line a list file may hold.
const maxLine = 4096

// table is the merged allow/deny longest-prefix table of one listener. It is
// built once by buildTable and never written afterwards, so any number of
// goroutines may call permits without a lock.
type table struct {
	t ebtree.PrefixTree[bool] // Value: true = deny
	// nodes backs every entry of t in one allocation.
	nodes []ebtree.PrefixNode[bool]
	// defaultAllow decides addresses no prefix contains: true when the
	// allow list (inline and file together) is empty.
	defaultAllow bool
}

// permits reports whether the list lets a (already unmapped) in: the
// longest matching prefix decides; with none, defaultAllow does. An invalid
// address matches no prefix.
func (t *table) permits(a netip.Addr) bool {
	if !a.IsValid() {
		return t.defaultAllow
	}
	if n := t.t.LongestMatch(a); n != nil {
		return !n.Value
	}
	return t.defaultAllow
}

// buildTable merges the listener's inline lists and list files into one
// table. It returns nil (and no error) when the listener has no list rule
// at all. Problems in the files come back as config.Errors naming FILE:LINE.
func buildTable(cfg *config.Listener) (*table, error) {
	allow, deny := cfg.Allow, cfg.Deny
	var errs config.Errors
	if cfg.AllowFile != "" {
		ps, err := readList(cfg.AllowFile)
		allow = append(allow[:len(allow):len(allow)], ps...)
		errs = appendErr(errs, err)
	}
	if cfg.DenyFile != "" {
		ps, err := readList(cfg.DenyFile)
		deny = append(deny[:len(deny):len(deny)], ps...)
		errs = appendErr(errs, err)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if len(allow) == 0 && len(deny) == 0 {
		return nil, nil
	}
	// Insert in address order: each insertion then walks the path the
	// previous one just touched (cache-hot), and nodes sit in memory in the
	// order lookups visit them. A prefix in both lists sorts deny last.
	rules := make([]rule, 0, len(allow)+len(deny))
	for _, p := range allow {
		rules = append(rules, newRule(p, false))
	}
	for _, p := range deny {
		rules = append(rules, newRule(p, true))
	}
	slices.SortFunc(rules, func(a, b rule) int {
		return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo), cmp.Compare(a.meta, b.meta))
	})
	t := &table{defaultAllow: len(allow) == 0}
	t.nodes = make([]ebtree.PrefixNode[bool], len(rules))
	used := 0
	for _, r := range rules {
		n := &t.nodes[used]
		n.Value = r.deny()
		switch got := t.t.Insert(r.prefix(), n); {
		case got == n:
			used++
		case got != nil:
			got.Value = got.Value || r.deny() // an equal prefix in both lists: deny
		}
	}
	return t, nil
}

// rule is a normalized list entry packed into 24 bytes, so that sorting
// 450,000 of them moves little memory. The sort key is the 128-bit address
// (IPv4 as v4-mapped), then meta: family, length, allow before deny.
type rule struct {
	hi, lo uint64
	meta   uint32 // v6<<9 | bits<<1 | deny
}

func newRule(p netip.Prefix, deny bool) rule {
	p = normalize(p)
	a := p.Addr()
	b := a.As16()
	r := rule{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), meta: uint32(p.Bits()) << 1}
	if a.Is6() {
		r.meta |= 1 << 9
	}
	if deny {
		r.meta |= 1
	}
	return r
}

func (r rule) deny() bool { return r.meta&1 != 0 }

func (r rule) prefix() netip.Prefix {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.hi)
	binary.BigEndian.PutUint64(b[8:], r.lo)
	a := netip.AddrFrom16(b)
	if r.meta&(1<<9) == 0 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(r.meta>>1&0xff))
}

// appendErr adds the problems in err to errs.
func appendErr(errs config.Errors, err error) config.Errors {
	var es config.Errors
	var e *config.Error
	switch {
	case err == nil:
	case errors.As(err, &es):
		errs = append(errs, es...)
	case errors.As(err, &e):
		errs = append(errs, e)
	default:
		errs = append(errs, &config.Error{Msg: err.Error()})
	}
	return errs
}

// normalize masks the host bits of p and turns an IPv4-mapped IPv6 prefix
// of length >= 96 into the IPv4 prefix it covers, since client addresses
// are unmapped before lookup.
func normalize(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// readList reads a list file (see parseList). A file that cannot be read is
// one *config.Error with Line 0.
func readList(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &config.Error{File: path, Msg: "cannot read list: " + err.Error()}
	}
	defer f.Close()
	return parseList(f, path)
}

// parseList reads one prefix per line: an address ("192.0.2.7", "2001:db8::1",
// a /32 or /128) or a CIDR prefix ("192.0.2.0/24"; host bits are masked).
// Blank lines are skipped; '#' starts a comment that runs to the end of the
// line. Every malformed line (up to maxLineErrors) is reported as a
// *config.Error{File: file, Line: n}; the result is then a non-empty
// config.Errors and the prefixes are nil.
func parseList(r io.Reader, file string) ([]netip.Prefix, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLine)
	var out []netip.Prefix
	var errs config.Errors
	line := 0
	for sc.Scan() {
		line++
		p, msg := parseLine(sc.Text())
		switch {
		case msg != "":
			if len(errs) < maxLineErrors {
				errs = append(errs, &config.Error{File: file, Line: line, Msg: msg})
			}
		case p.IsValid():
			out = append(out, p)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", maxLine)
		}
		errs = append(errs, &config.Error{File: file, Line: line + 1, Msg: err.Error()})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// parseLine parses one list line. It returns the zero Prefix and "" for a
// blank or comment line, and a message for a malformed one.
func parseLine(s string) (netip.Prefix, string) {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, ""
	}
	if strings.ContainsAny(s, " \t\v\f\r") {
		return netip.Prefix{}, fmt.Sprintf("%s: one prefix per line", quote(s))
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Sprintf("%s: not a CIDR prefix", quote(s))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Sprintf("%s: not an IP address or CIDR prefix", quote(s))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return normalize(p), ""
}

// quote shortens and quotes a bad token for an error message.
func quote(s string) string {
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return fmt.Sprintf("%q", s)
}
