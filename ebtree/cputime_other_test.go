//go:build !linux

package ebtree

import "testing"

// cpuTime reports nothing where per-thread CPU time is not wired up.
func cpuTime(*testing.B) func() { return func() {} }
