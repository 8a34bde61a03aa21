package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/transport"
)

// readerMailbox is the reader actor's protoactor Mailbox. A batch posted
// while the actor is idle with nothing queued is routed at once, on the
// posting goroutine (the receive loop, since the reader runs on the
// synchronized dispatcher), without a queue and without protoactor's
// generic invocation, which cost 0.55-0.65 us of a request's round trip
// (two batches). Everything else, and a batch that finds the actor busy,
// is queued and run in order by whoever holds the actor. As in protoactor's
// default mailbox: one message at a time, system messages first,
// suspension after a failure, and a panic escalated to the supervisor.
type readerMailbox struct {
	mu   sync.Mutex
	user queue
	sys  queue

	userCount atomic.Int32
	sysCount  atomic.Int32
	status    atomic.Int32 // idle or running
	suspended atomic.Bool

	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
	processFn  func() // m.process, made once
	// batch is the reader's routing of a batch, the same as its actor's
	// Receive gives one; done gives a routed batch back to the receive
	// loop (nil: nothing to do).
	batch func(*transport.Batch)
	done  func(*transport.Batch)
	// looping: the actor is held by the receive loop's post (the actor's
	// own, like everything routing keeps).
	looping bool
}

func (m *readerMailbox) PostUserMessage(msg any) {
	if b, ok := msg.(*transport.Batch); ok {
		if m.postBatch(b, false) {
			m.giveBack(b)
		}
		return
	}
	m.enqueue(msg)
	m.schedule()
}

// postBatch is the receive loop's post: it reports whether b was routed
// at once, on this goroutine, and so is free again (not given back); a
// batch that was queued is given back once routed. onLoop says the
// caller is the receive loop, which runs the handlers that routing here
// makes ready.
func (m *readerMailbox) postBatch(b *transport.Batch, onLoop bool) (routed bool) {
	if m.userCount.Load() == 0 && m.sysCount.Load() == 0 && !m.suspended.Load() && m.status.CompareAndSwap(idle, running) {
		m.looping = onLoop
		// Checked again now that the actor is ours: whoever held it
		// before may have suspended it, or left system messages.
		if m.sysCount.Load() == 0 && !m.suspended.Load() {
			m.runBatch(b)
			m.looping = false
			m.release()
			return true
		}
		m.enqueue(b)
		m.run()
		m.looping = false
		m.release()
		return false
	}
	m.enqueue(b)
	m.schedule()
	return false
}

func (m *readerMailbox) giveBack(b *transport.Batch) {
	if m.done != nil {
		m.done(b)
	}
}

func (m *readerMailbox) enqueue(msg any) {
	m.mu.Lock()
	m.user.push(msg)
	m.mu.Unlock()
	m.userCount.Add(1)
}

func (m *readerMailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.sys.push(msg)
	m.mu.Unlock()
	m.sysCount.Add(1)
	m.schedule()
}

func (m *readerMailbox) schedule() {
	if m.status.CompareAndSwap(idle, running) {
		m.dispatcher.Schedule(m.processFn)
	}
}

// runBatch routes b directly; a panic goes to the supervisor as it would
// from Receive.
func (m *readerMailbox) runBatch(b *transport.Batch) {
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, b)
		}
	}()
	m.batch(b)
}

// runQueued routes a queued batch and gives it back, even if routing
// panics (the panic goes on to run's recover).
func (m *readerMailbox) runQueued(b *transport.Batch) {
	defer m.giveBack(b)
	m.batch(b)
}

// process runs what is queued, then releases the actor.
func (m *readerMailbox) process() {
	m.run()
	m.release()
}

// release leaves the actor idle, and runs what came in meanwhile (its
// poster found the actor running and left it to whoever held it).
func (m *readerMailbox) release() {
	for {
		m.status.Store(idle)
		if m.sysCount.Load() == 0 && (m.suspended.Load() || m.userCount.Load() == 0) {
			return
		}
		if !m.status.CompareAndSwap(idle, running) {
			return // someone else holds it now
		}
		m.run()
	}
}

func (m *readerMailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	for i, t := 0, m.dispatcher.Throughput(); ; i++ {
		if i >= t {
			i = 0
			runtime.Gosched()
		}
		if msg = m.pop(&m.sys, &m.sysCount); msg != nil {
			runSystem(msg, &m.suspended, m.invoker)
			continue
		}
		if m.suspended.Load() {
			return
		}
		if msg = m.pop(&m.user, &m.userCount); msg == nil {
			return
		}
		if b, ok := msg.(*transport.Batch); ok {
			m.runQueued(b)
		} else {
			m.invoker.InvokeUserMessage(msg)
		}
	}
}

// pop takes the oldest message of q, nil if none.
func (m *readerMailbox) pop(q *queue, count *atomic.Int32) any {
	if count.Load() == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	msg := q.pop()
	if msg != nil {
		count.Add(-1)
	}
	return msg
}

// queue is a FIFO that reuses its array once drained: the reader's
// control messages come one at a time, and must not cost an allocation
// each.
type queue struct {
	msgs []any
	head int
}

func (q *queue) push(msg any) { q.msgs = append(q.msgs, msg) }

func (q *queue) pop() any {
	if q.head == len(q.msgs) {
		return nil
	}
	msg := q.msgs[q.head]
	q.msgs[q.head] = nil
	q.head++
	if q.head == len(q.msgs) {
		q.msgs, q.head = q.msgs[:0], 0
	}
	return msg
}

func (m *readerMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
	m.processFn = m.process // once: a method value allocates each time it is made
}

func (m *readerMailbox) Start() {}

func (m *readerMailbox) UserMessageCount() int { return int(m.userCount.Load()) }
