package remote_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/remote"
	"github.com/cnactor/cnactor/transport"
)

// A node exports the proc connector and id 7:1 of its connector, on
// loopback (give Listen and Advertise an address of the host to reach it
// from others, and TLS to require client certificates).
func ExampleNewNode() {
	c, err := cnactor.New()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())
	n, err := remote.NewNode(c, remote.NodeConfig{
		Listen:  remote.DefaultListen,
		Exports: []remote.Export{remote.ProcExport(), {ID: transport.CbID{Idx: 7, Val: 1}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close(context.Background())
	n.Watch(func(ev remote.NodeEvent) { log.Printf("%s %s from %s", ev.Kind, ev.ID, ev.Subscriber) })
	// ... serve until told to stop
}

// A subscriber registers a handler for id 7:1 of a node: each message the
// node's callback receives arrives with its sender's metadata and origin,
// and the reply goes back through the node.
func ExampleSubscriber_AddCallback() {
	s, err := remote.NewSubscriber(remote.SubscriberConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	s.Watch(func(ev remote.Event) { log.Printf("%s %s at %s: %v", ev.Kind, ev.ID, ev.Node, ev.Reason) })
	err = s.AddCallback(context.Background(), "127.0.0.1:7390", transport.CbID{Idx: 7, Val: 1}, "echo",
		handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
			o, _ := remote.OriginOf(ctx)
			log.Printf("from port %d of %s (%s): %q", ctx.From(), o.Name, o.Node, m.Data)
			return ctx.Reply(m.Data)
		}), remote.WithQueue(1024, cnactor.DropOldest))
	if err != nil {
		log.Fatal(err) // errors.Is(err, remote.ErrNotExported), ErrUnauthenticated, ...
	}
	time.Sleep(time.Minute)
	st, _ := s.Callback("127.0.0.1:7390", transport.CbID{Idx: 7, Val: 1})
	fmt.Printf("offered %d = delivered %d + dropped %d + lost %d + in flight %d\n",
		st.Offered, st.Delivered, st.Dropped, st.Lost, st.InFlight)
}

// The process events of several hosts as one stream.
func ExampleListenProc() {
	s, err := remote.NewSubscriber(remote.SubscriberConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	nodes, _ := remote.ParseProcNodes("web1=127.0.0.1:7390,web2=127.0.0.2:7390")
	ps, err := remote.ListenProc(context.Background(), s, nodes, remote.WithProcEvents(proc.WhatExec|proc.WhatExit))
	if err != nil {
		log.Fatal(err)
	}
	defer ps.Close()
	for ev := range ps.Events() {
		switch {
		case ev.Event == nil:
			log.Printf("%s: %s", ev.Host, ev.Status)
		default:
			fmt.Printf("%s %s pid=%d %s\n", ev.Host, ev.Event.Head().What, proc.PID(ev.Event), proc.Info(ev.Event))
		}
	}
}
