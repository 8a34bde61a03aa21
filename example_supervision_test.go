package cnactor_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// A handler that panics is restarted by its supervisor (restart type
// Permanent, the default); only the failing message is lost, counted as
// Failed. WatchSupervision tells each step.
func Example_supervision() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	restarted := make(chan struct{})
	stop := c.WatchSupervision(func(e supervisor.Event) {
		if e.Kind == supervisor.EventFailed {
			fmt.Println("supervisor:", e.Kind, e.Child, "->", e.Directive)
		} else {
			fmt.Println("supervisor:", e.Kind, e.Child)
		}
		if e.Kind == supervisor.EventRestarted {
			close(restarted)
		}
	})

	id := transport.CbID{Idx: 7, Val: 1}
	c.AddCallback(id, "fragile", handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		if string(m.Data) == "bad" {
			panic("cannot handle this")
		}
		return hc.Reply(m.Data)
	}), cnactor.WithRestart(supervisor.Permanent))

	peer, _ := net.Dial()
	defer peer.Close()
	to := transport.Addr{Port: c.Port()}
	peer.Send(ctx, to, &transport.Message{ID: id, Data: []byte("bad")})
	<-restarted
	cb, _ := c.Callback(id)
	fmt.Printf("restarts=%d state=%v\n", cb.Restarts, cb.State)
	peer.Send(ctx, to, &transport.Message{ID: id, Data: []byte("good")})
	b := transport.NewBatch(1)
	peer.ReceiveBatch(ctx, b)
	fmt.Printf("reply: %s\n", b.Messages[0].Data)

	stop()
	c.Close(ctx) // the final counters: the handler is done
	cb, _ = c.Callback(id)
	fmt.Printf("received=%d handled=%d failed=%d\n", cb.Received, cb.Handled, cb.Failed)
	// Output:
	// supervisor: failed 7:1 -> restart
	// supervisor: backoff 7:1
	// supervisor: restarted 7:1
	// restarts=1 state=running
	// reply: good
	// received=2 handled=1 failed=1
}

// Callbacks placed under one supervisor with the OneForAll strategy restart
// together: the failure of one restarts its sibling too. NoBackoff restarts
// at once.
func ExampleConnector_AddSupervisor() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)
	restarts := make(chan string, 2)
	stop := c.WatchSupervision(func(e supervisor.Event) {
		if e.Kind == supervisor.EventRestarted {
			restarts <- e.Supervisor + " restarted " + e.Child
		}
	})
	defer stop()

	err := c.AddSupervisor("pair", cnactor.RootSupervisor,
		supervisor.Spec{Strategy: supervisor.OneForAll, Backoff: supervisor.NoBackoff()},
		supervisor.ChildSpec{Restart: supervisor.Permanent})
	fmt.Println("add supervisor:", err)
	a, b := transport.CbID{Idx: 7, Val: 1}, transport.CbID{Idx: 7, Val: 2}
	c.AddCallback(a, "a", handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
		panic("a fails")
	}), cnactor.WithSupervisor("pair"))
	c.AddCallback(b, "b", handlers.Sink(), cnactor.WithSupervisor("pair"))

	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: a, Data: []byte("x")})
	fmt.Println(<-restarts)
	fmt.Println(<-restarts)
	for _, id := range []transport.CbID{a, b} {
		cb, _ := c.Callback(id)
		fmt.Printf("%s under %s: restarts=%d\n", cb.Name, cb.Supervisor, cb.Restarts)
	}
	// Output:
	// add supervisor: <nil>
	// pair restarted 7:1
	// pair restarted 7:2
	// a under pair: restarts=1
	// b under pair: restarts=1
}

// The root supervisor's intensity bounds restarts across all its callbacks.
// Here it allows none: the first panic stops every callback (their removal
// is notified to Watch) and, under FailConnector, fails the connector, which
// its Health then reports.
func ExampleWithRootSupervisor() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn),
		cnactor.WithRootSupervisor(supervisor.Spec{
			Intensity: supervisor.Intensity{MaxRestarts: 0, Period: time.Minute},
		}),
		cnactor.WithTopPolicy(cnactor.FailConnector))
	defer c.Close(ctx)
	id := transport.CbID{Idx: 7, Val: 1}
	stop := c.Watch(func(e cnactor.Event) {
		if e.ID == id {
			fmt.Println(e.Kind, e.ID, e.Name)
		}
	})
	defer stop()
	c.AddCallback(id, "doomed", handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
		panic("boom")
	}))
	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("x")})

	<-c.Done()
	fmt.Println("err:", c.Err())
	fmt.Println("intensity exceeded:", errors.Is(c.Health(), supervisor.ErrIntensity))
	// Output:
	// added 7:1 doomed
	// removed 7:1 doomed
	// err: supervisor "root" failed: supervisor: restart intensity exceeded (0 in 1m0s): handler panicked: boom
	// intensity exceeded: true
}
