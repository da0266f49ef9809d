package ebtree

import (
	"runtime"
	"syscall"
	"testing"
)

// cpuTime pins the benchmark goroutine to its thread and returns a func that
// reports the thread's CPU time per op as cpu-ns/op. On a shared machine this
// leaves out the time the benchmark waited for a CPU, which wall-clock ns/op
// includes; cache interference from neighbours remains. Use as
// defer cpuTime(b)() right after b.ResetTimer.
func cpuTime(b *testing.B) func() {
	runtime.LockOSThread()
	start := threadCPU()
	return func() {
		d := threadCPU() - start
		runtime.UnlockOSThread()
		if b.N > 0 {
			b.ReportMetric(float64(d)/float64(b.N), "cpu-ns/op")
		}
	}
}

func threadCPU() int64 {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
