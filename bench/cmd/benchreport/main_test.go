package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	s, ok := summarize([]float64{5, 1, 3, 4, 2})
	if !ok || s.med != 3 || s.n != 5 || s.spread != 2.0/3 {
		t.Errorf("odd: %+v", s)
	}
	s, _ = summarize([]float64{4, 2})
	if s.med != 3 {
		t.Errorf("even: median %v, want 3", s.med)
	}
	if _, ok := summarize(nil); ok {
		t.Error("empty input summarized")
	}
}

func TestRender(t *testing.T) {
	lines := []string{
		`{"round":1,"target":"haproxy","scenario":"short","cpu_ticks":100,"clk_tck":100,"res":{"ok":10000,"rate":5000,"p99_us":2000}}`,
		`{"round":1,"target":"protobalance","scenario":"short","cpu_ticks":150,"clk_tck":100,"res":{"ok":10000,"rate":4000,"p99_us":3000}}`,
		`{"round":1,"target":"direct","scenario":"short","cpu_ticks":0,"clk_tck":100,"res":{"ok":10000,"rate":8000,"p99_us":1000}}`,
		`{"round":1,"target":"protobalance","scenario":"idle","rss_before_kb":1000,"rss_after_kb":100000,"res":{"opened":9900,"alive":9900,"errors":2}}`,
	}
	var recs []record
	for _, l := range lines {
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	out := render(recs)
	for _, want := range []string{
		"| CPU-s per 10,000 connections (short) | lower | – | 1.50 ±0% | 1.00 ±0% | 1.50x | – | – |",
		"| connections/s (short) | higher | 8000 ±0% | 4000 ±0% | 5000 ±0% | 0.80x | 0.50x | 0.62x |",
		"| p99 latency, short (saturated), ms | lower | 1.00 ±0% | 3.00 ±0% | 2.00 ±0% | 1.50x | +2.00 ms | +1.00 ms |",
		"| RSS per idle connection, KB | lower | – | 10.0 ±0% | – | – | – | – |",
		"- protobalance: 2 / 0 / 0 (of 2 runs)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
