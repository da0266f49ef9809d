package evloop

// FreeList keeps up to Max spare objects for reuse by one goroutine (a
// loop): no locking, and unlike a sync.Pool nothing is dropped at a
// collection, so a steady load allocates nothing.
type FreeList[T any] struct {
	Max   int
	items []*T
}

// Get returns a spare object, or a new zero one.
func (f *FreeList[T]) Get() *T {
	if n := len(f.items); n > 0 {
		x := f.items[n-1]
		f.items[n-1] = nil
		f.items = f.items[:n-1]
		return x
	}
	return new(T)
}

// Put keeps x for reuse (the caller resets it), unless Max are kept.
func (f *FreeList[T]) Put(x *T) {
	if len(f.items) < f.Max {
		f.items = append(f.items, x)
	}
}

// Clear drops every spare object.
func (f *FreeList[T]) Clear() { clear(f.items); f.items = f.items[:0] }
