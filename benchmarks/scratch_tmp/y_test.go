package scratch

import (
	"context"
	"testing"
	"time"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

func TestConnPingPong(t *testing.T) {
	a, _ := transport.Dial()
	b, _ := transport.Dial()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		bt := transport.NewBatch(0)
		for {
			if err := b.ReceiveBatch(ctx, bt); err != nil {
				return
			}
			for i := range bt.Messages {
				r := handlers.ReplyTo(&bt.Messages[i].Message, bt.Messages[i].Data)
				b.Send(ctx, transport.Addr{Port: a.Port()}, &r)
			}
		}
	}()
	bt := transport.NewBatch(0)
	data := make([]byte, 64)
	var lat []time.Duration
	for i := 0; i < 20000; i++ {
		t0 := time.Now()
		a.Send(ctx, transport.Addr{Port: b.Port()}, &transport.Message{ID: echoID, Seq: 1, Data: data})
		if err := a.ReceiveBatch(ctx, bt); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	t.Logf("conn ping-pong p50 %v", p50(lat))
}
