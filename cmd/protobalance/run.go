package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/protobalance/protobalance/internal/admin"
	"github.com/protobalance/protobalance/internal/adminstate"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/control"
	"github.com/protobalance/protobalance/internal/proxy"
	"github.com/protobalance/protobalance/internal/relay"
)

func cmdRun(args []string, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	file := fs.String("c", "", "config `FILE` (required)")
	level := fs.String("log-level", "info", "debug | info | warn | error (debug logs one line per connection)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		fmt.Fprintln(stderr, "run: -c FILE is required")
		fs.Usage()
		return errUsage
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	// Run-time changes (states, weights, listener switches) are kept
	// beside the store and restored at the next start.
	state, err := adminstate.Open(adminstate.PathFor(cfg.Store.Path), log)
	if err != nil {
		return err
	}
	reload := func(srv *proxy.Server) error {
		next, err := config.Load(*file)
		if err != nil {
			return err
		}
		n, _ := effectiveMaxConns(next.Global.MaxConns)
		if err := srv.Apply(next, n); err != nil {
			return err
		}
		if err := state.Prune(next); err != nil {
			log.Error("saving the administrative state", "err", err)
		}
		return nil
	}
	// tableflip hands the listening sockets (proxy and admin) to a new
	// process on SIGUSR2; the first process simply binds them.
	upg, err := tableflip.New(tableflip.Options{ListenConfig: proxy.ListenConfig()})
	if err != nil {
		return err
	}
	defer upg.Stop()
	return serve(cfg, log, state, reload, nil, upg)
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	file := fs.String("c", "", "config `FILE` (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		fmt.Fprintln(stderr, "check: -c FILE is required")
		fs.Usage()
		return errUsage
	}
	cfg, err := config.Load(*file)
	if err != nil {
		// The error already reads FILE:LINE: message; print it bare.
		fmt.Fprintln(stderr, err)
		return errReported
	}
	if _, err := proxy.New(cfg, proxy.Options{Relay: relay.NewGoroutine()}); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *file, err)
		return errReported
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d clusters)\n", *file, len(cfg.Listeners), len(cfg.Clusters))
	return nil
}

// errReported is an exit-1 error whose message has already been printed.
var errReported = reportedError{}

type reportedError struct{}

func (reportedError) Error() string { return "" }

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// serve runs cfg until SIGINT or SIGTERM, then shuts down gracefully within
// shutdown_timeout. SIGHUP and POST /api/reload call reload, when set (one
// at a time): a config that fails to load or apply is logged and changes
// nothing. The admin server, unless [admin] listen is "", starts once the
// listeners are open and stops first on shutdown; when it cannot start
// (bind error, missing token off loopback) serve stops and fails. ready,
// when set, is called once everything is open; adm is nil when the admin
// server is disabled.
//
// upg, when set, opens every listening socket, so that SIGUSR2 starts the
// binary found at os.Args[0] with them (see upgrade): once it is ready,
// this process stops accepting and drains as on SIGTERM. serve tells
// systemd (NOTIFY_SOCKET) it is ready, and its PID, once upg is ready.
func serve(cfg *config.Config, log *slog.Logger, state *adminstate.State, reload func(*proxy.Server) error,
	ready func(srv *proxy.Server, adm *admin.Server), upg *tableflip.Upgrader) error {
	started := time.Now()
	maxConns, how := effectiveMaxConns(cfg.Global.MaxConns)
	opt := proxy.Options{Log: log, Relay: relay.NewGoroutine(), MaxConns: maxConns}
	var adminListen func(network, addr string) (net.Listener, error)
	var exit <-chan struct{} // closed once a new process has taken over
	if upg != nil {
		opt.Listen, adminListen = upgradeListeners(upg)
		exit = upg.Exit()
	}
	srv, err := proxy.New(cfg, opt)
	if err != nil {
		return err
	}
	// Before the listeners open: no connection sees a node the operator
	// took red come back green.
	if err := state.Restore(srv); err != nil {
		log.Error("saving the administrative state", "err", err)
	}
	// With [store] redis, twins share these changes (F9).
	if err := state.Share(cfg.Store.Redis, srv); err != nil {
		return err
	}
	defer state.Close()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if upg != nil {
		signal.Notify(sigs, syscall.SIGUSR2)
	}
	defer signal.Stop(sigs)
	if err := srv.Start(); err != nil {
		return err
	}
	for _, l := range srv.Listeners() {
		log.Info("listening", "listener", l.Name(), "addrs", fmt.Sprint(l.Addrs()), "cluster", l.Cluster().Name)
	}
	var doReload func() error
	if reload != nil {
		var mu sync.Mutex // SIGHUP and the API reload one at a time
		doReload = func() error {
			mu.Lock()
			defer mu.Unlock()
			return reload(srv)
		}
	}
	adm, err := startAdmin(cfg, srv, state, doReload, started, log, adminListen)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		return err
	}
	log.Info("started", "version", version, "max_conns", maxConns, "max_conns_from", how, "pid", os.Getpid())
	if upg != nil {
		upgradeReady(upg, log)
	}
	if ready != nil {
		ready(srv, adm)
	}
	upgraded := make(chan error, 1) // the result of an upgrade under way
	detached := false               // the affinity store was closed for an upgrade
wait:
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				if doReload == nil {
					log.Warn("SIGHUP: nothing to reload")
				} else if err := doReload(); err != nil {
					log.Error("reload rejected; the running configuration is unchanged", "err", err)
				}
				continue
			case syscall.SIGUSR2:
				detached = upgrade(srv, upg, upgraded, log) || detached
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "grace", cfg.Global.ShutdownTimeout)
			if upg != nil {
				// tableflip holds a copy of every listening socket: close
				// those (and stop an upgrade under way) so that closing
				// ours below stops the listening; Exit is closed once done.
				upg.Stop()
				<-exit
			}
			break wait
		case err := <-upgraded:
			if err != nil && detached {
				log.Error("upgrade failed; this process keeps serving, but the affinity records it learns "+
					"are no longer persisted or shared until it restarts", "err", err)
			} else if err != nil {
				log.Error("upgrade failed; this process keeps serving", "err", err)
			}
		case <-exit:
			log.Info("upgraded: the new process is ready and accepting; draining",
				"grace", cfg.Global.ShutdownTimeout)
			break wait
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Global.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	if adm != nil {
		adm.Shutdown(ctx)
	}
	srv.Shutdown(ctx)
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// startAdmin starts the admin API of cfg over srv, or returns nil when
// [admin] listen is "". Changes to [admin] in a reloaded file take effect
// at the next start.
func startAdmin(cfg *config.Config, srv *proxy.Server, state *adminstate.State, reload func() error,
	started time.Time, log *slog.Logger, listen func(network, addr string) (net.Listener, error)) (*admin.Server, error) {
	if cfg.Admin.Listen == "" {
		return nil, nil
	}
	ctl := control.New(srv, control.Options{Reload: reload, Started: started, Version: version, State: state})
	adm, err := admin.New(cfg.Admin, ctl, log)
	if err != nil {
		return nil, err
	}
	if err := adm.StartWith(listen); err != nil {
		return nil, err
	}
	return adm, nil
}

// fdReserve is kept free of proxied connections for listeners, the admin
// server, the store, logs and health checks.
const fdReserve = 100

// effectiveMaxConns resolves [global] max_conns: 0 means as many as the
// descriptor limit allows, each proxied connection holding two descriptors.
func effectiveMaxConns(configured int) (int, string) {
	if configured > 0 {
		return configured, "config"
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 0, "unknown descriptor limit: no cap"
	}
	limit := min(rl.Cur, 1<<24) // RLIM_INFINITY would overflow
	n := (int64(limit) - fdReserve) / 2
	if n < 1 {
		n = 1
	}
	return int(n), fmt.Sprintf("descriptor limit %d: (limit - %d) / 2", rl.Cur, fdReserve)
}
