package main

import (
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/demo"
	"github.com/protobalance/protobalance/internal/proxy"
)

// demoConfig is the demo's configuration, parsed like any config file so
// the demo exercises the real path. %q is the admin address, %s the
// listen address and the three nodes' addresses.
const demoConfig = `# protobalance demo
[admin]
listen = %q

[[listener]]
name = "demo"
bind = "%s"
cluster = "demo"

[[cluster]]
name = "demo"
algorithm = "round-robin"

[[cluster.node]]
name = "node-1"
address = "%s"
weight = 2

[[cluster.node]]
name = "node-2"
address = "%s"

[[cluster.node]]
name = "node-3"
address = "%s"
`

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "balancer `ADDR`ess")
	adminAddr := fs.String("admin", config.DefaultAdminListen, "admin API `ADDR`ess (\"\" = none; a busy port is replaced by a free one)")
	level := fs.String("log-level", "info", "debug | info | warn | error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	var nodes []*demo.Node
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	for i := 1; i <= 3; i++ {
		n, err := demo.Listen(fmt.Sprintf("node-%d", i), "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("demo node: %w", err)
		}
		nodes = append(nodes, n)
	}
	if *adminAddr != "" {
		if ln, err := net.Listen("tcp", *adminAddr); err != nil {
			host, _, _ := net.SplitHostPort(*adminAddr)
			fmt.Fprintf(stdout, "admin address %s is busy (%v); using a free port instead\n", *adminAddr, err)
			*adminAddr = net.JoinHostPort(host, "0")
		} else {
			ln.Close()
		}
	}
	text := fmt.Sprintf(demoConfig, *adminAddr, *listen, nodes[0].Addr(), nodes[1].Addr(), nodes[2].Addr())
	cfg, err := config.Parse("demo.toml", []byte(text), ".")
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	return serve(cfg, log, nil, nil, func(srv *proxy.Server, adm *admin.Server) {
		addr := srv.Listeners()[0].Addrs()[0].String()
		var b strings.Builder
		fmt.Fprintf(&b, "\nProto Balance demo: a balancer on %s in front of three nodes (round-robin, weights 2:1:1)\n", addr)
		for i, n := range nodes {
			w := 1
			if i == 0 {
				w = 2
			}
			fmt.Fprintf(&b, "  %-7s %s  weight %d\n", n.Name, n.Addr(), w)
		}
		fmt.Fprintf(&b, "\nTry it (each request is a new connection; node-1 answers twice as often):\n")
		fmt.Fprintf(&b, "  for i in 1 2 3 4 5 6 7 8; do curl -s http://%s/; done\n", addr)
		fmt.Fprintf(&b, "A plain line protocol works too (every line is answered by the node):\n")
		fmt.Fprintf(&b, "  printf 'hello\\nworld\\n' | nc -q1 %s %s\n", addrHost(addr), addrPort(addr))
		if adm != nil {
			a := adm.Addr().String()
			fmt.Fprintf(&b, "\nThe dashboard: open %s/ in a browser (green/yellow/red buttons per node).\n", adm.URL())
			fmt.Fprintf(&b, "The admin API is on %s (metrics: curl -s %s/metrics). Drain node-1 and watch:\n", a, adm.URL())
			fmt.Fprintf(&b, "  protobalance ctl --admin %s node demo node-1 state yellow\n", a)
			fmt.Fprintf(&b, "  protobalance ctl --admin %s cluster demo\n", a)
			fmt.Fprintf(&b, "  protobalance report --admin %s\n", a)
		}
		fmt.Fprintf(&b, "\nPress Ctrl-C to stop.\n")
		fmt.Fprint(stdout, b.String())
	}, nil)
}

func addrHost(a string) string { return a[:strings.LastIndexByte(a, ':')] }
func addrPort(a string) string { return a[strings.LastIndexByte(a, ':')+1:] }
