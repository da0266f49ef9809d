//go:build linux && !relay_portable

package relay

// WatchesFinished: a finished direction notices an outside Close.
const WatchesFinished = true

// PipesOut is the number of splice pipes currently borrowed.
func PipesOut() int64 { return pipesOut.Load() }

// IdlePipes is the number of pipes waiting in the pool.
func IdlePipes() int { return len(idlePipes) }

// DrainIdlePipes closes the pooled pipes.
func DrainIdlePipes() int { return drainIdlePipes() }
