package cnactor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// A connector on the in-memory transport: a peer sends to the connector's
// port, the callback replies, and Stats counts the exchange. Counters read
// after Close are final.
func ExampleNew() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, err := cnactor.New(cnactor.WithTransport(conn)) // the connector closes conn
	if err != nil {
		panic(err)
	}
	id := transport.CbID{Idx: 7, Val: 1}
	c.AddCallback(id, "upper", handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		return hc.Reply(bytes.ToUpper(m.Data))
	}))

	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: 1, Data: []byte("ping")})
	b := transport.NewBatch(1)
	peer.ReceiveBatch(ctx, b)
	fmt.Printf("reply: %s\n", b.Messages[0].Data)

	c.Close(ctx)
	cb, _ := c.Callback(id)
	st := c.Stats()
	fmt.Printf("%s %s: received=%d handled=%d failed=%d\n", cb.ID, cb.Name, cb.Received, cb.Handled, cb.Failed)
	fmt.Printf("reader: messages=%d unknown=%d malformed=%d\n", st.Reader.Messages, st.Reader.Unknown, st.Reader.Malformed)
	// Output:
	// reply: PING
	// 7:1 upper: received=1 handled=1 failed=0
	// reader: messages=1 unknown=0 malformed=0
}

// AddCallback registers a handler for an id, as the kernel's
// cn_add_callback; the id's idx is the multicast group it joins. An id is
// registered once.
func ExampleConnector_AddCallback() {
	ctx := context.Background()
	conn, _ := memory.NewNetwork().Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)

	id := transport.CbID{Idx: 7, Val: 1}
	err := c.AddCallback(id, "echo", handlers.Echo(), cnactor.WithMailbox(128, cnactor.DropNewest))
	fmt.Println("add:", err)
	err = c.AddCallback(id, "again", handlers.Echo())
	fmt.Println("add again is ErrDuplicate:", errors.Is(err, cnactor.ErrDuplicate))

	cb, _ := c.Callback(id)
	fmt.Printf("%s name=%s group=%d mailbox=%d\n", cb.ID, cb.Name, cb.Group, cb.Mailbox)
	// Output:
	// add: <nil>
	// add again is ErrDuplicate: true
	// 7:1 name=echo group=7 mailbox=128
}

// Watch reports every registration and removal, in order; a removal
// carries the callback's final counters. DelCallback lets the handler
// finish what was queued to it first.
func ExampleConnector_Watch() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)
	stop := c.Watch(func(e cnactor.Event) {
		fmt.Printf("%v %s %s handled=%d\n", e.Kind, e.ID, e.Name, e.Stats.Handled)
	})
	defer stop()

	id := transport.CbID{Idx: 7, Val: 1}
	c.AddCallback(id, "echo", handlers.Echo())
	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("hi")})
	peer.ReceiveBatch(ctx, transport.NewBatch(1)) // the echo
	c.DelCallback(id)
	fmt.Println("delete again is ErrNotFound:", errors.Is(c.DelCallback(id), cnactor.ErrNotFound))
	// Output:
	// added 7:1 echo handled=0
	// removed 7:1 echo handled=1
	// delete again is ErrNotFound: true
}
