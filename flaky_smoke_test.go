package cnactor_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

func TestFlakySmoke(t *testing.T) {
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, err := cnactor.New(cnactor.WithTransport(conn))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	c.WatchSupervision(func(e supervisor.Event) { t.Logf("%v %s %v %v", e.Kind, e.Child, e.Delay, e.Reason) })
	id := transport.CbID{Idx: 7, Val: 1}
	if err := c.AddCallback(id, "flaky", handlers.Flaky()); err != nil {
		t.Fatal(err)
	}
	peer, _ := net.Dial()
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		data := fmt.Sprintf("msg %d", i)
		if i%10 == 9 {
			data = "panic " + data
		}
		if err := peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: uint32(i), Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	b := transport.NewBatch(64)
	got := 0
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for got < 90 {
		if err := peer.ReceiveBatch(rctx, b); err != nil {
			t.Fatalf("after %d replies: %v", got, err)
		}
		got += len(b.Messages)
	}
	t.Logf("90 replies in %v; stats %+v", time.Since(start), c.Stats().Callbacks)
}
