package cnactor_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// A connector on the in-memory transport: a callback answers a peer, which
// gets the reply (same id and seq, ack + 1) on its own port.
func Example() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)

	id := transport.CbID{Idx: 0x123, Val: 1}
	c.AddCallback(id, "upper", handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		return hc.Reply(bytes.ToUpper(m.Data))
	}))

	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: 7, Data: []byte("hello")})
	b := transport.NewBatch(1)
	peer.ReceiveBatch(ctx, b)
	r := b.Messages[0]
	fmt.Printf("id=%s seq=%d ack=%d data=%s from connector: %v\n", r.ID, r.Seq, r.Ack, r.Data, r.From == c.Port())
	// Output: id=291:1 seq=7 ack=1 data=HELLO from connector: true
}
