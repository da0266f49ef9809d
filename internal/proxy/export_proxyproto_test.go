package proxy

import (
	"testing"
	"time"
)

// SetProxyHeaderTimeout sets how long accept_proxy listeners wait for the
// PROXY header, for the rest of the test t.
func SetProxyHeaderTimeout(t testing.TB, d time.Duration) {
	old := proxyHeaderTimeout.Swap(int64(d))
	t.Cleanup(func() { proxyHeaderTimeout.Store(old) })
}
