package handlers_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// ReplyTo is the answer the connector protocol expects: same id and seq,
// ack + 1. Context.Reply sends it to the sender.
func ExampleReplyTo() {
	req := transport.Message{ID: transport.CbID{Idx: 7, Val: 1}, Seq: 5, Ack: 41, Data: []byte("ping")}
	r := handlers.ReplyTo(&req, []byte("pong"))
	fmt.Printf("id=%s seq=%d ack=%d data=%s\n", r.ID, r.Seq, r.Ack, r.Data)
	// Output: id=7:1 seq=5 ack=42 data=pong
}

// A function as a handler. The Context tells which callback runs it and
// where the message came from; m and its Data are lent for the call only.
// A returned error fails the message (counted), and the handler goes on.
func ExampleHandlerFunc() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	id := transport.CbID{Idx: 7, Val: 1}
	c.AddCallback(id, "greeter", handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		if len(m.Data) == 0 {
			return fmt.Errorf("empty message from port %d", hc.From())
		}
		cb, name := hc.Callback()
		return hc.Reply([]byte(fmt.Sprintf("%s (%s) greets %s", name, cb, m.Data)))
	}))

	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id})
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("you")})
	b := transport.NewBatch(1)
	peer.ReceiveBatch(ctx, b)
	fmt.Printf("%s\n", b.Messages[0].Data)

	c.Close(ctx)
	cb, _ := c.Callback(id)
	fmt.Printf("handled=%d failed=%d\n", cb.Handled, cb.Failed)
	// Output:
	// greeter (7:1) greets you
	// handled=1 failed=1
}

// words counts the words of its messages. As a BatchHandler it takes the
// messages of one wake-up in one call; Receive serves single messages.
type words struct{ n atomic.Uint64 }

func (w *words) Receive(_ handlers.Context, m *transport.Message) error {
	w.n.Add(uint64(len(strings.Fields(string(m.Data)))))
	return nil
}

func (w *words) ReceiveBatch(_ handlers.CallbackContext, msgs []transport.Received) (int, error) {
	var n uint64
	for i := range msgs {
		n += uint64(len(strings.Fields(string(msgs[i].Data))))
	}
	w.n.Add(n)
	return len(msgs), nil // all handled
}

// Stats makes the handler's counter part of the connector's listings.
func (w *words) Stats() map[string]uint64 { return map[string]uint64{"words": w.n.Load()} }

func ExampleBatchHandler() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	id := transport.CbID{Idx: 7, Val: 1}
	c.AddCallback(id, "words", &words{})

	peer, _ := net.Dial()
	defer peer.Close()
	for _, s := range []string{"one", "two words", "and three more"} {
		peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte(s)})
	}
	c.Close(ctx) // handles what is queued first
	cb, _ := c.Callback(id)
	fmt.Printf("handled=%d %s\n", cb.Handled, handlers.FormatStats(cb.Handler))
	// Output:
	// handled=3 words=6
}
