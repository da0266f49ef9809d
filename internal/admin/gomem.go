package admin

import "runtime/metrics"

// goMemory is the Go runtime's memory that is mapped and not returned to
// the OS, by class: what an RSS graph is made of on the Go side, read
// without stopping the world (runtime/metrics). Beyond it, RSS counts the
// binary's pages and memory the kernel maps for the process.
var goMemoryClasses = []struct {
	class   string
	samples []string
}{
	{"heap_objects", []string{"/memory/classes/heap/objects:bytes"}},
	// Heap pages held but not in use: fragmentation and what the
	// scavenger has not returned yet.
	{"heap_free", []string{"/memory/classes/heap/free:bytes", "/memory/classes/heap/unused:bytes"}},
	{"stacks", []string{"/memory/classes/heap/stacks:bytes", "/memory/classes/os-stacks:bytes"}},
	{"runtime", []string{
		"/memory/classes/metadata/mcache/free:bytes", "/memory/classes/metadata/mcache/inuse:bytes",
		"/memory/classes/metadata/mspan/free:bytes", "/memory/classes/metadata/mspan/inuse:bytes",
		"/memory/classes/metadata/other:bytes", "/memory/classes/profiling/buckets:bytes",
		"/memory/classes/other:bytes"}},
}

// goMemory reads the classes, in goMemoryClasses' order.
func goMemory() []uint64 {
	var samples []metrics.Sample
	for _, c := range goMemoryClasses {
		for _, name := range c.samples {
			samples = append(samples, metrics.Sample{Name: name})
		}
	}
	metrics.Read(samples)
	out := make([]uint64, len(goMemoryClasses))
	i := 0
	for k, c := range goMemoryClasses {
		for range c.samples {
			if samples[i].Value.Kind() == metrics.KindUint64 {
				out[k] += samples[i].Value.Uint64()
			}
			i++
		}
	}
	return out
}
