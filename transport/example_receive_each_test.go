package transport_test

import (
	"context"
	"fmt"

	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// ReceiveEach is a receive loop with two batches taking turns: deliver
// handles one while the other is free, and returns the one to fill next.
// Returning nil ends the loop. On the kernel's socket (transport.Dial) the
// loop saves one system call per wait over calling ReceiveBatch in a loop.
func ExampleReceiveEach() {
	ctx := context.Background()
	net := memory.NewNetwork()
	rx, _ := net.Dial()
	defer rx.Close()
	tx, _ := net.Dial()
	defer tx.Close()
	id := transport.CbID{Idx: 0x4000, Val: 1}
	for i, s := range []string{"one", "two", "three", "quit"} {
		tx.Send(ctx, transport.Addr{Port: rx.Port()}, &transport.Message{ID: id, Seq: uint32(i), Data: []byte(s)})
	}

	batches := [2]*transport.Batch{transport.NewBatch(2), transport.NewBatch(2)}
	turn := 0
	err := transport.ReceiveEach(ctx, rx, batches[0], func(b *transport.Batch) *transport.Batch {
		for _, m := range b.Messages {
			if string(m.Data) == "quit" {
				return nil
			}
			fmt.Printf("seq %d: %s\n", m.Seq, m.Data)
		}
		turn ^= 1
		return batches[turn]
	}, nil)
	fmt.Println("loop ended:", err)
	// Output:
	// seq 0: one
	// seq 1: two
	// seq 2: three
	// loop ended: <nil>
}
