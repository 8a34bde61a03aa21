package cnactor_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"go.uber.org/goleak"
)

// reqID has no group (idx > 32).
var reqID = transport.CbID{Idx: 0x5e0, Val: 1}

// reqRig is a Connector on an in-memory network with a scripted peer.
type reqRig struct {
	c    *cnactor.Connector
	net  *memory.Network
	peer *memory.Conn
	to   transport.Addr
}

func newReqRig(t *testing.T, opts ...memory.Option) *reqRig {
	t.Helper()
	// The snapshot is taken now: taken at cleanup, it would ignore the
	// leaks too. The check runs last.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	net := memory.NewNetwork(opts...)
	conn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c, err := cnactor.New(cnactor.WithTransport(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return &reqRig{c: c, net: net, peer: peer, to: transport.Addr{Port: peer.Port()}}
}

// serve runs fn for every message the peer receives until the test ends.
func (g *reqRig) serve(t *testing.T, fn func(ctx context.Context, m transport.Received)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		b := transport.NewBatch(0)
		for g.peer.ReceiveBatch(ctx, b) == nil {
			for _, m := range b.Messages {
				m.Data = bytes.Clone(m.Data)
				fn(ctx, m)
			}
		}
	}()
}

// reply answers m from the peer as the seed protocol wants.
func (g *reqRig) reply(ctx context.Context, m transport.Received, data []byte) {
	r := handlers.ReplyTo(&m.Message, data)
	g.peer.Send(ctx, transport.Addr{Port: m.From}, &r)
}

func requesterStats(c *cnactor.Connector) cnactor.RequesterStats { return c.Stats().Requester }

var waitUntil = testutil.WaitFor

// Every one of n exchanges is in flight at once; the peer then answers all
// of them in shuffled order, and each caller gets its own reply.
func TestRequestConcurrentOutOfOrder(t *testing.T) {
	const n = 10000
	g := newReqRig(t)
	var mu sync.Mutex
	var held []transport.Received
	all := make(chan struct{})
	g.serve(t, func(ctx context.Context, m transport.Received) {
		mu.Lock()
		held = append(held, m)
		full := len(held) == n
		mu.Unlock()
		if full {
			close(all)
		}
	})
	var wg sync.WaitGroup
	var bad atomic.Int64
	errs := make(chan error, n)
	// A deadline on the context lets a send wait for room in the peer's
	// queue as long as the test allows, rather than the transport's 1 s
	// send timeout: 10,000 senders on a loaded machine may need more.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprintf("request %d", i)
			r, err := g.c.Request(ctx, g.to, &transport.Message{ID: reqID, Data: []byte(want)},
				cnactor.WithRequestTimeout(time.Minute))
			if err != nil {
				errs <- err
				return
			}
			if string(r.Data) != "re: "+want || r.From != g.peer.Port() {
				bad.Add(1)
			}
		})
	}
	select {
	case <-all:
	case err := <-errs:
		t.Fatalf("a request failed before the peer had them all: %v", err)
	case <-time.After(time.Minute):
		mu.Lock()
		got := len(held)
		mu.Unlock()
		t.Fatalf("the peer received %d of %d requests", got, n)
	}
	if st := requesterStats(g.c); st.InFlight != n {
		t.Fatalf("in flight = %d, want %d", st.InFlight, n)
	}
	rand.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
	for _, m := range held {
		g.reply(context.Background(), m, append([]byte("re: "), m.Data...))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d callers got someone else's reply", bad.Load())
	}
	st := g.c.Stats()
	if st.Requester.Replies != n || st.Requester.InFlight != 0 || st.Reader.Intercepted != n || st.Reader.Unknown != 0 {
		t.Fatalf("stats: requester %+v, reader %+v", st.Requester, st.Reader)
	}
}

// A message with the right id but the wrong seq, the wrong ack or from the
// wrong port is a new message: it goes to the callback, and the exchange
// stays pending.
func TestRequestWrongSeqOrAckIsNewMessage(t *testing.T) {
	g := newReqRig(t)
	var cb handlers.Counter
	if err := g.c.AddCallback(reqID, "counter", &cb); err != nil {
		t.Fatal(err)
	}
	other, err := g.net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	requests := make(chan transport.Received, 1)
	g.serve(t, func(ctx context.Context, m transport.Received) { requests <- m })
	done := make(chan error, 1)
	var reply *cnactor.Reply
	go func() {
		var err error
		reply, err = g.c.Request(context.Background(), g.to, &transport.Message{ID: reqID, Data: []byte("q")})
		done <- err
	}()
	req := <-requests
	ctx := context.Background()
	to := transport.Addr{Port: g.c.Port()}
	for _, m := range []transport.Message{
		{ID: reqID, Seq: req.Seq + 1, Ack: req.Ack + 1, Data: []byte("wrong seq")},
		{ID: reqID, Seq: req.Seq, Ack: req.Ack + 2, Data: []byte("wrong ack")},
		{ID: reqID, Seq: req.Seq, Ack: req.Ack, Data: []byte("same ack")},
	} {
		if err := g.peer.Send(ctx, to, &m); err != nil {
			t.Fatal(err)
		}
	}
	right := handlers.ReplyTo(&req.Message, []byte("from a stranger"))
	if err := other.Send(ctx, to, &right); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "four new messages at the callback", func() bool { return cb.Messages() == 4 })
	if st := requesterStats(g.c); st.InFlight != 1 || st.Replies != 0 {
		t.Fatalf("stats %+v", st)
	}
	g.reply(ctx, req, []byte("a"))
	if err := <-done; err != nil || string(reply.Data) != "a" {
		t.Fatalf("reply %v, err %v", reply, err)
	}
	g.reply(ctx, req, []byte("again"))
	waitUntil(t, "a duplicate", func() bool { return requesterStats(g.c).Duplicates == 1 })
	if cb.Messages() != 4 {
		t.Fatalf("the callback got %d messages; a duplicate reply reached it", cb.Messages())
	}
}

// A peer that loses a third of the requests: retries recover every one.
func TestRequestLossyPeerRecoveredByRetries(t *testing.T) {
	g := newReqRig(t)
	var dropped atomic.Int64
	g.serve(t, func(ctx context.Context, m transport.Received) {
		if rand.IntN(3) == 0 {
			dropped.Add(1)
			return
		}
		g.reply(ctx, m, m.Data)
	})
	const n, workers = 600, 30
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				data := []byte(fmt.Sprint(i))
				r, err := g.c.Request(context.Background(), g.to, &transport.Message{ID: reqID, Data: data},
					cnactor.WithRequestTimeout(20*time.Millisecond), cnactor.WithRetries(12), cnactor.WithBackoff(1, 0))
				if err == nil && !bytes.Equal(r.Data, data) {
					err = fmt.Errorf("reply %q to %q", r.Data, data)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := requesterStats(g.c)
	if st.Replies != n || st.Timeouts != 0 || st.Retries < uint64(dropped.Load()) || dropped.Load() == 0 {
		t.Fatalf("dropped %d; stats %+v", dropped.Load(), st)
	}
	t.Logf("dropped %d of %d sends; stats %+v", dropped.Load(), n+int(st.Retries), st)
}

// A reply after the timeout is late; a second reply to an answered request
// is a duplicate. Both are counted and neither is dispatched.
func TestRequestLateAndDuplicateReplies(t *testing.T) {
	g := newReqRig(t)
	var cb handlers.Counter
	if err := g.c.AddCallback(reqID, "counter", &cb); err != nil {
		t.Fatal(err)
	}
	requests := make(chan transport.Received, 16)
	g.serve(t, func(ctx context.Context, m transport.Received) { requests <- m })
	ctx := context.Background()

	_, err := g.c.Request(ctx, g.to, &transport.Message{ID: reqID}, cnactor.WithRequestTimeout(20*time.Millisecond))
	if !errors.Is(err, cnactor.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	late := <-requests
	g.reply(ctx, late, nil)
	g.reply(ctx, late, nil)
	waitUntil(t, "a late reply and a duplicate", func() bool {
		st := requesterStats(g.c)
		return st.Late == 1 && st.Duplicates == 1
	})

	go func() {
		m := <-requests
		g.reply(ctx, m, []byte("1"))
		g.reply(ctx, m, []byte("2"))
		g.reply(ctx, m, []byte("3"))
	}()
	r, err := g.c.Request(ctx, g.to, &transport.Message{ID: reqID})
	if err != nil || string(r.Data) != "1" {
		t.Fatalf("reply %v, err %v", r, err)
	}
	waitUntil(t, "two more duplicates", func() bool { return requesterStats(g.c).Duplicates == 3 })
	st := g.c.Stats()
	if cb.Messages() != 0 || st.Reader.Unknown != 0 || st.Requester.Replies != 1 || st.Requester.Timeouts != 1 {
		t.Fatalf("callback got %d; stats %+v %+v", cb.Messages(), st.Requester, st.Reader)
	}
}

// Cancellation frees the exchange at once.
func TestRequestCancellation(t *testing.T) {
	g := newReqRig(t)
	g.serve(t, func(context.Context, transport.Received) {}) // never answers
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := g.c.Request(ctx, g.to, &transport.Message{ID: reqID}, cnactor.WithRequestTimeout(time.Hour))
		done <- err
	}()
	waitUntil(t, "the request in flight", func() bool { return requesterStats(g.c).InFlight == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if st := requesterStats(g.c); st.InFlight != 0 || st.Cancelled != 1 {
		t.Fatalf("stats %+v", st)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer dcancel()
	if _, err := g.c.Request(dctx, g.to, &transport.Message{ID: reqID}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if st := requesterStats(g.c); st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Close fails every pending exchange with ErrClosed, and later requests too.
func TestRequestCloseFailsPending(t *testing.T) {
	g := newReqRig(t)
	g.serve(t, func(context.Context, transport.Received) {})
	const n = 200
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := g.c.Request(context.Background(), g.to, &transport.Message{ID: reqID}, cnactor.WithRequestTimeout(time.Hour))
			errs <- err
		}()
	}
	waitUntil(t, "every request in flight", func() bool { return requesterStats(g.c).InFlight == n })
	if err := g.c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; !errors.Is(err, cnactor.ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	}
	if _, err := g.c.Request(context.Background(), g.to, &transport.Message{ID: reqID}); !errors.Is(err, cnactor.ErrClosed) {
		t.Fatalf("request after Close: %v", err)
	}
	if st := requesterStats(g.c); st.InFlight != 0 || st.Failed != n {
		t.Fatalf("stats %+v", st)
	}
}

// A group request takes its reply from any member.
func TestRequestToGroup(t *testing.T) {
	g := newReqRig(t)
	const group = 9
	member, err := g.net.Dial(memory.WithGroups(group))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	go func() {
		b := transport.NewBatch(0)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if member.ReceiveBatch(ctx, b) == nil && len(b.Messages) > 0 {
			m := &b.Messages[0]
			r := handlers.ReplyTo(&m.Message, []byte("member"))
			member.Send(ctx, transport.Addr{Port: m.From}, &r)
		}
	}()
	r, err := g.c.Request(context.Background(), transport.Addr{Group: group}, &transport.Message{ID: reqID})
	if err != nil || r.From != member.Port() || string(r.Data) != "member" {
		t.Fatalf("reply %+v, err %v", r, err)
	}
}

// The seq is the connector's numbering unless the caller set one; the
// caller's message is not modified.
func TestRequestSeqNumbering(t *testing.T) {
	g := newReqRig(t)
	g.serve(t, func(ctx context.Context, m transport.Received) { g.reply(ctx, m, nil) })
	ctx := context.Background()
	m := transport.Message{ID: reqID}
	r1, err := g.c.Request(ctx, g.to, &m)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.c.Request(ctx, g.to, &m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq != 0 || m.Ack != 0 || r2.Seq <= r1.Seq {
		t.Fatalf("message %+v, seqs %d then %d", m, r1.Seq, r2.Seq)
	}
	r3, err := g.c.Request(ctx, g.to, &transport.Message{ID: reqID, Seq: 0xabcdef, Ack: 41})
	if err != nil || r3.Seq != 0xabcdef || r3.Ack != 42 {
		t.Fatalf("reply %+v, err %v", r3, err)
	}
}

// The requester's counters are part of the connector's.
func TestRequestStatsInConnectorStats(t *testing.T) {
	g := newReqRig(t)
	g.serve(t, func(ctx context.Context, m transport.Received) { g.reply(ctx, m, nil) })
	for range 3 {
		if _, err := g.c.Request(context.Background(), g.to, &transport.Message{ID: reqID}); err != nil {
			t.Fatal(err)
		}
	}
	if st := g.c.Stats(); st.Requester.Requests != 3 || st.Requester.Replies != 3 || st.Reader.Intercepted != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// A round trip between two Connectors in memory allocates, in the whole
// process, the Reply (its payload in the same allocation) and the option
// given; exchanges are pooled. Not parallel: AllocsPerRun counts every
// goroutine's allocations.
func TestRequestAllocations(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	net := memory.NewNetwork()
	var conns [2]*memory.Conn
	var cs [2]*cnactor.Connector
	for i := range conns {
		var err error
		if conns[i], err = net.Dial(); err != nil {
			t.Fatal(err)
		}
		if cs[i], err = cnactor.New(cnactor.WithTransport(conns[i])); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs[i].Close(context.Background()) })
	}
	if err := cs[0].AddCallback(reqID, "echo", handlers.Echo()); err != nil {
		t.Fatal(err)
	}
	to := transport.Addr{Port: cs[0].Port()}
	m := transport.Message{ID: reqID, Data: make([]byte, 64)}
	var reply *cnactor.Reply
	request := func() {
		var err error
		if reply, err = cs[1].Request(context.Background(), to, &m, cnactor.WithRequestTimeout(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		request() // warm the pools and tables
	}
	if n := testing.AllocsPerRun(2000, request); n > 2 {
		t.Fatalf("a request took %v allocations, want at most 2", n)
	}
	if len(reply.Data) != 64 {
		t.Fatalf("reply of %d bytes, want 64", len(reply.Data))
	}
}

var procID = transport.CbID{Idx: 1, Val: 1}

// procOp is the 4-byte proc connector subscription payload.
func procOp(op uint32) []byte { return binary.NativeEndian.AppendUint32(nil, op) }

// procAck reports whether m is a proc connector ack (what = 0, err = 0).
func procAck(m *transport.Received) bool {
	return m.ID == procID && m.From == 0 && len(m.Data) >= 20 &&
		binary.NativeEndian.Uint32(m.Data[0:]) == 0 && binary.NativeEndian.Uint32(m.Data[16:]) == 0
}

// The ack-only policy against the kernel's proc connector. LISTEN, sent to
// the kernel with no groups, is answered by an event with what = 0 and
// ack = request ack + 1 (seq overwritten), multicast on group 1. IGNORE is
// acked the same way, but the kernel's filter (cn_filter) drops that ack
// for the socket that sent IGNORE, and no ack is sent at all when no
// listener is left: the request times out, while another group-1 listener
// sees the ack it would have matched.
func TestIntegrationRequestProcConnectorAck(t *testing.T) {
	testutil.KernelConnector(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The observer listens too, so that a listener is left after IGNORE.
	obs, err := transport.Dial(transport.WithGroups(1))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	if err := obs.Send(ctx, transport.Kernel(), &transport.Message{ID: procID, Seq: 1, Ack: 1, Data: procOp(1)}); err != nil {
		t.Fatal(err)
	}
	defer obs.Send(ctx, transport.Kernel(), &transport.Message{ID: procID, Seq: 2, Ack: 2, Data: procOp(2)})

	c, err := cnactor.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	// A callback for 1:1 joins group 1, where the kernel sends its acks;
	// the proc events themselves go to it.
	if err := c.AddCallback(procID, "proc", handlers.Sink()); err != nil {
		t.Fatal(err)
	}
	const listenAck, ignoreAck = 0x5eed0001, 0x5eed1001
	r, err := c.Request(ctx, transport.Kernel(), &transport.Message{ID: procID, Ack: listenAck, Data: procOp(1)},
		cnactor.WithMatch(cnactor.MatchAck), cnactor.WithRequestTimeout(time.Second), cnactor.WithRetries(2))
	if err != nil {
		t.Fatalf("LISTEN: %v", err)
	}
	if r.Ack != listenAck+1 || r.Group != 1 || !procAck(&r.Received) {
		t.Fatalf("LISTEN: reply %+v", r)
	}
	t.Logf("LISTEN acked: ack %#x, seq %d (not ours), rtt %v", r.Ack, r.Seq, r.RTT)

	_, err = c.Request(ctx, transport.Kernel(), &transport.Message{ID: procID, Ack: ignoreAck, Data: procOp(2)},
		cnactor.WithMatch(cnactor.MatchAck), cnactor.WithRequestTimeout(300*time.Millisecond))
	if !errors.Is(err, cnactor.ErrTimeout) {
		t.Fatalf("IGNORE: err = %v; the kernel does not deliver this ack to the socket that sent IGNORE", err)
	}
	b := transport.NewBatch(0)
	for seen := false; !seen; {
		if err := obs.ReceiveBatch(ctx, b); err != nil {
			t.Fatalf("the observer never saw the IGNORE ack: %v", err)
		}
		for i := range b.Messages {
			seen = seen || procAck(&b.Messages[i]) && b.Messages[i].Ack == ignoreAck+1
		}
	}
	if st := c.Stats().Requester; st.Replies != 1 || st.Timeouts != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Request/reply between two connectors over the real kernel.
func TestIntegrationRequestEcho(t *testing.T) {
	testutil.Privileged(t)
	id := transport.CbID{Idx: 0xec40, Val: 1}
	srv, err := cnactor.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	if err := srv.AddCallback(id, "echo", handlers.Echo()); err != nil {
		t.Fatal(err)
	}
	cli, err := cnactor.New()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close(context.Background())
	const n, workers = 2000, 32
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				data := []byte(fmt.Sprintf("echo %d", i))
				r, err := cli.Request(context.Background(), transport.Addr{Port: srv.Port()}, &transport.Message{ID: id, Data: data}, cnactor.WithRetries(3))
				if err == nil && (!bytes.Equal(r.Data, data) || r.From != srv.Port()) {
					err = fmt.Errorf("reply %+v to %q", r, data)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := cli.Stats().Requester; st.Replies != n || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A handler that makes a request of its own from its callback and waits for
// the reply, which only its connector's receive loop reads, gets it: a
// handler the loop runs on its own goroutine (actors/reader_inline.go) does
// not keep the loop past a few milliseconds, but moves it off the loop
// (ReaderStats.LoopMoves).
func TestIntegrationHandlerRequestsFromItsCallback(t *testing.T) {
	testutil.Privileged(t)
	echoID, relayID := transport.CbID{Idx: 0xec42, Val: 1}, transport.CbID{Idx: 0xec42, Val: 2}
	peer := newKernelConnector(t)
	if err := peer.AddCallback(echoID, "echo", handlers.Echo()); err != nil {
		t.Fatal(err)
	}
	relay := newKernelConnector(t)
	var relayed atomic.Int64
	err := relay.AddCallback(relayID, "relay", handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
		r, err := relay.Request(ctx, transport.Addr{Port: peer.Port()}, &transport.Message{ID: echoID, Data: m.Data},
			cnactor.WithRequestTimeout(5*time.Second))
		if err != nil {
			return err
		}
		if !bytes.Equal(r.Data, m.Data) {
			return fmt.Errorf("echo of %q came back as %q", m.Data, r.Data)
		}
		relayed.Add(1)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	cli := newKernelConnector(t)
	// Bursts until the loop has run the relay and moved once (a burst may
	// reach it one message at a time, which its own goroutine handles):
	// the bursts before that check only that every request completes.
	// Not a multiple of the batch (64): a reader that gets no CPU while a
	// burst is sent reads it in full batches, which leave the relay
	// asleep for its own goroutine; the short last one runs it here.
	const burst, maxBursts = 100, 40
	sent := int64(0)
	for b := 0; b < maxBursts && relay.Stats().Reader.LoopMoves == 0; b++ {
		for i := range burst {
			m := &transport.Message{ID: relayID, Data: []byte(fmt.Sprintf("relay %d.%d", b, i))}
			if err := cli.Send(context.Background(), transport.Addr{Port: relay.Port()}, m); err != nil {
				t.Fatal(err)
			}
		}
		sent += burst
		waitUntil(t, "every message relayed", func() bool { return relayed.Load() == sent })
	}
	// Handled is counted once Receive has returned.
	waitUntil(t, "every relay counted", func() bool {
		for _, cb := range relay.Stats().Callbacks {
			if cb.ID == relayID {
				return cb.Handled+cb.Failed == uint64(sent)
			}
		}
		return false
	})
	st := relay.Stats()
	if st.Reader.LoopMoves == 0 {
		t.Fatalf("%d bursts and the relay never kept its loop: is it run there?", maxBursts)
	}
	for _, cb := range st.Callbacks {
		if cb.ID == relayID && (cb.Failed != 0 || cb.Handled != uint64(sent)) {
			t.Errorf("relay callback %+v, want %d handled and none failed", cb.CallbackStats, sent)
		}
	}
}
