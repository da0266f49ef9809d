package config

import "testing"

func TestLineIndex(t *testing.T) {
	src := `[global]
max_conns = 1
[[listener]]
name = "a"
allow = [
  "10.0.0.0/8",

  "bad",
]
[[cluster]]
name = "c"
check.type = "tcp"
[[cluster.node]]
name = "n1"
[[cluster]]
[cluster.check]
rise = 1
[[cluster.node]]
[[cluster.node]]
weight = 2
node2 = [{ name = "x" },
  { name = "y", weight = 3 }]
`
	ix := buildIndex([]byte(src))
	for path, want := range map[string]int{
		"global":                             1,
		"global.max_conns":                   2,
		"listener[0]":                        3,
		"listener[0].allow":                  5,
		"listener[0].allow[1]":               8,
		"listener[0].missing":                3,
		"cluster[0].check.type":              12,
		"cluster[0].check":                   12,
		"cluster[0].node[0].name":            14,
		"cluster[1]":                         15,
		"cluster[1].check":                   16,
		"cluster[1].check.rise":              17,
		"cluster[1].check.timeout":           16,
		"cluster[1].node[1].weight":          20,
		"cluster[1].node[1].node2[1].weight": 22,
		"cluster[1].node[1].node2[0].name":   21,
		"nothing.at.all":                     1,
	} {
		if got := ix.line(path); got != want {
			t.Errorf("line(%q) = %d, want %d", path, got, want)
		}
	}
}
