package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// lineIndex maps a value's path to the line it is written on, so that
// validation, which works on decoded values, can still blame a line.
//
// Paths use TOML key names with array positions: "global.max_conns",
// "listener[0].bind", "listener[0].allow[2]", "cluster[1].node[0].weight",
// "cluster[1].check". A table's own path holds its header line. The
// positions match the decoded slices because both follow document order.
type lineIndex struct {
	lines map[string]int
	nl    []int // offsets of '\n', to turn an offset into a line
}

// buildIndex scans data with go-toml's own parser. It is only called on a
// document that decoded, so a parse error here cannot happen; if it did,
// lookups would fall back to shorter paths and finally to line 1.
func buildIndex(data []byte) *lineIndex {
	ix := &lineIndex{lines: map[string]int{}}
	for i, c := range data {
		if c == '\n' {
			ix.nl = append(ix.nl, i)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	counts := map[string]int{} // array-of-tables path -> elements seen
	cur := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			path, line := "", 0
			it := e.Key()
			for it.Next() {
				k := it.Node()
				if line == 0 {
					line = ix.lineAt(k.Raw)
				}
				path = join(path, string(k.Data))
				switch n, seen := counts[path]; {
				case it.IsLast() && e.Kind == unstable.ArrayTable:
					counts[path] = n + 1
					path += "[" + strconv.Itoa(n) + "]"
				case seen && n > 0:
					// [cluster.check] names the last [[cluster]] so far.
					path += "[" + strconv.Itoa(n-1) + "]"
				}
			}
			ix.set(path, line)
			cur = path
		case unstable.KeyValue:
			ix.keyValue(cur, e, 0)
		}
	}
	return ix
}

// keyValue records a key = value line, then whatever nests in the value.
func (ix *lineIndex) keyValue(base string, e *unstable.Node, parent int) {
	path, line := base, 0
	it := e.Key()
	for it.Next() {
		k := it.Node()
		if line == 0 {
			line = ix.lineAt(k.Raw)
		}
		if line == 0 {
			line = parent
		}
		path = join(path, string(k.Data))
		ix.set(path, line) // a.b = 1 also places table a
	}
	ix.value(path, e.Value(), line)
}

// value indexes array elements and inline-table keys below path.
func (ix *lineIndex) value(path string, v *unstable.Node, parent int) {
	switch v.Kind {
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				ix.keyValue(path, c, parent)
			}
		}
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			line := parent
			if c.Raw.Length > 0 { // arrays carry no range of their own
				line = ix.lineAt(c.Raw)
			}
			ep := path + "[" + strconv.Itoa(i) + "]"
			ix.set(ep, line)
			ix.value(ep, c, line)
			i++
		}
	}
}

func (ix *lineIndex) set(path string, line int) {
	if _, ok := ix.lines[path]; !ok && line > 0 {
		ix.lines[path] = line
	}
}

// lineAt turns a byte range into its 1-based starting line.
func (ix *lineIndex) lineAt(r unstable.Range) int {
	return sort.SearchInts(ix.nl, int(r.Offset)) + 1
}

// line returns the line of path, else of its closest written ancestor
// ("cluster[0].node[1].weight", then "cluster[0].node[1]", ...), else 1.
func (ix *lineIndex) line(path string) int {
	for path != "" {
		if l, ok := ix.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 1
}

func join(base, key string) string {
	if base == "" || key == "" {
		return base + key
	}
	return base + "." + key
}
