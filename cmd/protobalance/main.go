// Command protobalance is a layer-4 TCP load balancer.
//
//	protobalance run -c FILE     run in the foreground
//	protobalance check -c FILE   validate a config file
//	protobalance demo            three demo nodes and a balancer on loopback
//	protobalance ctl ...         drive a running balancer through its admin API
//	protobalance report          the executor-style report of a running balancer
//	protobalance version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `usage: protobalance <command> [flags]

commands:
  run -c FILE        run the balancer in the foreground (logs to stderr)
  check -c FILE      validate FILE; exit 1 with FILE:LINE: message when invalid
  demo [--listen A]  three built-in demo nodes behind a balancer on loopback
  ctl [--admin A] COMMAND
                     change node state/weight, add/remove nodes, switch a
                     listener's cluster, reload, show affinity and bans
  report [--admin A] the executor-style report of a running balancer
  version            print the version

Run 'protobalance <command> -h' for a command's flags.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(rest, stderr)
	case "check":
		err = cmdCheck(rest, stdout, stderr)
	case "demo":
		err = cmdDemo(rest, stdout, stderr)
	case "ctl":
		err = cmdCtl(rest, stdout, stderr)
	case "report":
		err = cmdReport(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "protobalance", versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "protobalance: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	case errors.Is(err, errReported):
		return 1
	}
	fmt.Fprintln(stderr, "protobalance:", err)
	return 1
}

// newFlags makes a flag set that reports its own errors on stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("protobalance "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, turning a flag error into errUsage (already
// reported by the flag set) and refusing stray arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}
