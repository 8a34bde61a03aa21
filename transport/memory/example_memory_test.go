package memory_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// A Network is one kernel: endpoints reach each other by port and by
// multicast group, and Kernel is the endpoint at port 0. Sends are
// synchronous: when Send returns, the datagram is queued at every receiver.
func ExampleNetwork() {
	ctx := context.Background()
	net := memory.NewNetwork()
	a, _ := net.Dial()
	defer a.Close()
	b, _ := net.Dial(memory.WithGroups(3)) // a member of group 3
	defer b.Close()
	kernel := net.Kernel()

	id := transport.CbID{Idx: 3, Val: 1}
	a.Send(ctx, transport.Addr{Port: b.Port()}, &transport.Message{ID: id, Data: []byte("unicast")})
	a.Send(ctx, transport.Addr{Group: 3}, &transport.Message{ID: id, Data: []byte("multicast")})
	kernel.Send(ctx, transport.Addr{Group: 3}, &transport.Message{ID: id, Data: []byte("from the kernel")})
	a.Send(ctx, transport.Kernel(), &transport.Message{ID: id, Data: []byte("to the kernel")})

	batch := transport.NewBatch(8)
	b.ReceiveBatch(ctx, batch)
	for _, m := range batch.Messages {
		fmt.Printf("b: %q group=%d from kernel=%v\n", m.Data, m.Group, m.From == 0)
	}
	// A multicast sent with Port 0 also reaches the kernel, as a sendto with
	// nl_pid 0 and nl_groups set does.
	kernel.ReceiveBatch(ctx, batch)
	for _, m := range batch.Messages {
		fmt.Printf("kernel: %q group=%d from a=%v\n", m.Data, m.Group, m.From == a.Port())
	}
	// Output:
	// b: "unicast" group=0 from kernel=false
	// b: "multicast" group=3 from kernel=false
	// b: "from the kernel" group=3 from kernel=true
	// kernel: "multicast" group=3 from a=true
	// kernel: "to the kernel" group=0 from a=true
}

// HandleKernel scripts the kernel: the function gets every message sent to
// port 0, on the sender's goroutine, and may answer from the kernel endpoint.
func ExampleNetwork_HandleKernel() {
	ctx := context.Background()
	net := memory.NewNetwork()
	net.HandleKernel(func(k *memory.Conn, m transport.Received) {
		reply := handlers.ReplyTo(&m.Message, []byte("ack"))
		k.Send(ctx, transport.Addr{Port: m.From}, &reply)
	})
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)

	r, err := c.Request(ctx, transport.Kernel(), &transport.Message{ID: transport.CbID{Idx: 9, Val: 1}, Data: []byte("hello")})
	if err != nil {
		panic(err)
	}
	fmt.Printf("kernel replied %q\n", r.Data)
	// Output: kernel replied "ack"
}

// shout is the handler under test: it answers in upper case, to members
// of group 5 as well when asked to.
type shout struct{}

func (shout) Receive(ctx handlers.Context, m *transport.Message) error {
	up := []byte(strings.ToUpper(string(m.Data)))
	if m.Flags == 1 {
		if err := ctx.Send(transport.Addr{Group: 5}, &transport.Message{ID: m.ID, Data: up}); err != nil {
			return err
		}
	}
	return ctx.Reply(up)
}

// Unit-testing a handler without root or a kernel: run it on a connector
// whose transport is a memory endpoint, and talk to it from other
// endpoints, here a client and a listener in group 5. In a test, use
// t.Fatal where this example panics.
func Example_testAHandler() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, err := cnactor.New(cnactor.WithTransport(conn))
	if err != nil {
		panic(err)
	}
	defer c.Close(ctx)
	id := transport.CbID{Idx: 0x200, Val: 1}
	if err := c.AddCallback(id, "shout", shout{}); err != nil {
		panic(err)
	}
	client, _ := net.Dial()
	defer client.Close()
	listener, _ := net.Dial(memory.WithGroups(5))
	defer listener.Close()

	client.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: 4, Flags: 1, Data: []byte("hi")})
	batch := transport.NewBatch(1)
	client.ReceiveBatch(ctx, batch) // the reply comes after the multicast
	r := batch.Messages[0]
	fmt.Printf("client: %s seq=%d ack=%d\n", r.Data, r.Seq, r.Ack)
	listener.ReceiveBatch(ctx, batch)
	fmt.Printf("listener: %s group=%d\n", batch.Messages[0].Data, batch.Messages[0].Group)
	// Output:
	// client: HI seq=4 ack=1
	// listener: HI group=5
}
