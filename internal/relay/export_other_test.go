//go:build !linux || relay_portable

package relay

// WatchesFinished: a finished direction notices an outside Close.
const WatchesFinished = false

// PipesOut is always 0 off Linux: there is no splice path.
func PipesOut() int64 { return 0 }
