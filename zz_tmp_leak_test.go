package cnactor_test

import (
	"context"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"go.uber.org/goleak"
)

func TestZZTmpLeakScenarios(t *testing.T) {
	for _, sc := range []string{"basic", "stuck", "panics", "del", "fallback", "intensity"} {
		t.Run(sc, func(t *testing.T) {
			net := memory.NewNetwork()
			conn, _ := net.Dial()
			opts := []cnactor.Option{cnactor.WithTransport(conn)}
			if sc == "fallback" {
				opts = append(opts, cnactor.WithFallback(handlers.Sink()))
			}
			if sc == "intensity" {
				opts = append(opts, cnactor.WithRootSupervisor(supervisor.Spec{Intensity: supervisor.Intensity{MaxRestarts: 1, Period: time.Second}}))
			}
			c, err := cnactor.New(opts...)
			if err != nil {
				t.Fatal(err)
			}
			peer, _ := net.Dial()
			id := transport.CbID{Idx: 0x7f00, Val: 1}
			gate := make(chan struct{})
			var h handlers.Handler = handlers.Echo()
			var copts []cnactor.CallbackOption
			switch sc {
			case "stuck":
				h = handlers.HandlerFunc(func(handlers.Context, *transport.Message) error { <-gate; return nil })
				copts = append(copts, cnactor.WithShutdownTimeout(20*time.Millisecond))
			case "panics", "intensity":
				h = handlers.Flaky()
			}
			if err := c.AddCallback(id, "x", h, copts...); err != nil {
				t.Fatal(err)
			}
			for i := range 30 {
				data := "hi"
				if i%3 == 0 {
					data = "panic"
				}
				peer.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: uint32(i), Data: []byte(data)})
				peer.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: transport.CbID{Idx: 5}, Seq: uint32(i), Data: []byte(data)})
			}
			time.Sleep(50 * time.Millisecond)
			if sc == "del" || sc == "stuck" {
				t.Log("del:", c.DelCallback(id))
			}
			t.Logf("close: %v", c.Close(context.Background()))
			close(gate)
			peer.Close()
			if err := goleak.Find(); err != nil {
				t.Errorf("leak: %v", err)
			}
		})
	}
}
