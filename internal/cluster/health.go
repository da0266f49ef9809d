package cluster

import (
	"log/slog"

	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/health"
)

// How a failed client connect and the health check interact: a failed
// connect marks the node unavailable for retry_interval, after which one
// client connection probes it (Node.MarkDown). Independently, the check
// takes the node out after `fall` failed checks and back after `rise`
// passed ones (Node.checkDown). A node is used only when both agree, so a
// node the check holds down is never probed by clients, and a node that
// refuses clients is skipped even while its check passes (the check may be
// looking at another port or protocol).

// newChecker builds the active health checker of a cluster version, or
// reuses prev's when the check and the nodes it targets are unchanged (so
// a reload neither resets rise/fall counts nor brings a down node back).
// The caller starts a new checker (Started reports whether it is one) and
// stops one no version uses any more.
func (cl *Cluster) newChecker(prev *Cluster, log *slog.Logger) {
	chk := cl.Config.Check
	if chk == nil {
		return
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	targets := make([]health.Target, len(cl.Nodes))
	for i, n := range cl.Nodes {
		port := n.Port
		if chk.Port != 0 {
			port = chk.Port
		}
		targets[i] = health.Target{Node: n.Name, Addr: config.JoinHostPort(n.Host, port)}
	}
	if prev != nil && prev.Health != nil && sameCheck(prev.Config.Check, chk) && sameTargets(prev.healthTargets, targets) {
		cl.Health, cl.healthTargets = prev.Health, prev.healthTargets
		return
	}
	nodes := make(map[string]*Node, len(cl.Nodes))
	for _, n := range cl.Nodes {
		nodes[n.Name] = n
	}
	cl.Health = health.New(*chk, targets, func(name string, up bool, _ error) {
		nodes[name].checkDown.Store(!up)
	}, log.With("cluster", cl.Name))
	cl.healthTargets = targets
	cl.newHealth = true
}

// StartHealth starts the health checker this version brought, if any; a
// version that shares its predecessor's checker starts nothing. A new
// checker assumes every node up, so their check marks are cleared first.
// The owner stops the previous checker before and this one when no
// version uses it any more.
func (cl *Cluster) StartHealth() {
	if !cl.newHealth {
		return
	}
	for _, n := range cl.Nodes {
		n.checkDown.Store(false)
	}
	cl.Health.Start()
}

func sameCheck(a, b *config.Check) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Line, y.Line, x.ExpectRE, y.ExpectRE = 0, 0, nil, nil
	return x == y
}

func sameTargets(a, b []health.Target) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
