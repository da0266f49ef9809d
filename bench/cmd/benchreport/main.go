// Command benchreport turns the JSON lines written by bench/run.sh into a
// markdown table of medians over rounds, with ratios between targets.
//
// Usage: benchreport results.jsonl
//
// Each input line is one measurement of one target in one round:
//
//	{"round":1,"target":"haproxy","scenario":"short","cpu_ticks":196,"clk_tck":100,
//	 "rss_before_kb":16600,"rss_after_kb":48668,"rss_kb":15768,"res":{...loadgen JSON...}}
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

type record struct {
	Round    int     `json:"round"`
	Target   string  `json:"target"`
	Scenario string  `json:"scenario"`
	CPUTicks float64 `json:"cpu_ticks"`
	ClkTck   float64 `json:"clk_tck"`
	RSSKB    float64 `json:"rss_kb"`
	Before   float64 `json:"rss_before_kb"`
	After    float64 `json:"rss_after_kb"`
	Res      struct {
		OK       float64 `json:"ok"`
		Errors   float64 `json:"errors"`
		Rate     float64 `json:"rate"`
		P50us    float64 `json:"p50_us"`
		P99us    float64 `json:"p99_us"`
		Bytes    float64 `json:"bytes"`
		Gbits    float64 `json:"gbit_s"`
		BadSums  float64 `json:"checksum_errors"`
		Opened   float64 `json:"opened"`
		Alive    float64 `json:"alive"`
		LaunchMs float64 `json:"launch_ms"`
		TimedOut bool    `json:"timed_out"`
	} `json:"res"`
}

// row is one line of the table: how to get a value from a record of one
// scenario, and how targets compare on it.
type row struct {
	name     string
	scenario string
	lower    bool // lower is better
	balancer bool // only meaningful for a balancer (no direct value)
	latency  bool // compare to direct by difference, not ratio
	value    func(r *record) (float64, bool)
}

func cpu(r *record) float64 { return r.CPUTicks / r.ClkTck }

var rows = []row{
	{"CPU-s per 10,000 connections (short)", "short", true, true, false, func(r *record) (float64, bool) {
		return cpu(r) / r.Res.OK * 1e4, r.Res.OK > 0 && r.ClkTck > 0
	}},
	{"CPU-s per GB (bulk, both directions)", "bulk", true, true, false, func(r *record) (float64, bool) {
		return cpu(r) / (r.Res.Bytes / 1e9), r.Res.Bytes > 0 && r.ClkTck > 0
	}},
	{"CPU-s per 100,000 keep-alive requests", "keepalive", true, true, false, func(r *record) (float64, bool) {
		return cpu(r) / r.Res.OK * 1e5, r.Res.OK > 0 && r.ClkTck > 0
	}},
	{"CPU-s per 10,000 idle connections (open, 2 round trips, close)", "idle", true, true, false, func(r *record) (float64, bool) {
		return cpu(r) / r.Res.Opened * 1e4, r.Res.Opened > 0 && r.ClkTck > 0
	}},
	{"connections/s (short)", "short", false, false, false, func(r *record) (float64, bool) { return r.Res.Rate, r.Res.OK > 0 }},
	{"keep-alive requests/s", "keepalive", false, false, false, func(r *record) (float64, bool) { return r.Res.Rate, r.Res.OK > 0 }},
	{"bulk Gbit/s", "bulk", false, false, false, func(r *record) (float64, bool) { return r.Res.Gbits, r.Res.Bytes > 0 }},
	{"p50 latency, conn per request at low load, ms", "latency", true, false, true, func(r *record) (float64, bool) {
		return r.Res.P50us / 1000, r.Res.OK > 0
	}},
	{"p99 latency, conn per request at low load, ms", "latency", true, false, true, func(r *record) (float64, bool) {
		return r.Res.P99us / 1000, r.Res.OK > 0
	}},
	{"p99 latency, short (saturated), ms", "short", true, false, true, func(r *record) (float64, bool) { return r.Res.P99us / 1000, r.Res.OK > 0 }},
	{"p99 latency, keep-alive (saturated), ms", "keepalive", true, false, true, func(r *record) (float64, bool) { return r.Res.P99us / 1000, r.Res.OK > 0 }},
	{"RSS per idle connection, KB", "idle", true, true, false, func(r *record) (float64, bool) {
		return (r.After - r.Before) / r.Res.Opened, r.Res.Opened > 0 && r.After > 0
	}},
	{"idle connections alive after hold", "idle", false, false, false, func(r *record) (float64, bool) { return r.Res.Alive, true }},
	{"RSS at start, MB", "start", true, true, false, func(r *record) (float64, bool) { return r.RSSKB / 1024, r.RSSKB > 0 }},
	{"launch to first forwarded connection, ms", "start", true, false, true, func(r *record) (float64, bool) {
		return r.Res.LaunchMs, r.Res.LaunchMs > 0
	}},
}

var targets = []string{"direct", "protobalance", "haproxy"}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchreport results.jsonl")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(os.Stderr, "benchreport: skipping bad line: %v\n", err)
			continue
		}
		recs = append(recs, r)
	}
	fmt.Print(render(recs))
}

// stat is the median of a target's per-round values and their spread.
type stat struct {
	med, spread float64 // spread: half the range, relative to the median
	n           int
}

func summarize(vals []float64) (stat, bool) {
	if len(vals) == 0 {
		return stat{}, false
	}
	slices.Sort(vals)
	m := len(vals) / 2
	med := vals[m]
	if len(vals)%2 == 0 {
		med = (vals[m-1] + vals[m]) / 2
	}
	s := stat{med: med, n: len(vals)}
	if med != 0 {
		s.spread = (vals[len(vals)-1] - vals[0]) / 2 / math.Abs(med)
	}
	return s, true
}

func render(recs []record) string {
	var b strings.Builder
	rounds := map[int]bool{}
	for _, r := range recs {
		rounds[r.Round] = true
	}
	fmt.Fprintf(&b, "Medians over %d round(s); ±x%% = half the range across rounds, relative to the median.\n\n", len(rounds))
	b.WriteString("| metric | better | direct | protobalance | haproxy | protobalance ÷ haproxy | protobalance vs direct | haproxy vs direct |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, rw := range rows {
		st := map[string]stat{}
		ok := map[string]bool{}
		for _, t := range targets {
			var vals []float64
			for i := range recs {
				r := &recs[i]
				if r.Target != t || r.Scenario != rw.scenario {
					continue
				}
				if v, good := rw.value(r); good && !math.IsInf(v, 0) && !math.IsNaN(v) {
					vals = append(vals, v)
				}
			}
			st[t], ok[t] = summarize(vals)
		}
		better := "higher"
		if rw.lower {
			better = "lower"
		}
		fmt.Fprintf(&b, "| %s | %s |", rw.name, better)
		for _, t := range targets {
			if !ok[t] || (rw.balancer && t == "direct") {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&b, " %s ±%.0f%% |", num(st[t].med), st[t].spread*100)
		}
		b.WriteString(" " + ratio(st["protobalance"], st["haproxy"], ok["protobalance"] && ok["haproxy"]) + " |")
		for _, t := range []string{"protobalance", "haproxy"} {
			switch {
			case rw.balancer || !ok[t] || !ok["direct"]:
				b.WriteString(" – |")
			case rw.latency:
				fmt.Fprintf(&b, " %+.2f ms |", st[t].med-st["direct"].med)
			default:
				b.WriteString(" " + ratio(st[t], st["direct"], true) + " |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString(errorLines(recs))
	return b.String()
}

func ratio(a, b stat, ok bool) string {
	if !ok || b.med == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a.med/b.med)
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// errorLines sums failures per target so a fast but wrong run stands out.
func errorLines(recs []record) string {
	var b strings.Builder
	b.WriteString("\nErrors summed over all rounds (loadgen operation errors / checksum errors / runs cut short by -max):\n\n")
	for _, t := range targets {
		var errs, sums, cut, runs float64
		for _, r := range recs {
			if r.Target != t || r.Scenario == "start" {
				continue
			}
			runs++
			errs += r.Res.Errors
			sums += r.Res.BadSums
			if r.Res.TimedOut {
				cut++
			}
		}
		if runs > 0 {
			fmt.Fprintf(&b, "- %s: %.0f / %.0f / %.0f (of %.0f runs)\n", t, errs, sums, cut, runs)
		}
	}
	return b.String()
}
