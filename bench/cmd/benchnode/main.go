// Command benchnode runs the benchmark's backend nodes: several TCP listeners
// in one process, each answering the wire protocol of bench/internal/wire
// with its own name (n1, n2, ... in the order given).
//
// Usage:
//
//	benchnode -listen 127.0.9.1:23001,127.0.9.2:23001,127.0.9.3:23001 [-mode auto]
//
// It prints "ready" on stdout once every listener is open and runs until
// SIGINT or SIGTERM. -mode forces one behaviour for every connection instead
// of reading the client's first line: "rr" (request/response), "echo" or
// "hold" (read and discard until EOF, never answer).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/protobalance/protobalance/bench/internal/node"
)

func main() {
	listen := flag.String("listen", "127.0.9.1:23001,127.0.9.2:23001,127.0.9.3:23001", "comma-separated listen addresses, named n1, n2, ...")
	mode := flag.String("mode", "auto", "auto | rr | echo | hold")
	flag.Parse()
	if !slices.Contains(node.Modes, *mode) {
		log.Fatalf("benchnode: -mode %q: want one of %v", *mode, node.Modes)
	}
	var lns []net.Listener
	for i, addr := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", strings.TrimSpace(addr))
		if err != nil {
			log.Fatalf("benchnode: %v", err)
		}
		lns = append(lns, ln)
		n := &node.Node{Name: "n" + strconv.Itoa(i+1), Mode: *mode}
		go n.Serve(ln)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	for _, ln := range lns {
		ln.Close()
	}
}
