package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/protobalance/protobalance/internal/admin"
)

// snapshot is one reading of the admin API for the report.
type snapshot struct {
	at        time.Time
	status    admin.Status
	listeners []admin.Listener
	clusters  []admin.Cluster
}

func (c *apiClient) snapshot() (*snapshot, error) {
	s := &snapshot{}
	var ll admin.ListenerList
	var cl admin.ClusterList
	if _, err := c.do("GET", "/api/status", nil, &s.status); err != nil {
		return nil, err
	}
	if _, err := c.do("GET", "/api/listeners", nil, &ll); err != nil {
		return nil, err
	}
	if _, err := c.do("GET", "/api/clusters", nil, &cl); err != nil {
		return nil, err
	}
	s.at, s.listeners, s.clusters = time.Now(), ll.Listeners, cl.Clusters
	return s, nil
}

func cmdReport(args []string, stdout, stderr io.Writer) error {
	var f ctlFlags
	fs := newFlags("report", stderr)
	f.connection(fs)
	fs.DurationVar(&f.interval, "interval", time.Second,
		"measure per-second figures over this `DURATION` (0 = averages since start)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := newAPIClient(&f)
	if err != nil {
		return err
	}
	first, err := c.snapshot()
	if err != nil {
		return err
	}
	last := first
	if f.interval > 0 {
		time.Sleep(f.interval)
		if last, err = c.snapshot(); err != nil {
			return err
		}
	} else {
		// Averages since start: the "first" reading is the empty process.
		first = &snapshot{at: first.status.Started}
	}
	writeReport(stdout, c.base, first, last)
	return nil
}

// writeReport prints the executor-style report: totals, then a row per
// listener and per node. Per-second figures are the differences between
// the two snapshots (prev may be the empty process at its start time).
func writeReport(w io.Writer, base string, prev, cur *snapshot) {
	secs := cur.at.Sub(prev.at).Seconds()
	if secs <= 0 {
		secs = 1
	}
	perSec := func(a, b uint64) float64 { return float64(b-min(a, b)) / secs }
	pl := indexListeners(prev.listeners)
	pn := indexNodes(prev.clusters)

	var acc, accPrev, noNode, refused, noSource, badProxy, guarded uint64
	var active int64
	for _, l := range cur.listeners {
		acc += l.Accepted
		accPrev += pl[l.Name].Accepted
		active += l.Active
		noNode += l.NoNode
		refused += l.Refused
		noSource += l.NoSourcePort
		badProxy += l.BadProxyHeader
		guarded += l.Guard.Total()
	}
	var bytes, bytesPrev, failures, total, fallIns, markedDown uint64
	for _, c := range cur.clusters {
		for _, n := range c.Nodes {
			p := pn[c.Name+"\x00"+n.Name]
			bytes += n.BytesIn + n.BytesOut
			bytesPrev += p.BytesIn + p.BytesOut
			failures += n.Failures
			fallIns += n.FallIns
			markedDown += n.MarkedDown
			total += n.Total
		}
	}
	st := cur.status
	up := time.Duration(st.UptimeSeconds * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(w, "Proto Balance %s at %s   report of %s\n", st.Version, strings.TrimPrefix(base, "http://"),
		cur.at.UTC().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "%-22s %s (since %s)\n", "uptime", up, st.Started.UTC().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "%-22s %12d   active %d   %.1f/s over %s\n", "connections accepted", acc, active,
		perSec(accPrev, acc), time.Duration(secs*float64(time.Second)).Round(time.Millisecond))
	fmt.Fprintf(w, "%-22s %12d   %.1f KB/s\n", "bytes relayed", bytes, perSec(bytesPrev, bytes)/1000)
	fmt.Fprintf(w, "%-22s %12d   no node %d   cap %d   no source port %d   bad proxy header %d   guard %d\n", "rejected",
		noNode+refused+noSource+badProxy+guarded, noNode, refused, noSource, badProxy, guarded)
	fmt.Fprintf(w, "%-22s %12d   nodes marked down %d\n", "connect failures", failures, markedDown)
	fmt.Fprintf(w, "%-22s %12d\n", "fall-overs", fallIns)
	fmt.Fprintf(w, "%-22s %12d   rss %.1f MiB   fds %d\n", "goroutines", st.Goroutines, float64(st.RSSBytes)/(1<<20), st.OpenFDs)

	fmt.Fprintf(w, "\n%-16s %-22s %-14s %10s %8s %8s %8s %8s\n", "LISTENER", "BIND", "CLUSTER", "ACCEPTED", "ACTIVE", "CONN/S", "NO NODE", "REFUSED")
	for _, l := range cur.listeners {
		fmt.Fprintf(w, "%-16s %-22s %-14s %10d %8d %8.1f %8d %8d\n", l.Name, l.Bind, l.Cluster, l.Accepted, l.Active,
			perSec(pl[l.Name].Accepted, l.Accepted), l.NoNode, l.Refused)
	}
	fmt.Fprintf(w, "\n%-16s %-6s %5s %6s %8s %10s %8s %8s %9s %8s\n", "CLUSTER / NODE", "STATE", "AVAIL", "WEIGHT",
		"ACTIVE", "TOTAL", "FAILURES", "CONN/S", "KB/S", "CONN MS")
	for _, c := range cur.clusters {
		var cActive int64
		var cTotal, cFail, cTotalPrev, cBytes, cBytesPrev uint64
		for _, n := range c.Nodes {
			p := pn[c.Name+"\x00"+n.Name]
			cActive += n.Active
			cTotal += n.Total
			cTotalPrev += p.Total
			cFail += n.Failures
			cBytes += n.BytesIn + n.BytesOut
			cBytesPrev += p.BytesIn + p.BytesOut
		}
		fmt.Fprintf(w, "%-16s %-6s %5s %6s %8d %10d %8d %8.1f %9.1f %8s\n", c.Name, "", "", "", cActive, cTotal, cFail,
			perSec(cTotalPrev, cTotal), perSec(cBytesPrev, cBytes)/1000, "")
		for _, n := range c.Nodes {
			p := pn[c.Name+"\x00"+n.Name]
			fmt.Fprintf(w, "  %-14s %-6s %5s %6d %8d %10d %8d %8.1f %9.1f %8.1f\n", n.Name, n.State, yesNo(n.Available),
				n.Weight, n.Active, n.Total, n.Failures, perSec(p.Total, n.Total),
				perSec(p.BytesIn+p.BytesOut, n.BytesIn+n.BytesOut)/1000, n.ConnectMS)
		}
	}
}

func indexListeners(ls []admin.Listener) map[string]admin.Listener {
	m := make(map[string]admin.Listener, len(ls))
	for _, l := range ls {
		m[l.Name] = l
	}
	return m
}

func indexNodes(cs []admin.Cluster) map[string]admin.Node {
	m := map[string]admin.Node{}
	for _, c := range cs {
		for _, n := range c.Nodes {
			m[c.Name+"\x00"+n.Name] = n
		}
	}
	return m
}
