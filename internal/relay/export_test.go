package relay

// BuffersOut is the number of copy buffers currently borrowed.
func BuffersOut() int64 { return buffersOut.Load() }
