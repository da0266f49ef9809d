package ebtree_test

import (
	"fmt"

	"github.com/protobalance/protobalance/ebtree"
)

// conn embeds its timer entry; Value points back at the conn.
type conn struct {
	name  string
	timer ebtree.Node[int64, *conn]
}

// Example runs a small timer queue: connections are armed with deadlines,
// one is cancelled before it fires, and the due ones are popped in order.
// Equal deadlines fire in the order they were armed.
func Example() {
	var timers ebtree.Tree[int64, *conn]
	arm := func(c *conn, deadline int64) {
		timers.Delete(&c.timer) // no-op if not armed
		c.timer.Key, c.timer.Value = deadline, c
		timers.Insert(&c.timer)
	}
	a, b, c, d := &conn{name: "a"}, &conn{name: "b"}, &conn{name: "c"}, &conn{name: "d"}
	arm(a, 30)
	arm(b, 10)
	arm(c, 20)
	arm(d, 20)
	arm(a, 20)              // re-armed: now the third at 20
	timers.Delete(&b.timer) // b closed before its deadline

	now := int64(25)
	for n := timers.First(); n != nil && n.Key <= now; n = timers.First() {
		timers.Delete(n)
		fmt.Println("timeout", n.Value.name, "at", n.Key)
	}
	fmt.Println(timers.Len(), "armed")
	// Output:
	// timeout c at 20
	// timeout d at 20
	// timeout a at 20
	// 0 armed
}

// ExampleTree_LookupGE finds the first deadline at or after a given time,
// skipping duplicates with NextUnique.
func ExampleTree_LookupGE() {
	var t ebtree.Tree[uint32, string]
	for i, k := range []uint32{5, 7, 7, 7, 9, 12} {
		t.Insert(&ebtree.Node[uint32, string]{Key: k, Value: fmt.Sprint("e", i)})
	}
	for n := t.LookupGE(6); n != nil; n = n.NextUnique() {
		fmt.Println(n.Key, n.Value)
	}
	// Output:
	// 7 e1
	// 9 e4
	// 12 e5
}

// ExampleTree_Insert_unique shows a unique tree returning the existing entry.
func ExampleTree_Insert_unique() {
	t := ebtree.Tree[uint64, string]{Unique: true}
	t.Insert(&ebtree.Node[uint64, string]{Key: 1, Value: "first"})
	got := t.Insert(&ebtree.Node[uint64, string]{Key: 1, Value: "second"})
	fmt.Println(got.Value, t.Len())
	// Output:
	// first 1
}
