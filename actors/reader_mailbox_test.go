package actors

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/transport"
)

// exclusive checks that nothing it counts runs at the same time as
// anything else it counts.
type exclusive struct {
	t      *testing.T
	inside atomic.Int32
	n      int // written only inside: the race detector sees any overlap
	order  []any
}

func (e *exclusive) enter(msg any) {
	if e.inside.Add(1) != 1 {
		e.t.Error("two messages of the reader actor ran at once")
	}
	e.n++
	e.order = append(e.order, msg)
	runtime.Gosched() // widen the window an overlap would show in
	e.inside.Add(-1)
}

func (e *exclusive) InvokeSystemMessage(msg any)     { e.enter(msg) }
func (e *exclusive) InvokeUserMessage(msg any)       { e.enter(msg) }
func (e *exclusive) EscalateFailure(reason, msg any) { e.t.Errorf("failure: %v", reason) }

// Batches (taken directly when the actor is idle) and control messages
// posted from many goroutines at once run one at a time, every one of
// them, each poster's in the order it posted them: with batches only (the
// direct path contended) and with control messages among them (queued,
// so that batches behind them queue too).
func TestReaderMailboxOneAtATime(t *testing.T) {
	for _, every := range []int{0, 50, 3} {
		t.Run(fmt.Sprintf("control every %d", every), func(t *testing.T) {
			checkOneAtATime(t, every)
		})
	}
}

func checkOneAtATime(t *testing.T, controlEvery int) {
	e := &exclusive{t: t}
	m := &readerMailbox{batch: func(b *transport.Batch) { e.enter(b) }}
	m.RegisterHandlers(e, actor.NewSynchronizedDispatcher(8))
	const posters, each = 8, 2000
	type tagged struct{ poster, i int }
	batches := make([][]*transport.Batch, posters)
	index := map[*transport.Batch][2]int{}
	for p := range posters {
		batches[p] = make([]*transport.Batch, each)
		for i := range batches[p] {
			batches[p][i] = &transport.Batch{}
			index[batches[p][i]] = [2]int{p, i}
		}
	}
	system := 0
	var wg sync.WaitGroup
	for p := range posters {
		wg.Go(func() {
			for i := range each {
				if controlEvery > 0 && i%controlEvery == 0 {
					m.PostUserMessage(tagged{p, i})
					m.PostSystemMessage(&actor.Started{})
				} else {
					m.PostUserMessage(batches[p][i])
				}
			}
		})
		if controlEvery > 0 {
			system += (each + controlEvery - 1) / controlEvery
		}
	}
	wg.Wait()
	if want := posters*each + system; e.n != want {
		t.Fatalf("%d messages ran, want %d", e.n, want)
	}
	if m.UserMessageCount() != 0 || m.status.Load() != idle {
		t.Fatalf("left %d queued, status %d", m.UserMessageCount(), m.status.Load())
	}
	next := make([]int, posters)
	for _, msg := range e.order {
		var p, i int
		switch v := msg.(type) {
		case tagged:
			p, i = v.poster, v.i
		case *transport.Batch:
			pi := index[v]
			p, i = pi[0], pi[1]
		default:
			continue
		}
		if i != next[p] {
			t.Fatalf("poster %d: message %d ran before %d", p, i, next[p])
		}
		next[p]++
	}
}

// A panic in a batch goes to EscalateFailure with the batch, and the
// mailbox takes the next message.
func TestReaderMailboxBatchPanicEscalates(t *testing.T) {
	var escalated []any
	inv := &failures{got: &escalated}
	b1, b2 := &transport.Batch{}, &transport.Batch{}
	var ran []*transport.Batch
	m := &readerMailbox{batch: func(b *transport.Batch) {
		if b == b1 {
			panic("boom")
		}
		ran = append(ran, b)
	}}
	m.RegisterHandlers(inv, actor.NewSynchronizedDispatcher(8))
	m.PostUserMessage(b1)
	m.PostUserMessage(b2)
	if len(escalated) != 1 || escalated[0] != any(b1) || len(ran) != 1 || ran[0] != b2 {
		t.Fatalf("escalated %v, ran %v", escalated, ran)
	}
}

type failures struct{ got *[]any }

func (f *failures) InvokeSystemMessage(any)        {}
func (f *failures) InvokeUserMessage(any)          {}
func (f *failures) EscalateFailure(_ any, msg any) { *f.got = append(*f.got, msg) }

// A batch posted while the mailbox is suspended (after a failure, until
// the supervisor has decided) waits, and runs once it is resumed; one
// posted while another goroutine suspends the actor never runs suspended.
func TestReaderMailboxSuspension(t *testing.T) {
	var ran []*transport.Batch
	m := &readerMailbox{batch: func(b *transport.Batch) { ran = append(ran, b) }}
	m.RegisterHandlers(&failures{got: new([]any)}, actor.NewSynchronizedDispatcher(8))
	m.PostSystemMessage(&actor.SuspendMailbox{})
	b := &transport.Batch{}
	m.PostUserMessage(b)
	if len(ran) != 0 {
		t.Fatal("a batch ran while the mailbox was suspended")
	}
	m.PostSystemMessage(&actor.ResumeMailbox{})
	if len(ran) != 1 || ran[0] != b {
		t.Fatalf("ran %v after resume, want the batch", ran)
	}

	bad := 0
	for range 5000 {
		m := &readerMailbox{}
		m.batch = func(*transport.Batch) {
			if m.suspended.Load() {
				bad++
			}
		}
		m.RegisterHandlers(&failures{got: new([]any)}, actor.NewSynchronizedDispatcher(8))
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { <-start; runtime.Gosched(); m.PostSystemMessage(&actor.SuspendMailbox{}) })
		wg.Go(func() { <-start; m.PostUserMessage(&transport.Batch{}) })
		close(start)
		wg.Wait()
	}
	if bad > 0 {
		t.Errorf("%d batches ran while the mailbox was suspended", bad)
	}
}
