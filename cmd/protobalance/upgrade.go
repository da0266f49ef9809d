package main

// Zero-downtime binary upgrade (SIGUSR2) with tableflip, and systemd
// readiness.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/cloudflare/tableflip"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/protobalance/protobalance/internal/proxy"
)

// upgradeListeners are the listen hooks of the proxy and of the admin
// server under tableflip, which hands a socket to the new process under a
// name: the proxy's by their bind ("host:port"), so a listener keeps its
// socket across an upgrade even when a reload renamed it; the admin
// server's as "admin host:port", apart from them. A bind to port 0 is
// handed over only for the first listener asking for it (two listeners on
// "127.0.0.1:0" would swap sockets otherwise); the others get new ports.
// An inherited socket that a reload had stopped (its listener was removed,
// then the file brought it back) is replaced by a new one.
func upgradeListeners(upg *tableflip.Upgrader) (proxyListen, adminListen func(network, addr string) (net.Listener, error)) {
	var mu sync.Mutex
	zeroPort := map[string]bool{}
	plain := func(network, addr string) (net.Listener, error) {
		return proxy.ListenConfig().Listen(context.Background(), network, addr)
	}
	proxyListen = func(network, addr string) (net.Listener, error) {
		if _, port, _ := net.SplitHostPort(addr); port == "0" {
			mu.Lock()
			again := zeroPort[addr]
			zeroPort[addr] = true
			mu.Unlock()
			if again {
				return plain(network, addr)
			}
		}
		ln, err := upg.Listen(network, addr)
		if err != nil || proxy.Listening(ln) {
			return ln, err
		}
		ln.Close()
		if ln, err = plain(network, addr); err != nil {
			return nil, err
		}
		if err := upg.AddListener(network, addr, ln.(*net.TCPListener)); err != nil {
			ln.Close()
			return nil, err
		}
		return ln, nil
	}
	adminListen = func(network, addr string) (net.Listener, error) {
		return upg.ListenWithCallback(network, "admin "+addr, func(network, _ string) (net.Listener, error) {
			return net.Listen(network, addr)
		})
	}
	return proxyListen, adminListen
}

// upgradeReady tells systemd, when NOTIFY_SOCKET is set, that this process
// is ready and is the service's main process (after an upgrade it is the
// old one's child: the unit needs NotifyAccess=all), then tells the old
// process, if any, which then drains. systemd hears first, so the main PID
// it watches never exits before the new one is known.
func upgradeReady(upg *tableflip.Upgrader, log *slog.Logger) {
	if _, err := daemon.SdNotify(false, fmt.Sprintf("%s\nMAINPID=%d", daemon.SdNotifyReady, os.Getpid())); err != nil {
		log.Warn("systemd readiness notification failed", "err", err)
	}
	if err := upg.Ready(); err != nil {
		log.Error("telling the old process this one is ready failed", "err", err)
		return
	}
	if upg.HasParent() {
		log.Info("upgrade: ready; the old process stops accepting and drains", "pid", os.Getpid())
	}
}

// upgrade starts a new process with the listening sockets (SIGUSR2); its
// result arrives on done. The affinity store is flushed and closed first:
// the new process opens the bbolt file before it listens, and could not
// while this one holds it. Records this process learns from now on stay in
// its memory (the new process learns those clients again at their next
// connection, or from Redis in shared mode), also when the upgrade fails.
// It reports whether it closed the store.
func upgrade(srv *proxy.Server, upg *tableflip.Upgrader, done chan<- error, log *slog.Logger) bool {
	detached := srv.DetachStore()
	if detached {
		log.Info("upgrade: affinity store flushed and closed for the new process")
	}
	log.Info("upgrade: starting the new process", "binary", os.Args[0])
	go func() { done <- upg.Upgrade() }()
	return detached
}
