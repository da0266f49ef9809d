package config

import (
	"errors"
	"strings"
)

// APINode is a node as the admin API receives it (POST
// /api/clusters/{cluster}/nodes). A nil pointer is an omitted key, which
// takes its default exactly as in the file.
type APINode struct {
	Name     string
	Address  string
	Weight   *int
	Fallover string
	Standby  bool
	MaxConns *int
	State    *string
}

// NodeFromAPI validates a node given through the admin API with the same
// rules and messages as a [[cluster.node]] table: required name and
// address, the address syntax, weight and max_conns >= 0, a known state.
// References to other nodes (fallover, unique name) are the caller's to
// check against the running cluster. The error lists every problem, one
// per line, without a FILE:LINE prefix.
func NodeFromAPI(a APINode) (Node, error) {
	b := &builder{ix: buildIndex(nil)}
	r := rawNode{Name: &a.Name, Address: &a.Address, Weight: a.Weight, Standby: &a.Standby,
		MaxConns: a.MaxConns, State: a.State}
	if a.Fallover != "" {
		r.Fallover = &a.Fallover
	}
	n := b.node(scope{}, 0, &r)
	n.Line = 0
	if n.Fallover != "" && n.Fallover == n.Name {
		b.errf(b.elemScope(scope{}, "node", 0, &a.Name), "fallover", "fallover %q: a node cannot stand in for itself", n.Fallover)
	}
	if len(b.errs) > 0 {
		msgs := make([]string, len(b.errs))
		for i, e := range b.errs {
			msgs[i] = e.Msg
		}
		return Node{}, errors.New(strings.Join(msgs, "\n"))
	}
	return n, nil
}
