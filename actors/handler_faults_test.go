package actors

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// batcher is a BatchHandler that fails the message with seq failAt and
// panics on a batch holding seq panicAt.
type batcher struct {
	failAt, panicAt uint32
	mu              sync.Mutex
	handled         []uint32
}

func (b *batcher) Receive(handlers.Context, *transport.Message) error { return nil }

func (b *batcher) ReceiveBatch(_ handlers.CallbackContext, msgs []transport.Received) (int, error) {
	for _, m := range msgs {
		if m.Seq == b.panicAt {
			panic("batch panic")
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range msgs {
		if m.Seq == b.failAt {
			return i, errors.New("batch failure")
		}
		b.handled = append(b.handled, m.Seq)
	}
	return len(msgs), nil
}

func (b *batcher) seen() []uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]uint32(nil), b.handled...)
}

// A batch handler's error fails one message and hands the rest to a later
// call; a panic fails the whole run. Each failure is dead-lettered, and a
// dead-letter hook that panics is contained.
func TestBatchHandlerFailures(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	b := &batcher{failAt: 3, panicAt: 100}
	var dead atomic.Int64
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: transport.CbID{Idx: 0x5330, Val: 1}, Name: "batch", Handler: b,
		DeadLetter: func(*transport.Received, error) { dead.Add(1); panic("hook") }})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop(context.Background())
	// Queued before the actor runs them, so that they form one run.
	for seq := uint32(1); seq <= 5; seq++ {
		ref.mb.put(&transport.Received{Message: transport.Message{Seq: seq}})
		ref.counters.received.Add(1)
	}
	ref.wake()
	waitFor(t, "the run", func() bool { s := ref.Stats(); return s.Handled+s.Failed == 5 })
	if got := b.seen(); len(got) != 4 || got[2] != 4 {
		t.Fatalf("handled %v, want 1 2 4 5 (3 failed)", got)
	}
	// A panic in a batch: every message of the run fails.
	for seq := uint32(99); seq <= 101; seq++ {
		ref.mb.put(&transport.Received{Message: transport.Message{Seq: seq}})
		ref.counters.received.Add(1)
	}
	ref.wake()
	waitFor(t, "the panicking run", func() bool { s := ref.Stats(); return s.Handled+s.Failed == 8 })
	s := ref.Stats()
	checkInvariant(t, "after the failures", s)
	if s.Failed != 4 || dead.Load() != 4 {
		t.Fatalf("stats %+v, %d dead letters; want 4 failed (1 error + 3 in the panicking run)", s, dead.Load())
	}
}

// ctxProbe reports what its Context says about each message and answers
// through it.
type ctxProbe struct {
	got chan probeSeen
}

type probeSeen struct {
	from, group uint32
	creds       transport.Credentials
	id          transport.CbID
	name        string
	replyErr    error
	sendErr     error
	logger      bool
}

func (p *ctxProbe) Receive(ctx handlers.Context, m *transport.Message) error {
	id, name := ctx.Callback()
	s := probeSeen{from: ctx.From(), group: ctx.Group(), creds: ctx.Creds(), id: id, name: name, logger: ctx.Logger() != nil}
	s.replyErr = ctx.Reply([]byte("re"))
	s.sendErr = ctx.Send(transport.Addr{Group: 3}, &transport.Message{ID: m.ID, Data: []byte("new")})
	p.got <- s
	return nil
}

// A handler's Context describes the message it is handling, replies to its
// sender with seq kept and ack + 1, and numbers new messages.
func TestHandlerContext(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	snd := newFakeSender()
	p := &ctxProbe{got: make(chan probeSeen, 1)}
	id := transport.CbID{Idx: 0x5331, Val: 1}
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: id, Name: "probe", Handler: p, Sender: snd})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop(context.Background())
	creds := transport.Credentials{PID: 7, UID: 8, GID: 9}
	ref.deliver(&transport.Received{Message: transport.Message{ID: id, Seq: 40, Ack: 5}, From: 1234, Group: 2, Creds: creds})
	s := <-p.got
	if s.from != 1234 || s.group != 2 || s.creds != creds || s.id != id || s.name != "probe" || !s.logger ||
		s.replyErr != nil || s.sendErr != nil {
		t.Fatalf("context said %+v", s)
	}
	reply, sent := snd.next(t), snd.next(t)
	if reply.to != (transport.Addr{Port: 1234}) || reply.m.Seq != 40 || reply.m.Ack != 6 || string(reply.m.Data) != "re" {
		t.Fatalf("reply %+v", reply)
	}
	if sent.to != (transport.Addr{Group: 3}) || sent.m.Seq != 1 || string(sent.m.Data) != "new" {
		t.Fatalf("send %+v, want seq 1 from the sender", sent)
	}
	if ref.Child().PID == nil {
		t.Fatal("no pid")
	}
}

// lifecycle escalates some errors, stops on handlers.ErrStop, and panics
// in its Restart and OnStop hooks.
type lifecycle struct {
	restarts, stops atomic.Int64
}

var errEscalate = errors.New("escalate me")

func (l *lifecycle) Receive(_ handlers.Context, m *transport.Message) error {
	switch m.Seq {
	case 1:
		return errEscalate
	case 2:
		return errors.New("not escalated")
	case 3:
		return handlers.ErrStop
	}
	return nil
}
func (l *lifecycle) Restart() { l.restarts.Add(1); panic("restart hook") }
func (l *lifecycle) OnStop()  { l.stops.Add(1); panic("stop hook") }

// Errors the Escalate function picks, and ErrStop, go to the parent
// (protoactor's default: restart); hooks that panic are contained, and a
// loss notice reaches a loss observer.
func TestHandlerEscalationAndHooks(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	l := &lifecycle{}
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: transport.CbID{Idx: 0x5332, Val: 1}, Name: "life", Handler: l,
		Escalate: func(err error) bool { return errors.Is(err, errEscalate) }})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint32(1); seq <= 4; seq++ {
		ref.deliver(&transport.Received{Message: transport.Message{Seq: seq}})
	}
	// 1 escalates (restart), 2 fails quietly, 3 is a normal end (restart
	// again under the default strategy), 4 is handled.
	waitFor(t, "every message", func() bool { s := ref.Stats(); return s.Handled+s.Failed == 4 })
	waitFor(t, "two restarts", func() bool { return l.restarts.Load() == 2 })
	if s := ref.Stats(); s.Failed != 2 || s.Handled != 2 {
		t.Fatalf("stats %+v, want 2 failed (1, 2) and 2 handled (3, 4)", s)
	}
	if err := ref.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ref.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.stops.Load() != 1 {
		t.Fatalf("OnStop called %d times", l.stops.Load())
	}
	// Drain of a stopped handler returns at once.
	if err := ref.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// notifyLoss reaches a loss observer before what is queued next; a handler
// that is not one is not told.
func TestHandlerNotifyLoss(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	g := newGated()
	close(g.gate)
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: transport.CbID{Idx: 0x5333, Val: 1}, Name: "loss", Handler: g})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop(context.Background())
	ref.notifyLoss(3)
	ref.deliver(&transport.Received{Message: transport.Message{Seq: 1}})
	waitFor(t, "the message", func() bool { return g.handled.Load() == 1 })
	if n := g.lostTo(handlers.LossSocket); n != 3 {
		t.Fatalf("socket loss told %d, want 3", n)
	}
	plain, err := SpawnHandler(top(sys), HandlerSpec{ID: transport.CbID{Idx: 0x5333, Val: 2}, Name: "plain", Handler: handlers.Sink()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Stop(context.Background())
	plain.notifyLoss(3) // nothing to tell: must not queue a notice
	plain.deliver(&transport.Received{Message: transport.Message{Seq: 1}})
	waitFor(t, "the plain handler", func() bool { return plain.Stats().Handled == 1 })
	if s := plain.Stats(); s.Queued != 0 {
		t.Fatalf("plain %+v", s)
	}
}

func TestMatchNamesAndEmptyRTT(t *testing.T) {
	t.Parallel()
	if MatchAck.String() != "ack" || MatchSeqAck.String() != "seq-ack" {
		t.Fatal("match names")
	}
	if (RTTHistogram{}).Count() != 0 {
		t.Fatal("empty histogram counts")
	}
}

// A reply to a peer whose queue stays full fails with ErrPeerCongested
// after a short wait, and further replies to it within congestedFor fail
// at once, without waiting again; a peer with room is not affected.
func TestReplyToCongestedPeer(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	net := memory.NewNetwork()
	self, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	full, err := net.Dial(memory.WithQueueLen(1))
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	open, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	id := transport.CbID{Idx: 0x5334, Val: 1}
	// The full peer's queue of one is taken by a message it never reads.
	if err := self.Send(context.Background(), transport.Addr{Port: full.Port()}, &transport.Message{ID: id}); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		err  error
		took time.Duration
	}
	out := make(chan outcome, 8)
	h := handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
		start := time.Now()
		err := ctx.Reply([]byte("re"))
		out <- outcome{err, time.Since(start)}
		return nil
	})
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: id, Name: "replier", Handler: h, Sender: &connSender{c: self}})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop(context.Background())
	ref.deliver(&transport.Received{Message: transport.Message{ID: id, Seq: 1}, From: full.Port()})
	first := recvOutcome(t, out)
	ref.deliver(&transport.Received{Message: transport.Message{ID: id, Seq: 2}, From: full.Port()})
	second := recvOutcome(t, out)
	ref.deliver(&transport.Received{Message: transport.Message{ID: id, Seq: 3}, From: open.Port()})
	third := recvOutcome(t, out)
	if !errors.Is(first.err, ErrPeerCongested) || !errors.Is(second.err, ErrPeerCongested) {
		t.Fatalf("replies to the full peer: %v, %v; want ErrPeerCongested", first.err, second.err)
	}
	// Within congestedFor of the first, the second did not try again.
	if first.took+second.took < congestedFor/2 && !strings.Contains(second.err.Error(), "(congested)") {
		t.Fatalf("second reply %v: want the remembered congestion", second.err)
	}
	if third.err != nil {
		t.Fatalf("reply to a peer with room: %v", third.err)
	}
}

func recvOutcome[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("the handler did not answer")
		panic("unreachable")
	}
}
