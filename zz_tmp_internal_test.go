package cnactor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

func TestZZTmpDeadLetters(t *testing.T) {
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := New(WithTransport(conn))
	c.system.EventStream.Subscribe(func(msg any) {
		if d, ok := msg.(*actor.DeadLetterEvent); ok {
			fmt.Printf("DEADLETTER pid=%v msg=%T %+v sender=%v\n", d.PID, d.Message, d.Message, d.Sender)
		}
	})
	peer, _ := net.Dial()
	id := transport.CbID{Idx: 0x7f00, Val: 1}
	c.AddCallback(id, "x", handlers.Flaky())
	for i := range 30 {
		data := "hi"
		if i%3 == 0 {
			data = "panic"
		}
		peer.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: uint32(i), Data: []byte(data)})
	}
	time.Sleep(100 * time.Millisecond)
	fmt.Println("CLOSE")
	c.Close(context.Background())
	fmt.Println("CLOSED")
	time.Sleep(100 * time.Millisecond)
}
