package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/config"
)

const ctlUsage = `usage: protobalance ctl [--admin HOST:PORT] [--token-file F] [--ca F] [--json] COMMAND

commands:
  clusters                              every cluster with node counts by state
  cluster NAME                          one cluster's nodes with live figures
  listeners                             every listener and the cluster it feeds
  node CLUSTER NODE state green|yellow|red
  node CLUSTER NODE weight N
  node-add CLUSTER NAME ADDRESS [--weight N] [--fallover NODE] [--standby] [--max-conns N] [--state S]
  node-rm CLUSTER NAME
  listener NAME cluster CLUSTER         point a listener at another cluster
  reload                                reload the config file (as SIGHUP)
  affinity IP [--forget]                show (or drop) a client's affinity record
  bans [--lift IP]                      list bans (or lift one)

--admin takes HOST:PORT (http) or a URL (https://HOST:PORT); flags may
follow the command. Errors exit 1 with the API's reason.
`

// ctlFlags are the flags of ctl and report; both accept the connection
// flags, ctl its command-specific ones too.
type ctlFlags struct {
	admin, tokenFile, ca string
	json                 bool
	weight, maxConns     int
	fallover, state      string
	standby, forget      bool
	lift                 string
	interval             time.Duration
}

func (f *ctlFlags) connection(fs *flag.FlagSet) {
	fs.StringVar(&f.admin, "admin", config.DefaultAdminListen, "admin API `HOST:PORT` or URL")
	fs.StringVar(&f.tokenFile, "token-file", "", "`FILE` holding the API token")
	fs.StringVar(&f.ca, "ca", "", "PEM `FILE` of the CA to trust for an https admin URL")
}

// parseInterleaved parses flags that may come before, between or after
// positional arguments, returning the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func cmdCtl(args []string, stdout, stderr io.Writer) error {
	var f ctlFlags
	fs := newFlags("ctl", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	f.connection(fs)
	fs.BoolVar(&f.json, "json", false, "print the API's JSON answer as it is")
	fs.IntVar(&f.weight, "weight", -1, "node-add: weight")
	fs.IntVar(&f.maxConns, "max-conns", -1, "node-add: max_conns")
	fs.StringVar(&f.fallover, "fallover", "", "node-add: fall-over node")
	fs.StringVar(&f.state, "state", "", "node-add: state")
	fs.BoolVar(&f.standby, "standby", false, "node-add: standby node")
	fs.BoolVar(&f.forget, "forget", false, "affinity: drop the record")
	fs.StringVar(&f.lift, "lift", "", "bans: lift the ban of `IP`")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	c, err := newAPIClient(&f)
	if err != nil {
		return err
	}
	run, ok := ctlCommands[pos[0]]
	if !ok || !run.argsOK(pos[1:]) {
		if ok {
			fmt.Fprintf(stderr, "ctl %s: wrong arguments\n\n", pos[0])
		} else {
			fmt.Fprintf(stderr, "ctl: unknown command %q\n\n", pos[0])
		}
		fs.Usage()
		return errUsage
	}
	return run.fn(ctlEnv{c: c, f: &f, out: stdout}, pos[1:])
}

// ctlEnv is what a ctl command needs.
type ctlEnv struct {
	c   *apiClient
	f   *ctlFlags
	out io.Writer
}

// ctlCommand is one ctl command and its argument count check.
type ctlCommand struct {
	argsOK func([]string) bool
	fn     func(e ctlEnv, args []string) error
}

func nargs(n int) func([]string) bool { return func(a []string) bool { return len(a) == n } }

var ctlCommands = map[string]ctlCommand{
	"clusters":  {nargs(0), ctlClusters},
	"cluster":   {nargs(1), ctlCluster},
	"listeners": {nargs(0), ctlListeners},
	"node": {func(a []string) bool { return len(a) == 4 && (a[2] == "state" || a[2] == "weight") },
		ctlNode},
	"node-add": {nargs(3), ctlNodeAdd},
	"node-rm": {nargs(2), func(e ctlEnv, a []string) error {
		return e.change("DELETE", "/api/clusters/"+esc(a[0])+"/nodes/"+esc(a[1]), nil)
	}},
	"listener": {func(a []string) bool { return len(a) == 3 && a[1] == "cluster" }, func(e ctlEnv, a []string) error {
		return e.change("PUT", "/api/listeners/"+esc(a[0]), admin.ListenerUpdate{Cluster: a[2]})
	}},
	"reload": {nargs(0), func(e ctlEnv, _ []string) error { return e.change("POST", "/api/reload", nil) }},
	"affinity": {nargs(1), func(e ctlEnv, a []string) error {
		if e.f.forget {
			return e.change("DELETE", "/api/affinity/"+esc(a[0]), nil)
		}
		var rec admin.AffinityRecord
		return e.show("/api/affinity/"+esc(a[0]), &rec, func() {
			fmt.Fprintf(e.out, "client %s -> cluster %s node %s (last seen %s)\n", rec.Client, rec.Cluster, rec.Node, rec.LastSeen)
		})
	}},
	"bans": {nargs(0), func(e ctlEnv, _ []string) error {
		if e.f.lift != "" {
			return e.change("DELETE", "/api/bans/"+esc(e.f.lift), nil)
		}
		var bl admin.BanList
		return e.show("/api/bans", &bl, func() {
			tw := table(e.out, "CLIENT\tLISTENER\tUNTIL")
			for _, b := range bl.Bans {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", b.Client, b.Listener, b.Until)
			}
			tw.Flush()
		})
	}},
}

func esc(s string) string { return url.PathEscape(s) }

// change sends a change and prints the API's one-line result.
func (e ctlEnv) change(method, path string, body any) error {
	var res admin.Result
	raw, err := e.c.do(method, path, body, &res)
	if err != nil {
		return err
	}
	if e.f.json {
		_, err = e.out.Write(raw)
		return err
	}
	fmt.Fprintln(e.out, res.Message)
	return nil
}

// show fetches a document and prints it with print, or as JSON.
func (e ctlEnv) show(path string, doc any, print func()) error {
	raw, err := e.c.do("GET", path, nil, doc)
	if err != nil {
		return err
	}
	if e.f.json {
		_, err = e.out.Write(raw)
		return err
	}
	print()
	return nil
}

func table(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

func ctlClusters(e ctlEnv, _ []string) error {
	var cl admin.ClusterList
	return e.show("/api/clusters", &cl, func() {
		tw := table(e.out, "CLUSTER\tALGORITHM\tNODES\tGREEN\tYELLOW\tRED\tUNAVAILABLE\tACTIVE\tTOTAL")
		for _, c := range cl.Clusters {
			by := map[string]int{}
			var active int64
			var total uint64
			down := 0
			for _, n := range c.Nodes {
				by[n.State]++
				active += n.Active
				total += n.Total
				if !n.Available {
					down++
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", c.Name, c.Algorithm, len(c.Nodes),
				by["green"], by["yellow"], by["red"], down, active, total)
		}
		tw.Flush()
	})
}

func ctlCluster(e ctlEnv, a []string) error {
	var c admin.Cluster
	return e.show("/api/clusters/"+esc(a[0]), &c, func() {
		fmt.Fprintf(e.out, "cluster %s (%s)\n", c.Name, c.Algorithm)
		tw := table(e.out, "NODE\tADDRESS\tSTATE\tAVAILABLE\tWEIGHT\tACTIVE\tTOTAL\tFAILURES\tBYTES IN\tBYTES OUT\tKB/S\tCONNECT MS\tFALLOVER\tSTANDBY")
		for _, n := range c.Nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%s\t%s\n", n.Name, n.Address, n.State,
				yesNo(n.Available), n.Weight, n.Active, n.Total, n.Failures, n.BytesIn, n.BytesOut,
				n.TrafficRate/1000, n.ConnectMS, dash(n.Fallover), yesNo(n.Standby))
		}
		tw.Flush()
	})
}

func ctlListeners(e ctlEnv, _ []string) error {
	var ll admin.ListenerList
	return e.show("/api/listeners", &ll, func() {
		tw := table(e.out, "LISTENER\tBIND\tCLUSTER\tACCEPTED\tACTIVE\tNO NODE\tREFUSED")
		for _, l := range ll.Listeners {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", l.Name, l.Bind, l.Cluster, l.Accepted, l.Active, l.NoNode, l.Refused)
		}
		tw.Flush()
	})
}

func ctlNode(e ctlEnv, a []string) error {
	var u admin.NodeUpdate
	if a[2] == "state" {
		u.State = &a[3]
	} else {
		w, err := strconv.Atoi(a[3])
		if err != nil {
			return fmt.Errorf("weight %q: not a number", a[3])
		}
		u.Weight = &w
	}
	return e.change("PUT", "/api/clusters/"+esc(a[0])+"/nodes/"+esc(a[1]), u)
}

func ctlNodeAdd(e ctlEnv, a []string) error {
	spec := admin.NodeSpec{Name: a[1], Address: a[2], Fallover: e.f.fallover, Standby: e.f.standby}
	if e.f.weight >= 0 {
		spec.Weight = &e.f.weight
	}
	if e.f.maxConns >= 0 {
		spec.MaxConns = &e.f.maxConns
	}
	if e.f.state != "" {
		spec.State = &e.f.state
	}
	return e.change("POST", "/api/clusters/"+esc(a[0])+"/nodes", spec)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// apiClient calls the admin API.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

func newAPIClient(f *ctlFlags) (*apiClient, error) {
	c := &apiClient{base: f.admin, hc: &http.Client{Timeout: 30 * time.Second}}
	if !strings.Contains(c.base, "://") {
		c.base = "http://" + c.base
	}
	c.base = strings.TrimSuffix(c.base, "/")
	if f.tokenFile != "" {
		data, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, err
		}
		c.token = strings.TrimSpace(string(data))
	}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate", f.ca)
		}
		c.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return c, nil
}

// do sends one request and decodes a 2xx answer into out; any other
// answer becomes an error carrying the API's reason (and details, one per
// line, e.g. the FILE:LINE problems of a rejected reload).
func (c *apiClient) do(method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var ed admin.ErrorDoc
		if json.Unmarshal(raw, &ed) != nil || ed.Message == "" {
			return nil, fmt.Errorf("admin API: %s %s: %s", method, path, resp.Status)
		}
		msg := fmt.Sprintf("%s (%d %s)", ed.Message, resp.StatusCode, ed.Code)
		for _, d := range ed.Details {
			msg += "\n  " + d
		}
		return nil, errors.New(msg)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("admin API: %s %s: bad answer: %v", method, path, err)
		}
	}
	return raw, nil
}
