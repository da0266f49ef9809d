package stats

import (
	"math"
	"testing"
	"time"
)

func TestNodeHelpers(t *testing.T) {
	var n Node
	if _, ok := n.MeanConnBytes(); ok {
		t.Error("MeanConnBytes ok before any connection")
	}
	n.Total.Add(2)
	n.ConnectMS.Observe(4 * time.Millisecond)
	n.ConnectMS.Observe(12 * time.Millisecond)
	n.AddBytes(100, 0)
	n.AddBytes(0, 900)
	n.AddBytes(0, 0)
	if n.Total.Load() != 2 || n.BytesIn.Load() != 100 || n.BytesOut.Load() != 900 {
		t.Errorf("counters: total %d in %d out %d", n.Total.Load(), n.BytesIn.Load(), n.BytesOut.Load())
	}
	if m, ok := n.MeanConnBytes(); !ok || m != 500 {
		t.Errorf("MeanConnBytes = %v, %v; want 500", m, ok)
	}
	if got := n.ConnectMS.Value(); got != 5 { // 4 + (12-4)/8
		t.Errorf("ConnectMS = %v, want 5", got)
	}
	if v := n.TrafficRate.Value(); v <= 0 || v > 100 { // 1000 B over a 10 s window
		t.Errorf("TrafficRate = %v, want just under 100", v)
	}
	n.SetRateWindow(time.Second)
	if n.ConnRate.Window() != time.Second || n.TrafficRate.Window() != time.Second {
		t.Errorf("windows %v %v", n.ConnRate.Window(), n.TrafficRate.Window())
	}
	if v := n.TrafficRate.Value(); math.Abs(v-100) > 1 { // carried over, then decaying faster
		t.Errorf("TrafficRate after window change = %v, want just under 100", v)
	}
}
