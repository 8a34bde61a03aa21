package cnactor_test

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// Request sends a message and waits for the reply the connector protocol
// defines (same id and seq, ack + 1), retrying if an attempt goes
// unanswered. Here the peer is a plain endpoint that answers once.
func ExampleConnector_Request() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)

	peer, _ := net.Dial()
	defer peer.Close()
	go func() { // the peer: answers one request in upper case
		b := transport.NewBatch(1)
		if peer.ReceiveBatch(ctx, b) == nil {
			m := b.Messages[0]
			reply := handlers.ReplyTo(&m.Message, bytes.ToUpper(m.Data))
			peer.Send(ctx, transport.Addr{Port: m.From}, &reply)
		}
	}()

	id := transport.CbID{Idx: 0x100, Val: 1}
	r, err := c.Request(ctx, transport.Addr{Port: peer.Port()},
		&transport.Message{ID: id, Seq: 10, Ack: 20, Data: []byte("hello")},
		cnactor.WithRequestTimeout(time.Second), cnactor.WithRetries(2))
	if err != nil {
		panic(err)
	}
	fmt.Printf("reply: %s id=%s seq=%d ack=%d from peer=%v attempts=%d\n",
		r.Data, r.ID, r.Seq, r.Ack, r.From == peer.Port(), r.Attempts)
	st := c.Stats().Requester
	fmt.Printf("requests=%d replies=%d timeouts=%d\n", st.Requests, st.Replies, st.Timeouts)
	// Output:
	// reply: HELLO id=256:1 seq=10 ack=21 from peer=true attempts=1
	// requests=1 replies=1 timeouts=0
}

// Send sends from the connector's socket to one port, or to every member of
// a multicast group (as the kernel's cn_netlink_send does on group idx).
func ExampleConnector_Send() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)
	a, _ := net.Dial(memory.WithGroups(7))
	defer a.Close()
	b, _ := net.Dial(memory.WithGroups(7))
	defer b.Close()

	id := transport.CbID{Idx: 7, Val: 1}
	c.Send(ctx, transport.Addr{Port: a.Port()}, &transport.Message{ID: id, Data: []byte("to a")})
	c.Send(ctx, transport.Addr{Group: 7}, &transport.Message{ID: id, Data: []byte("to group 7")})

	// Sends are synchronous on the memory network: both are queued now.
	batch := transport.NewBatch(4)
	for name, p := range map[string]*memory.Conn{"a": a, "b": b} {
		p.ReceiveBatch(ctx, batch)
		for _, m := range batch.Messages {
			fmt.Printf("%s got %q (group %d)\n", name, m.Data, m.Group)
		}
	}
	// Unordered output:
	// a got "to a" (group 0)
	// a got "to group 7" (group 7)
	// b got "to group 7" (group 7)
}
