package config

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// Error is one problem in a config file, located at the line of the
// offending key (or of its table header when the key was omitted).
type Error struct {
	File string
	Line int // 1-based; 0 when no line applies
	Msg  string
}

// Error formats the problem as "FILE:LINE: msg", the form editors and
// `protobalance check` users expect.
func (e *Error) Error() string {
	if e.Line <= 0 {
		return e.File + ": " + e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// Errors is every problem found in one file, sorted by line. Parse and Load
// report problems in the content as a non-empty Errors (never a bare
// *Error); errors.As works for both types, *Error matching the first
// problem through Unwrap.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors orders problems by line; equal lines keep discovery order.
func sortErrors(es Errors) {
	slices.SortStableFunc(es, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
}

// mismatchRE picks the TOML kind out of go-toml's type mismatch message; the
// rest of that message names our private Go types, which mean nothing to a
// user.
var mismatchRE = regexp.MustCompile(`^cannot decode TOML (.+?) into `)

// fromTOML converts a go-toml decoding error into our errors, keeping the
// row go-toml reports and naming the key by its dotted TOML path.
func fromTOML(file string, err error) Errors {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		out := make(Errors, 0, len(strict.Errors))
		for i := range strict.Errors {
			de := &strict.Errors[i]
			what := "key"
			if strings.Contains(de.Error(), "table") {
				what = "table"
			}
			line, _ := de.Position()
			msg := fmt.Sprintf("unknown %s %q", what, keyString(de.Key()))
			if s := suggest(de.Key()); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			out = append(out, &Error{File: file, Line: line, Msg: msg})
		}
		return out
	}
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return Errors{{File: file, Line: 1, Msg: strings.TrimPrefix(err.Error(), "toml: ")}}
	}
	line, _ := de.Position()
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	key := keyString(de.Key())
	if m := mismatchRE.FindStringSubmatch(msg); m != nil && key != "" {
		msg = fmt.Sprintf("%s: expected %s, found %s", key, expectedKind(de.Key()), article(m[1]))
	} else if key == "" {
		msg = "invalid TOML: " + msg
	} else if !strings.Contains(msg, de.Key()[len(de.Key())-1]) {
		msg = key + ": " + msg
	}
	return Errors{{File: file, Line: line, Msg: msg}}
}

func keyString(k toml.Key) string { return strings.Join(k, ".") }

// rawType is the raw type a key path leads to, or nil when it leads nowhere.
func rawType(key []string) reflect.Type {
	t := reflect.TypeFor[rawDoc]()
	for _, part := range key {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTag(t, part)
		if !ok {
			return nil
		}
		t = f.Type
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// suggest returns the known key closest to a misspelt one (at most two
// edits away), or "".
func suggest(key toml.Key) string {
	if len(key) == 0 {
		return ""
	}
	t := rawType(key[:len(key)-1])
	if t != nil && t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	bad, best, bestD := key[len(key)-1], "", 3
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if d := editDistance(bad, tag); d < bestD {
			best, bestD = tag, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// expectedKind describes the TOML value the key takes, found by walking the
// raw document type along the key's toml tags.
func expectedKind(key toml.Key) string {
	t := rawType(key)
	if t == nil {
		return "another type"
	}
	if t == reflect.TypeFor[duration]() {
		return `a duration string such as "30s" or "0"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct:
		return "a table"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "tables ([[" + keyString(key) + "]])"
		}
		return "an array of strings"
	}
	return "another type"
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("toml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func article(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}
