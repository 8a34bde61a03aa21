package actors

import (
	"runtime"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/transport"
)

// The handler's side of the mailbox (mailbox.go has the ring and the
// reader's side): the actor.Mailbox methods protoactor calls, and how the
// handler actor takes runs of messages off the ring and gives their slots
// back.

// PostUserMessage queues a control message (never limited) and schedules
// the actor.
func (m *mailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	i := m.reserve()
	m.kind[i], m.ctl[i] = slotControl, msg
	m.n++
	m.mu.Unlock()
	m.userCount.Add(1)
	m.schedule()
}

// take hands the handler the next run: the run a panic interrupted, or up
// to maxRun queued messages in a row (not across the ring's end), or one
// loss or control slot. ok is false when nothing is queued.
func (m *mailbox) take(d *delivery) (ok bool) {
	m.mu.Lock()
	if m.leftK > 0 {
		d.first, d.k, d.kind = m.leftFirst, m.leftK, slotMessage
		d.done, d.consumed = 0, d.k
		d.msgs = m.recv[d.first : d.first+d.k : d.first+d.k]
		m.leftK = 0
		m.left.Store(false)
		m.inRun = true
		m.mu.Unlock()
		return true
	}
	if m.n == 0 {
		m.mu.Unlock()
		return false
	}
	first := m.head
	k := 1
	d.first, d.kind = first, m.kind[first]
	switch d.kind {
	case slotMessage:
		for k < m.n && k < maxRun && first+k < len(m.kind) && m.kind[first+k] == slotMessage {
			k++
		}
		d.msgs = m.recv[first : first+k : first+k]
	case slotLoss:
		d.loss = m.loss[first]
	case slotControl:
		d.ctl = m.ctl[first]
	}
	d.k, d.done, d.consumed = k, 0, k
	m.head = m.wrap(first + k)
	m.n -= k
	m.taken += k
	m.inRun = true
	m.userCount.Add(-int32(k))
	m.mu.Unlock()
	return true
}

// release frees the first done slots of run d; the rest of it, if a panic
// interrupted it, is handed out again by the next take.
func (m *mailbox) release(d *delivery, done int) {
	m.mu.Lock()
	m.inRun = false
	for i := d.first; i < d.first+done; i++ {
		m.free(i)
	}
	if done < d.k {
		m.leftFirst, m.leftK = d.first+done, d.k-done
		m.left.Store(true)
	}
	m.reclaim()
	m.signalSpace()
	m.mu.Unlock()
	d.msgs, d.ctl = nil, nil
}

// free marks slot i finished; called with mu held.
func (m *mailbox) free(i int) {
	switch m.kind[i] {
	case slotMessage:
		m.envs--
		if c := cap(m.bufs[i]); c > bigBuf && m.bigBytes > bigBudget {
			m.bigBytes -= c
			m.bufs[i] = nil
			m.recv[i] = transport.Received{} // its Data is that buffer
		}
		// Otherwise recv[i] stays as it is until the slot is reused: the
		// one reference in it, Data, is bufs[i], which the slot keeps
		// anyway, and zeroing it cost a write of the whole struct per
		// message.
	case slotControl:
		m.ctl[i] = nil
	}
	m.kind[i] = slotFree
}

// reclaim moves the tail past finished and dead slots; called with mu held.
func (m *mailbox) reclaim() {
	for m.taken > 0 && m.kind[m.tail] == slotFree {
		m.tail = m.wrap(m.tail + 1)
		m.taken--
	}
}

// PostSystemMessage queues a protoactor system message.
func (m *mailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.sys = append(m.sys, msg)
	m.mu.Unlock()
	m.sysCount.Add(1)
	m.schedule()
}

func (m *mailbox) popSys() any {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sys) == 0 {
		return nil
	}
	msg := m.sys[0]
	m.sys[0] = nil
	m.sys = m.sys[1:]
	return msg
}

// RegisterHandlers is called by protoactor when the actor is spawned.
func (m *mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
	m.processFn = m.process // once: a method value allocates each time it is made
}

// Start is called once the actor is ready.
func (m *mailbox) Start() {}

// UserMessageCount is the number of queued user messages.
func (m *mailbox) UserMessageCount() int { return int(m.userCount.Load()) }

// queuedEnvelopes is the number of messages waiting for the handler or
// being handled.
func (m *mailbox) queuedEnvelopes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.envs
}

// discard drops every queued message, counting each; used once the actor
// is stopped so that nothing queued is lost silently. A reader waiting for
// room is woken (it will find the mailbox stopped).
func (m *mailbox) discard() int {
	m.mu.Lock()
	dropped := 0
	for i := 0; i < m.n; i++ {
		j := (m.head + i) % len(m.kind)
		if m.kind[j] == slotMessage {
			dropped++
		}
		m.free(j)
	}
	if m.leftK > 0 {
		for i := m.leftFirst; i < m.leftFirst+m.leftK; i++ {
			dropped++
			m.free(i)
		}
		m.leftK = 0
		m.left.Store(false)
	}
	m.userCount.Add(-int32(m.n))
	m.taken += m.n
	m.head = (m.head + m.n) % len(m.kind)
	m.n = 0
	m.reclaim()
	m.waiting = true
	m.signalSpace()
	m.mu.Unlock()
	m.counters.dropped.Add(uint64(dropped))
	return dropped
}

// claim takes the mailbox for a run on the caller's goroutine (the receive
// loop's), as schedule does for the dispatcher; the caller then calls
// process. It fails if the mailbox is running already.
func (m *mailbox) claim() bool { return m.status.CompareAndSwap(idle, running) }

func (m *mailbox) schedule() {
	if m.status.CompareAndSwap(idle, running) {
		m.dispatcher.Schedule(m.processFn)
	}
}

func (m *mailbox) process() {
	for {
		m.runQueue()
		m.status.Store(idle)
		if m.sysCount.Load() == 0 && (m.suspended.Load() || !m.hasWork()) {
			return
		}
		if !m.status.CompareAndSwap(idle, running) {
			return // someone else scheduled it
		}
	}
}

// hasWork says, without the lock, whether take may find something. A
// message counted in userCount only after its poster released the lock is
// not missed: the poster schedules the actor after counting it, and
// process checks again once it has left the actor idle.
func (m *mailbox) hasWork() bool { return m.userCount.Load() != 0 || m.left.Load() }

// runQueue handles system messages first, then runs of user slots, until
// the mailbox is empty or suspended.
func (m *mailbox) runQueue() {
	d := &m.run
	inRun := false
	defer func() {
		if r := recover(); r != nil {
			var msg any
			if inRun {
				msg = d
			}
			if m.onPanic != nil {
				r = m.onPanic(r, msg)
			}
			if inRun {
				// msgs[done] failed (onPanic counted it): free it
				// with those before it; the rest wait for the
				// supervisor's decision.
				m.release(d, min(d.done+1, d.k))
			}
			m.invoker.EscalateFailure(r, nil)
		}
	}()
	for i, t := 0, m.dispatcher.Throughput(); ; i++ {
		if i >= t {
			i = 0
			runtime.Gosched()
		}
		if m.sysCount.Load() > 0 { // no lock per run when there is none
			if msg := m.popSys(); msg != nil {
				m.sysCount.Add(-1)
				runSystem(msg, &m.suspended, m.invoker)
				continue
			}
		}
		if m.suspended.Load() || !m.hasWork() || !m.take(d) {
			return
		}
		if m.stopped.Load() {
			// protoactor ignores messages to a stopped actor: count them.
			if d.kind == slotMessage {
				m.counters.dropped.Add(uint64(d.k))
			}
			m.release(d, d.k)
			continue
		}
		if d.kind == slotControl {
			// Drain markers, and protoactor's own user messages.
			m.invoker.InvokeUserMessage(d.ctl)
			m.release(d, d.k)
			continue
		}
		inRun = true
		m.invoker.InvokeUserMessage(d)
		inRun = false
		m.release(d, d.consumed)
	}
}

// runSystem handles one system message as protoactor's default mailbox
// does: suspending and resuming are the mailbox's own, the rest goes to
// the actor.
func runSystem(msg any, suspended *atomic.Bool, invoker actor.MessageInvoker) {
	switch msg.(type) {
	case *actor.SuspendMailbox:
		suspended.Store(true)
	case *actor.ResumeMailbox:
		suspended.Store(false)
	default:
		invoker.InvokeSystemMessage(msg)
	}
}
