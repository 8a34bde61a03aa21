package faulty_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/faulty"
	"github.com/cnactor/cnactor/transport/memory"
)

// A receive loop meets an interrupted receive and a truncated datagram, and
// keeps going.
func Example() {
	net := memory.NewNetwork()
	rx, _ := net.Dial()
	tx, _ := net.Dial()
	defer tx.Close()

	// The first receive fails with EINTR; the first batch that arrives has
	// its datagrams cut to 20 bytes.
	c := faulty.Wrap(rx,
		faulty.Fault{Op: faulty.Receive, Times: 1, Err: syscall.EINTR},
		faulty.Fault{Op: faulty.Receive, Times: 1, Truncate: 20},
	)
	defer c.Close()

	ctx := context.Background()
	id := transport.CbID{Idx: 10, Val: 1}
	b := transport.NewBatch(0)
	receive := func() {
		err := c.ReceiveBatch(ctx, b)
		switch {
		case err != nil:
			fmt.Println("failed:", err, "| EINTR:", errors.Is(err, syscall.EINTR))
		case len(b.Malformed) > 0:
			fmt.Printf("malformed: %d bytes: %v\n", len(b.Malformed[0].Data), b.Malformed[0].Err)
		default:
			fmt.Printf("message: %s\n", b.Messages[0].Data)
		}
	}
	tx.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("cut short")})
	receive() // EINTR: the datagram stays queued
	receive() // the first batch: truncated
	tx.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("whole")})
	receive()
	fmt.Println("faults injected:", c.Injected(faulty.Receive))
	// Output:
	// failed: cnactor receive: interrupted system call | EINTR: true
	// malformed: 20 bytes: transport: datagram truncated by the receive buffer at offset 0
	// message: whole
	// faults injected: 2
}
