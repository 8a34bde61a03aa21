package cnactor_test

import (
	"context"
	"fmt"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// A sender policy restricts who may reach a callback, by the sender's port
// as the kernel reports it (which a peer cannot forge). Refused messages
// never reach the handler; they are counted as Rejected.
func ExampleWithSenderPolicy() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	kernel := net.Kernel()

	id := transport.CbID{Idx: 7, Val: 1}
	c.AddCallback(id, "from-kernel-only", handlers.Sink(), cnactor.WithSenderPolicy(dispatch.AllowKernel()))
	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("forged")})
	kernel.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("genuine")})

	c.Close(ctx) // reads what is queued: the counters are final
	cb, _ := c.Callback(id)
	fmt.Printf("policy=%s handled=%d rejected=%d\n", cb.Policy, cb.Handled, cb.Rejected)
	// Output:
	// policy=kernel handled=1 rejected=1
}

// A fallback handler gets the messages whose id has no callback; they are
// counted as unknown either way.
func ExampleWithFallback() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn), cnactor.WithFallback(
		handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
			return hc.Reply([]byte("nobody serves " + m.ID.String()))
		})))
	defer c.Close(ctx)

	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: transport.CbID{Idx: 42, Val: 1}})
	b := transport.NewBatch(1)
	peer.ReceiveBatch(ctx, b)
	fmt.Printf("%s\n", b.Messages[0].Data)
	fmt.Println("unknown:", c.Stats().Reader.Unknown) // counted before the fallback ran
	// Output:
	// nobody serves 42:1
	// unknown: 1
}
