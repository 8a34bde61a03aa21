package cnactor_test

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/faulty"
	"github.com/cnactor/cnactor/transport/memory"
)

// faultyConnector is a connector on a faulty in-memory socket.
func faultyConnector(t *testing.T, faults ...faulty.Fault) (*cnactor.Connector, *faulty.Conn, *memory.Network) {
	t.Helper()
	net := memory.NewNetwork()
	inner, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	conn := faulty.Wrap(inner, faults...)
	return startConnector(t, conn), conn, net
}

// A callback whose group cannot be joined is not registered: AddCallback
// fails with the socket's error, nothing is left behind (no route, no
// handler, no notification), and the same id registers once the socket
// lets it.
func TestAddCallbackJoinFails(t *testing.T) {
	t.Parallel()
	c, conn, _ := faultyConnector(t, faulty.Fault{Op: faulty.Join, Times: 1, Err: syscall.ENOBUFS})
	var mu sync.Mutex
	var evs []cnactor.Event
	c.Watch(func(e cnactor.Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() })
	id := transport.CbID{Idx: 7, Val: 0x5360} // idx 7: its group is joined
	err := c.AddCallback(id, "unlucky", handlers.Sink())
	if !errors.Is(err, syscall.ENOBUFS) {
		t.Fatalf("AddCallback with the join failing = %v", err)
	}
	if _, ok := c.Callback(id); ok {
		t.Fatal("the failed callback is registered")
	}
	if err := c.AddCallback(id, "lucky", handlers.Sink()); err != nil {
		t.Fatal(err)
	}
	if conn.Calls(faulty.Join) != 2 {
		t.Fatalf("%d joins", conn.Calls(faulty.Join))
	}
	mu.Lock()
	defer mu.Unlock()
	// The successful registration's notice is the only one: the failed
	// one announced nothing.
	if len(evs) != 1 || evs[0].Kind != dispatch.EventAdded || evs[0].Name != "lucky" {
		t.Fatalf("events %+v", evs)
	}
}

// A receive that never returns (a socket that ignores its read deadline)
// cannot hold Close up beyond its context: Close then closes the socket,
// which ends the receive loop, and returns.
func TestCloseWithStuckReceive(t *testing.T) {
	t.Parallel()
	stuck := make(chan struct{}) // never opened
	net := memory.NewNetwork()
	inner, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	conn := faulty.Wrap(inner)
	c, err := cnactor.New(cnactor.WithTransport(conn))
	if err != nil {
		t.Fatal(err)
	}
	// From the next receive on, the loop hangs.
	conn.Inject(faulty.Fault{Op: faulty.Receive, Wait: stuck})
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	// Something to read makes the loop's current receive return and the
	// next one hang, whatever state the loop was in.
	if err := peer.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: transport.CbID{Idx: 0x5361, Val: 1}}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the receive to hang", func() bool { return conn.Injected(faulty.Receive) >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Close(ctx) }()
	select {
	case err := <-done:
		// The context ran out while the loop was stuck; what Close reports
		// beyond that (handlers stopped with no time left) is its own.
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, actors.ErrStopTimeout) {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("Close hung behind a stuck receive")
	}
	if err := conn.Unwrap().Send(context.Background(), transport.Kernel(), &transport.Message{}); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("the socket is still open after Close: %v", err)
	}
}

// DelCallback racing the supervisor's own removal of a failed Temporary
// callback: exactly one of them removes it, the other finds nothing (or
// nothing left to do), and the removal is announced once.
func TestDelCallbackRacesSupervisorRemoval(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var mu sync.Mutex
	removed := map[transport.CbID]int{}
	c.Watch(func(e cnactor.Event) {
		if e.Kind == dispatch.EventRemoved {
			mu.Lock()
			removed[e.ID]++
			mu.Unlock()
		}
	})
	const rounds = 20
	for i := range uint32(rounds) {
		id := transport.CbID{Idx: 0x5362, Val: i}
		entered := make(chan struct{})
		h := handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
			close(entered)
			panic("fail at once")
		})
		if err := c.AddCallback(id, "doomed", h, cnactor.WithRestart(supervisor.Temporary)); err != nil {
			t.Fatal(err)
		}
		if err := peer.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: id}); err != nil {
			t.Fatal(err)
		}
		<-entered // the failure is under way: the supervisor is about to remove it
		if err := c.DelCallback(id); err != nil && !errors.Is(err, cnactor.ErrNotFound) {
			t.Fatalf("round %d: DelCallback = %v", i, err)
		}
		testutil.WaitFor(t, "the removal notice", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return removed[id] >= 1
		})
		if _, ok := c.Callback(id); ok {
			t.Fatalf("round %d: callback still registered", i)
		}
	}
	// The marker's start is a request to the root supervisor, which
	// handles every failure reported before it first: any second removal
	// notice would be in by the time it returns (DelCallback's are, as it
	// notifies before returning).
	if err := c.AddCallback(transport.CbID{Idx: 0x5362, Val: 999}, "marker", handlers.Sink()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range removed {
		if n != 1 {
			t.Errorf("%v removed %d times", id, n)
		}
	}
}

// New refusing its options closes the transport it was given: from
// WithTransport on, the connector owns it, also when it never starts.
func TestNewFailsAndClosesTransport(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]cnactor.Option{
		"batch size":     cnactor.WithBatchSize(transport.MaxBatchSize + 1),
		"receive buffer": cnactor.WithReadBuffer(-1),
	} {
		inner, err := memory.NewNetwork().Dial()
		if err != nil {
			t.Fatal(err)
		}
		conn := faulty.Wrap(inner)
		if c, err := cnactor.New(cnactor.WithTransport(conn), opt); err == nil {
			c.Close(context.Background())
			t.Fatalf("%s: New accepted an invalid option", name)
		}
		if conn.Calls(faulty.Close) != 1 {
			t.Fatalf("%s: transport closed %d times by the failed New", name, conn.Calls(faulty.Close))
		}
		if err := inner.Send(context.Background(), transport.Kernel(), &transport.Message{}); !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("%s: the transport is still open: %v", name, err)
		}
	}
}
