package evloop

import "unsafe"

// uintptrOf is the index of slot s in the array starting at base.
func uintptrOf(s, base *Timer) int {
	return int((uintptr(unsafe.Pointer(s)) - uintptr(unsafe.Pointer(base))) / unsafe.Sizeof(Timer{}))
}
