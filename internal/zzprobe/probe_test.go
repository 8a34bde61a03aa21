package zzprobe

import (
	"context"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

func TestProbe(t *testing.T) {
	g := testutil.Group(t)
	a, err := transport.Dial(transport.WithGroups(g))
	if err != nil { t.Fatal(err) }
	defer a.Close()
	b, err := transport.Dial(transport.WithGroups(g))
	if err != nil { t.Fatal(err) }
	defer b.Close()
	c, err := transport.Dial()
	if err != nil { t.Fatal(err) }
	defer c.Close()
	t.Logf("ports a=%d b=%d c=%d", a.Port(), b.Port(), c.Port())
	ctx := context.Background()
	if err := a.Send(ctx, transport.Addr{Group: g}, &transport.Message{ID: transport.CbID{Idx: 77, Val: 1}, Data: []byte("x")}); err != nil { t.Fatal(err) }
	// multicast with a port set as well
	if err := a.Send(ctx, transport.Addr{Port: c.Port(), Group: g}, &transport.Message{ID: transport.CbID{Idx: 77, Val: 2}, Data: []byte("y")}); err != nil { t.Log("mc+port:", err) }
	if err := a.Send(ctx, transport.Addr{Port: 12345678, Group: g}, &transport.Message{ID: transport.CbID{Idx: 77, Val: 3}, Data: []byte("z")}); err != nil { t.Log("mc+badport:", err) }
	if err := a.Send(ctx, transport.Addr{Port: 12345678}, &transport.Message{ID: transport.CbID{Idx: 77, Val: 3}, Data: []byte("z")}); err != nil { t.Log("badport:", err) }
	for _, x := range []struct{n string; c *transport.NetlinkConn}{{"a", a}, {"b", b}, {"c", c}} {
		bt := transport.NewBatch(8)
		for {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err := x.c.ReceiveBatch(ctx, bt)
			cancel()
			if err != nil { t.Logf("%s: %v", x.n, err); break }
			for _, m := range bt.Messages { t.Logf("%s got from=%d group=%d id=%v data=%q creds=%+v", x.n, m.From, m.Group, m.ID, m.Data, m.Creds) }
		}
	}
}
