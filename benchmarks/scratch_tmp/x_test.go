package scratch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

var echoID = transport.CbID{Idx: 0xe0001, Val: 1}
var backID = transport.CbID{Idx: 0xe0002, Val: 1}

func p50(d []time.Duration) time.Duration { s := slices.Clone(d); slices.Sort(s); return s[len(s)/2] }

func TestCallbackPingPong(t *testing.T) {
	srv, _ := cnactor.New()
	defer srv.Close(context.Background())
	srv.AddCallback(echoID, "echo", handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
		return ctx.Send(&transport.Message{ID: backID, Data: m.Data}, transport.Addr{Port: ctx.From()})
	}))
	cli, _ := cnactor.New()
	defer cli.Close(context.Background())
	ch := make(chan struct{}, 1)
	cli.AddCallback(backID, "back", handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error { ch <- struct{}{}; return nil }))
	data := make([]byte, 64)
	var lat []time.Duration
	for i := 0; i < 20000; i++ {
		t0 := time.Now()
		cli.SendTo(context.Background(), &transport.Message{ID: echoID, Data: data}, srv.Port())
		<-ch
		lat = append(lat, time.Since(t0))
	}
	t.Logf("callback ping-pong p50 %v", p50(lat))
	lat = lat[:0]
	srv.DelCallback(echoID)
	srv.AddCallback(echoID, "echo", handlers.Echo())
	for i := 0; i < 20000; i++ {
		t0 := time.Now()
		if _, err := cli.Request(context.Background(), &transport.Message{ID: echoID, Data: data}, transport.Addr{Port: srv.Port()}); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	t.Logf("request p50 %v", p50(lat))
}
