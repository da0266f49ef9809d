package admin

import (
	"bytes"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// The metrics, defined once. Every name is protobalance_*; labels are
// cluster, node and listener (never a client address). The exposition is
// Prometheus text format 0.0.4, written by hand: importing a client library
// costs ~8 MiB of resident memory at start, more than the whole balancer.
const (
	mNodeConnections = "protobalance_node_connections_total"
	mNodeActive      = "protobalance_node_active_connections"
	mNodeBytesIn     = "protobalance_node_bytes_in_total"
	mNodeBytesOut    = "protobalance_node_bytes_out_total"
	mNodeFailures    = "protobalance_node_connect_failures_total"
	mNodeMarkedDown  = "protobalance_node_marked_down_total"
	mNodeFallIns     = "protobalance_node_fall_ins_total"
	mNodeState       = "protobalance_node_state"
	mNodeAvailable   = "protobalance_node_available"
	mNodeWeight      = "protobalance_node_weight"
	mNodeConnectSecs = "protobalance_node_connect_seconds"

	mListenerAccepted = "protobalance_listener_accepted_total"
	mListenerActive   = "protobalance_listener_active_connections"
	mListenerNoNode   = "protobalance_listener_no_node_total"
	mListenerRefused  = "protobalance_listener_refused_total"
	mListenerNoSource = "protobalance_listener_no_source_port_total"
	mListenerBadProxy = "protobalance_listener_bad_proxy_header_total"
	mListenerCluster  = "protobalance_listener_cluster"
	mListenerGuard    = "protobalance_listener_guard_rejected_total"

	mGoroutines = "protobalance_goroutines"
	mRSS        = "protobalance_resident_memory_bytes"
	mGoMemory   = "protobalance_go_memory_bytes"
	mOpenFDs    = "protobalance_open_fds"
	mStartTime  = "protobalance_start_time_seconds"
)

// metricHelp is the HELP and TYPE of every metric, in exposition order.
var metricHelp = []struct{ name, typ, help string }{
	{mNodeConnections, "counter", "Connections that reached the node (dial succeeded)."},
	{mNodeActive, "gauge", "Open connections through the node, dials included."},
	{mNodeBytesIn, "counter", "Bytes relayed from clients to the node."},
	{mNodeBytesOut, "counter", "Bytes relayed from the node to clients."},
	{mNodeFailures, "counter", "Failed dials to the node (refused, timed out, closed early)."},
	{mNodeMarkedDown, "counter", "Times the node was marked unavailable after a failed connect or an early close."},
	{mNodeFallIns, "counter", "Connections the node took by fall-over after a dial to another node failed."},
	{mNodeState, "gauge", "Administrative state of the node: 1 for the current state (green, yellow, red), 0 for the others."},
	{mNodeAvailable, "gauge", "1 when the node is not marked unavailable by a failed connect."},
	{mNodeWeight, "gauge", "Current load factor of the node."},
	{mNodeConnectSecs, "gauge", "Moving average of successful connect times, in seconds."},
	{mListenerAccepted, "counter", "Connections accepted by the listener."},
	{mListenerActive, "gauge", "Open connections accepted by the listener."},
	{mListenerNoNode, "counter", "Connections closed because no node could take them."},
	{mListenerRefused, "counter", "Connections refused by a connection cap."},
	{mListenerNoSource, "counter", "Connections closed because a dial ran out of local ports or descriptors."},
	{mListenerBadProxy, "counter", "Connections closed because their PROXY header was malformed, missing or late (accept_proxy)."},
	{mListenerCluster, "gauge", "1 for the cluster the listener sends new connections to."},
	{mListenerGuard, "counter", "Connections refused at accept by the abuse guard, by reason (deny, rate, ban, concurrency)."},
	{mGoroutines, "gauge", "Number of goroutines."},
	{mRSS, "gauge", "Resident memory of the process, in bytes (from /proc/self/statm)."},
	{mGoMemory, "gauge", "Memory the Go runtime holds from the OS, by class (heap_objects, heap_free, stacks, runtime), in bytes."},
	{mOpenFDs, "gauge", "Open file descriptors of the process."},
	{mStartTime, "gauge", "Start time of the process, in seconds since the Unix epoch."},
}

// series collects samples by metric name, so that each family is written
// once, in metricHelp's order, whatever order the samples came in.
type series map[string][]string

func (s series) add(name string, labels []string, v float64) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(labels[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	s[name] = append(s[name], b.String())
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(v string) string { return labelEscaper.Replace(v) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metrics renders the exposition from one snapshot of the Controller.
func (s *Server) metrics() []byte {
	out := series{}
	for _, c := range s.ctl.Clusters() {
		for _, n := range c.Nodes {
			l := []string{"cluster", c.Name, "node", n.Name}
			out.add(mNodeConnections, l, float64(n.Total))
			out.add(mNodeActive, l, float64(n.Active))
			out.add(mNodeBytesIn, l, float64(n.BytesIn))
			out.add(mNodeBytesOut, l, float64(n.BytesOut))
			out.add(mNodeFailures, l, float64(n.Failures))
			out.add(mNodeMarkedDown, l, float64(n.MarkedDown))
			out.add(mNodeFallIns, l, float64(n.FallIns))
			for _, st := range []string{"green", "yellow", "red"} {
				out.add(mNodeState, append(l[:4:4], "state", st), b2f(n.State == st))
			}
			out.add(mNodeAvailable, l, b2f(n.Available))
			out.add(mNodeWeight, l, float64(n.Weight))
			out.add(mNodeConnectSecs, l, n.ConnectMS/1000)
		}
	}
	for _, ls := range s.ctl.Listeners() {
		l := []string{"listener", ls.Name}
		out.add(mListenerAccepted, l, float64(ls.Accepted))
		out.add(mListenerActive, l, float64(ls.Active))
		out.add(mListenerNoNode, l, float64(ls.NoNode))
		out.add(mListenerRefused, l, float64(ls.Refused))
		out.add(mListenerNoSource, l, float64(ls.NoSourcePort))
		out.add(mListenerBadProxy, l, float64(ls.BadProxyHeader))
		out.add(mListenerCluster, append(l[:2:2], "cluster", ls.Cluster), 1)
		for _, r := range []struct {
			reason string
			n      uint64
		}{{"deny", ls.Guard.Deny}, {"rate", ls.Guard.Rate}, {"ban", ls.Guard.Ban}, {"concurrency", ls.Guard.Concurrency}} {
			out.add(mListenerGuard, append(l[:2:2], "reason", r.reason), float64(r.n))
		}
	}
	st := s.status()
	out.add(mGoroutines, nil, float64(st.Goroutines))
	out.add(mRSS, nil, float64(st.RSSBytes))
	for i, v := range goMemory() {
		out.add(mGoMemory, []string{"class", goMemoryClasses[i].class}, float64(v))
	}
	out.add(mOpenFDs, nil, float64(st.OpenFDs))
	out.add(mStartTime, nil, float64(st.Started.UnixMilli())/1000)

	var b bytes.Buffer
	for _, m := range metricHelp {
		samples := out[m.name]
		if len(samples) == 0 {
			continue
		}
		b.WriteString("# HELP " + m.name + " " + m.help + "\n")
		b.WriteString("# TYPE " + m.name + " " + m.typ + "\n")
		for _, line := range samples {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func (s *Server) getMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(s.metrics())
}

// residentBytes is the process's resident set size from /proc/self/statm
// (second field, in pages); -1 where there is no /proc.
func residentBytes() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}

// openFDs counts the entries of /proc/self/fd (the count includes the
// descriptor used to read the directory); -1 where there is no /proc.
func openFDs() int {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return -1
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return -1
	}
	return len(names) - 1
}
