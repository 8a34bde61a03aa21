package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
)

// Overflow is what a full handler mailbox does with one more message.
type Overflow uint8

const (
	// DropNewest refuses the message that does not fit (the default).
	DropNewest Overflow = iota
	// DropOldest discards the oldest queued message to make room.
	DropOldest
)

func (o Overflow) String() string {
	if o == DropOldest {
		return "drop-oldest"
	}
	return "drop-newest"
}

// DefaultMailboxSize is a handler mailbox's capacity unless configured.
const DefaultMailboxSize = 1024

// mailbox is a protoactor Mailbox whose user queue holds at most limit
// envelopes and never blocks its sender. Other user messages (drain markers)
// are not limited, so that control always gets through. Its scheduling
// mirrors protoactor's default mailbox: system messages first, suspension on
// failure, a bounded run per dispatch.
type mailbox struct {
	mu       sync.Mutex
	ring     []any
	head, n  int
	envs     int // envelopes in ring
	limit    int
	overflow Overflow
	sys      []any
	// notifyLoss makes the mailbox tell the handler, in order, how many
	// messages it dropped (a lossNotice before the next admitted one).
	notifyLoss  bool
	pendingLoss uint64

	userCount atomic.Int32
	sysCount  atomic.Int32
	status    atomic.Int32 // idle or running
	suspended atomic.Bool
	stopped   atomic.Bool // the actor has stopped: what is left is dropped

	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
	counters   *counters
	// onPanic sees the message that was being handled when the handler
	// panicked and returns the reason escalated to the supervisor.
	onPanic func(value, msg any) any
}

const (
	idle int32 = iota
	running
)

func newMailbox(limit int, overflow Overflow, c *counters) *mailbox {
	if limit <= 0 {
		limit = DefaultMailboxSize
	}
	return &mailbox{ring: make([]any, 16), limit: limit, overflow: overflow, counters: c}
}

// PostUserMessage queues msg, applying the overflow policy to envelopes.
func (m *mailbox) PostUserMessage(msg any) {
	m.enqueue(msg)
	m.schedule()
}

// enqueue queues msg without waking the actor (see HandlerRef.Enqueue).
func (m *mailbox) enqueue(msg any) {
	env, isEnv := msg.(*envelope)
	var dropped *envelope
	m.mu.Lock()
	if isEnv && m.envs >= m.limit {
		if m.overflow == DropNewest {
			if m.notifyLoss {
				m.pendingLoss++
			}
			m.mu.Unlock()
			m.counters.dropped.Add(1)
			env.release()
			return
		}
		dropped = m.removeOldestEnvelope()
		if m.notifyLoss && dropped != nil {
			m.lossAtHead()
		}
	}
	if isEnv && m.pendingLoss > 0 {
		m.push(&lossNotice{n: m.pendingLoss, source: handlers.LossMailbox})
		m.pendingLoss = 0
		m.userCount.Add(1)
	}
	m.push(msg)
	if isEnv {
		m.envs++
	}
	m.mu.Unlock()
	if dropped != nil {
		m.counters.dropped.Add(1)
		dropped.release()
	} else {
		m.userCount.Add(1)
	}
}

// lossAtHead records one message lost at the head of the queue, where the
// oldest was dropped: the handler hears of it before the survivors. Called
// with mu held.
func (m *mailbox) lossAtHead() {
	if m.n > 0 {
		if ln, ok := m.ring[m.head].(*lossNotice); ok {
			ln.n++
			return
		}
	}
	if m.n == len(m.ring) {
		m.grow()
	}
	m.head = (m.head - 1 + len(m.ring)) % len(m.ring)
	m.ring[m.head] = &lossNotice{n: 1, source: handlers.LossMailbox}
	m.n++
	m.userCount.Add(1)
}

// push appends msg to the ring, growing it; called with mu held.
func (m *mailbox) push(msg any) {
	if m.n == len(m.ring) {
		m.grow()
	}
	m.ring[(m.head+m.n)%len(m.ring)] = msg
	m.n++
}

// lossNotice tells a handlers.LossObserver that n messages were lost here.
type lossNotice struct {
	n      uint64
	source handlers.LossSource
}

// removeOldestEnvelope takes the oldest envelope out of the ring, keeping
// the order of the rest. Called with mu held when envs == limit > 0.
func (m *mailbox) removeOldestEnvelope() *envelope {
	for i := 0; i < m.n; i++ {
		idx := (m.head + i) % len(m.ring)
		if env, ok := m.ring[idx].(*envelope); ok {
			for j := i; j > 0; j-- { // shift the older control messages up by one
				m.ring[(m.head+j)%len(m.ring)] = m.ring[(m.head+j-1)%len(m.ring)]
			}
			m.ring[m.head] = nil
			m.head = (m.head + 1) % len(m.ring)
			m.n--
			m.envs--
			return env
		}
	}
	return nil
}

func (m *mailbox) grow() {
	next := make([]any, 2*len(m.ring))
	for i := 0; i < m.n; i++ {
		next[i] = m.ring[(m.head+i)%len(m.ring)]
	}
	m.ring, m.head = next, 0
}

func (m *mailbox) popUser() any {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == 0 {
		return nil
	}
	msg := m.ring[m.head]
	m.ring[m.head] = nil
	m.head = (m.head + 1) % len(m.ring)
	m.n--
	if _, ok := msg.(*envelope); ok {
		m.envs--
	}
	return msg
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

// PostSystemMessage queues a protoactor system message.
func (m *mailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.sys = append(m.sys, msg)
	m.mu.Unlock()
	m.sysCount.Add(1)
	m.schedule()
}

// RegisterHandlers is called by protoactor when the actor is spawned.
func (m *mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

// Start is called once the actor is ready.
func (m *mailbox) Start() {}

// UserMessageCount is the number of queued user messages.
func (m *mailbox) UserMessageCount() int { return int(m.userCount.Load()) }

// queuedEnvelopes is the number of messages waiting for the handler.
func (m *mailbox) queuedEnvelopes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.envs
}

// discard drops every queued envelope, counting each; used once the actor
// is stopped so that nothing queued is lost silently.
func (m *mailbox) discard() int {
	m.mu.Lock()
	var envs []*envelope
	for i := 0; i < m.n; i++ {
		idx := (m.head + i) % len(m.ring)
		if env, ok := m.ring[idx].(*envelope); ok {
			envs = append(envs, env)
		}
		m.ring[idx] = nil
	}
	m.userCount.Add(-int32(m.n))
	m.head, m.n, m.envs = 0, 0, 0
	m.mu.Unlock()
	for _, env := range envs {
		m.counters.dropped.Add(1)
		env.release()
	}
	return len(envs)
}

func (m *mailbox) schedule() {
	if m.status.CompareAndSwap(idle, running) {
		m.dispatcher.Schedule(m.process)
	}
}

func (m *mailbox) process() {
	for {
		m.run()
		m.status.Store(idle)
		if m.sysCount.Load() == 0 && (m.suspended.Load() || m.userCount.Load() == 0) {
			return
		}
		if !m.status.CompareAndSwap(idle, running) {
			return // someone else scheduled it
		}
	}
}

func (m *mailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			if m.onPanic != nil {
				r = m.onPanic(r, msg)
			}
			m.invoker.EscalateFailure(r, nil)
		}
	}()
	for i, t := 0, m.dispatcher.Throughput(); ; i++ {
		if i >= t {
			i = 0
			runtime.Gosched()
		}
		if m.sysCount.Load() > 0 { // no lock per message when there is none
			msg = m.popSys()
		} else {
			msg = nil
		}
		if msg != nil {
			m.sysCount.Add(-1)
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
			continue
		}
		if m.suspended.Load() {
			return
		}
		if msg = m.popUser(); msg == nil {
			return
		}
		m.userCount.Add(-1)
		if m.stopped.Load() {
			// protoactor ignores messages to a stopped actor: count them.
			if env, ok := msg.(*envelope); ok {
				m.counters.dropped.Add(1)
				env.release()
			}
			continue
		}
		m.invoker.InvokeUserMessage(msg)
	}
}
