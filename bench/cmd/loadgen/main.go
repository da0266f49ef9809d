// Command loadgen drives load through a TCP target (a balancer, or the nodes
// directly) and prints one JSON line describing what happened.
//
// Subcommands (all bounded by a count and by -max, and stop by themselves):
//
//	short      connection per request: dial, ~100 B request, 1 KB response, close
//	keepalive  the same requests over -c persistent connections
//	bulk       streams of -up/-down bytes, checksummed both ways
//	idle       open -k connections, round-trip on each, hold, round-trip again
//	probe      repeat tiny round trips until one succeeds (launch-to-first-connection)
//
// -target takes one address or a comma-separated list, used round-robin (the
// "direct" baseline passes the three nodes). Run "loadgen SUBCOMMAND -h" for flags.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the JSON line printed by every subcommand; zero fields are omitted.
type Result struct {
	Mode     string           `json:"mode"`
	Target   string           `json:"target"`
	OK       int64            `json:"ok"`     // completed connections, requests, streams or live idle connections
	Errors   int64            `json:"errors"` // failed operations of any kind
	FirstErr string           `json:"first_error,omitempty"`
	Elapsed  float64          `json:"elapsed_s"`
	Rate     float64          `json:"rate,omitempty"`   // OK per second
	P50us    float64          `json:"p50_us,omitempty"` // latency percentiles, microseconds
	P99us    float64          `json:"p99_us,omitempty"`
	MaxUs    float64          `json:"max_us,omitempty"`
	Bytes    int64            `json:"bytes,omitempty"` // payload bytes moved, both directions
	Gbits    float64          `json:"gbit_s,omitempty"`
	BadSums  int64            `json:"checksum_errors,omitempty"`
	Short    int64            `json:"bytes_missing,omitempty"`
	Opened   int64            `json:"opened,omitempty"` // idle: connections that completed the first round trip
	Alive    int64            `json:"alive,omitempty"`  // idle: of those, still answering after the hold
	OpenSec  float64          `json:"open_s,omitempty"` // idle: time to open them all
	LaunchMs float64          `json:"launch_ms,omitempty"`
	TimedOut bool             `json:"timed_out,omitempty"` // -max ended the run before the count
	Nodes    map[string]int64 `json:"nodes,omitempty"`     // responses per node name
}

var commands = map[string]func(args []string) (*Result, error){
	"short":     runShort,
	"keepalive": runKeepalive,
	"bulk":      runBulk,
	"idle":      runIdle,
	"probe":     runProbe,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: loadgen short|keepalive|bulk|idle|probe [flags]")
		os.Exit(2)
	}
	res, err := commands[os.Args[1]](os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

// common holds the flags every subcommand shares.
type common struct {
	targets []string
	target  string
	max     time.Duration
	timeout time.Duration
	next    atomic.Uint64
}

func newFlags(name string, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&c.target, "target", "127.0.9.10:23010", "address, or comma-separated addresses used round-robin")
	fs.DurationVar(&c.max, "max", 30*time.Second, "hard bound on the run's duration")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-operation timeout (dial, each round trip)")
	return fs
}

func (c *common) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, t := range strings.Split(c.target, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if err := loopbackOnly(t); err != nil {
				return err
			}
			c.targets = append(c.targets, t)
		}
	}
	if len(c.targets) == 0 {
		return fmt.Errorf("-target is empty")
	}
	if c.max <= 0 {
		return fmt.Errorf("-max must be positive")
	}
	return nil
}

// loopbackOnly refuses anything outside 127.0.0.0/8: this tool must never
// load a real network.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || ip.To4()[0] != 127 {
		return fmt.Errorf("target %q: only 127.0.0.0/8 addresses are allowed", addr)
	}
	return nil
}

// dial connects to the next target in round-robin order.
func (c *common) dial() (*net.TCPConn, error) {
	t := c.targets[(c.next.Add(1)-1)%uint64(len(c.targets))]
	conn, err := net.DialTimeout("tcp", t, c.timeout)
	if err != nil {
		return nil, err
	}
	return conn.(*net.TCPConn), nil
}

// tally collects outcomes from many goroutines.
type tally struct {
	mu       sync.Mutex
	ok, errs int64
	firstErr string
	lat      []time.Duration
	nodes    map[string]int64
}

func (t *tally) success(lat time.Duration, node string) {
	t.mu.Lock()
	t.ok++
	if lat > 0 {
		t.lat = append(t.lat, lat)
	}
	if node != "" {
		if t.nodes == nil {
			t.nodes = map[string]int64{}
		}
		t.nodes[node]++
	}
	t.mu.Unlock()
}

func (t *tally) fail(err error) {
	t.mu.Lock()
	t.errs++
	if t.firstErr == "" {
		t.firstErr = err.Error()
	}
	t.mu.Unlock()
}

// result fills the common fields of r from the tally and the elapsed time.
func (t *tally) result(r *Result, target string, elapsed time.Duration) *Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.Target = target
	r.OK, r.Errors, r.FirstErr, r.Nodes = t.ok, t.errs, t.firstErr, t.nodes
	r.Elapsed = round3(elapsed.Seconds())
	if elapsed > 0 {
		r.Rate = round3(float64(t.ok) / elapsed.Seconds())
	}
	if len(t.lat) > 0 {
		slices.Sort(t.lat)
		r.P50us = pct(t.lat, 0.50)
		r.P99us = pct(t.lat, 0.99)
		r.MaxUs = float64(t.lat[len(t.lat)-1].Microseconds())
	}
	return r
}

// pct is the nearest-rank percentile of sorted, in microseconds.
func pct(sorted []time.Duration, p float64) float64 {
	i := int(float64(len(sorted))*p+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i].Microseconds())
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// workers runs c goroutines, each calling the function made for it by
// newFn until that returns false or max has elapsed. It returns the elapsed
// time and whether the deadline cut the run short.
func workers(c int, max time.Duration, newFn func() func() bool) (time.Duration, bool) {
	start := time.Now()
	deadline := start.Add(max)
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn := newFn()
			for time.Now().Before(deadline) && fn() {
			}
		}()
	}
	wg.Wait()
	return time.Since(start), !time.Now().Before(deadline)
}
