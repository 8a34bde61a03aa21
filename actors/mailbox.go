package actors

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

// Overflow is what a handler mailbox does with one more message when it is
// full.
type Overflow uint8

const (
	// Backpressure (the default) makes the socket-reader wait for room: it
	// stops taking datagrams from the socket, so the kernel's receive queue
	// absorbs the burst and a unicast sender waits instead of losing
	// anything. A wait longer than the callback's stall timeout puts the
	// callback into shedding: its messages are dropped (counted, with a
	// loss notice) while every other callback flows, until its mailbox has
	// drained to half, when it rejoins flow control.
	Backpressure Overflow = iota
	// DropNewest refuses the message that does not fit; the reader never
	// waits.
	DropNewest
	// DropOldest discards the oldest queued message to make room; the
	// reader never waits.
	DropOldest
)

func (o Overflow) String() string {
	switch o {
	case DropNewest:
		return "drop-newest"
	case DropOldest:
		return "drop-oldest"
	}
	return "backpressure"
}

// DefaultMailboxSize is a handler mailbox's capacity unless configured.
const DefaultMailboxSize = 1024

// DefaultStallTimeout bounds how long one callback's full mailbox may hold
// the socket-reader (and with it every other callback) before the callback
// sheds its own messages instead.
const DefaultStallTimeout = 100 * time.Millisecond

// maxRun is how many messages a handler is given per invocation: one
// protoactor invocation, one lock to take them and one to release them per
// run rather than per message.
const maxRun = 256

// bigBuf and bigBudget bound the payload memory a mailbox keeps between
// messages: slots keep buffers up to bigBuf for reuse, and larger ones while
// their total stays under bigBudget (a burst of 16 KiB messages must not
// pin 16 MiB per callback for ever, nor allocate per message).
const (
	bigBuf    = 2 << 10
	bigBudget = 1 << 20
)

type slotKind uint8

const (
	slotFree    slotKind = iota
	slotMessage          // recv[i] is a message (payload in bufs[i])
	slotLoss             // loss[i] messages were lost here
	slotControl          // ctl[i] is a control message (a drain marker)
)

// mailbox is the protoactor Mailbox of a handler actor: a ring of slots
// that the socket-reader fills and the handler empties a run at a time.
//
// The slots are parallel arrays so that a run of messages is a
// []transport.Received the handler reads in place: the reader copies each
// payload once, into the slot's own buffer, and nothing is allocated or
// pooled per message. The ring is [tail, head) taken by the handler, then
// [head, head+n) queued, then free. At most limit message slots are queued
// or taken; loss and control slots are not limited (they merge or are
// rare), so control always gets through.
//
// Scheduling mirrors protoactor's default mailbox: system messages first,
// suspension on failure, a yield every so often.
type mailbox struct {
	mu        sync.Mutex
	kind      []slotKind
	recv      []transport.Received
	bufs      [][]byte
	loss      []lossNotice
	ctl       []any
	tail      int // first slot taken by the handler
	taken     int // slots in [tail, head): being handled, or dead
	head      int // first queued slot
	n         int // queued slots
	envs      int // message slots queued or taken
	limit     int
	overflow  Overflow
	bigBytes  int // capacity of kept buffers larger than bigBuf
	leftFirst int // a run interrupted by a panic, handed out again first
	leftK     int
	left      atomic.Bool // leftK > 0, read without the lock
	inRun     bool        // a run is taken (m.run) and not yet released
	// waiting: the reader waits on space for a slot to free.
	waiting bool
	space   chan struct{}
	// notifyLoss makes the mailbox tell the handler, in order, how many
	// messages it dropped (tellDropped).
	notifyLoss bool

	userCount atomic.Int32 // queued slots, for protoactor
	sysCount  atomic.Int32
	status    atomic.Int32 // idle or running
	suspended atomic.Bool
	stopped   atomic.Bool // the actor has stopped: what is left is dropped

	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
	processFn  func() // m.process, made once
	sys        []any
	counters   *counters
	run        delivery // the run being handled, reused
	// onPanic sees the message that was being handled when the handler
	// panicked and returns the reason escalated to the supervisor.
	onPanic func(value, msg any) any
}

const (
	idle int32 = iota
	running
)

// delivery is the one user message a handler actor gets for a run of
// slots: msgs for a run of messages, or one loss or control slot.
type delivery struct {
	first, k int
	kind     slotKind
	msgs     []transport.Received
	loss     lossNotice
	ctl      any
	// done is set by the handler actor as it goes: on a panic, msgs[:done]
	// are finished, msgs[done] failed and the rest are handed out again.
	done int
	// consumed is how many slots the run used up (k unless the handler
	// stopped early after a failure); the rest are handed out again, after
	// the supervisor's decision.
	consumed int
}

// lossNotice tells a handlers.LossObserver that n messages were lost here.
type lossNotice struct {
	n      uint64
	source handlers.LossSource
}

func newMailbox(limit int, overflow Overflow, c *counters) *mailbox {
	if limit <= 0 {
		limit = DefaultMailboxSize
	}
	m := &mailbox{limit: limit, overflow: overflow, counters: c, space: make(chan struct{}, 1)}
	m.resize(min(limit, 64) + 8)
	return m
}

// resize moves the ring into arrays of size slots, keeping its order;
// called with mu held (or before the mailbox is shared). Runs being handled
// keep reading the old arrays, which nothing writes any more.
func (m *mailbox) resize(size int) {
	kind, recv, bufs := make([]slotKind, size), make([]transport.Received, size), make([][]byte, size)
	loss, ctl := make([]lossNotice, size), make([]any, size)
	old := len(m.kind)
	for i := 0; i < m.taken+m.n; i++ {
		j := (m.tail + i) % old
		kind[i], recv[i], bufs[i], loss[i], ctl[i] = m.kind[j], m.recv[j], m.bufs[j], m.loss[j], m.ctl[j]
	}
	// Keep the free slots' buffers too: they are what makes reuse work.
	for i, j := m.taken+m.n, 0; j < old-m.taken-m.n && i < size; i, j = i+1, j+1 {
		bufs[i] = m.bufs[(m.tail+m.taken+m.n+j)%old]
	}
	if m.leftK > 0 {
		m.leftFirst = (m.leftFirst - m.tail + old) % old
	}
	if m.inRun { // the handler's run moves with its slots
		m.run.first = (m.run.first - m.tail + old) % old
	}
	m.kind, m.recv, m.bufs, m.loss, m.ctl = kind, recv, bufs, loss, ctl
	m.head = m.taken
	m.tail = 0
}

// reserve returns the index of the next free slot, growing the ring when
// it is full; called with mu held.
func (m *mailbox) reserve() int {
	if m.taken+m.n == len(m.kind) {
		m.resize(2 * len(m.kind))
	}
	return m.wrap(m.head + m.n)
}

// wrap maps i, less than twice the ring's size, into the ring: what % does
// without a division, on the per-message path.
func (m *mailbox) wrap(i int) int {
	if i >= len(m.kind) {
		i -= len(m.kind)
	}
	return i
}

// Outcome of put.
type putResult uint8

const (
	putQueued  putResult = iota
	putDropped           // the overflow policy or a stopped actor dropped it (counted)
	putFull              // Backpressure: no room; the caller waits or sheds
)

// put queues a copy of r, applying the overflow policy. It never blocks.
func (m *mailbox) put(r *transport.Received) putResult {
	m.mu.Lock()
	res := m.putLocked(r)
	m.mu.Unlock()
	if res == putQueued {
		m.userCount.Add(1)
	}
	return res
}

// putPicked puts msgs[i] for each i in picked, in order, under one lock,
// and stops at the first that finds the mailbox full under Backpressure.
// It returns how many it took (queued, or dropped by the policy).
func (m *mailbox) putPicked(msgs []transport.Received, picked []int32) int {
	queued := int32(0)
	m.mu.Lock()
	n := 0
	for ; n < len(picked); n++ {
		res := m.putLocked(&msgs[picked[n]])
		if res == putFull {
			break
		}
		if res == putQueued {
			queued++
		}
	}
	m.mu.Unlock()
	m.userCount.Add(queued)
	return n
}

// putLocked is put with mu held; the caller counts what it queued in
// userCount.
func (m *mailbox) putLocked(r *transport.Received) putResult {
	if m.stopped.Load() {
		m.counters.dropped.Add(1)
		return putDropped
	}
	if m.envs >= m.limit {
		switch m.overflow {
		case Backpressure:
			return putFull
		case DropNewest:
			m.tellDropped()
			m.counters.dropped.Add(1)
			return putDropped
		}
		if !m.dropOldest() {
			// Every message is being handled: nothing older can go.
			m.tellDropped()
			m.counters.dropped.Add(1)
			return putDropped
		}
	}
	i := m.reserve()
	buf := append(m.bufs[i][:0], r.Data...)
	if old := cap(m.bufs[i]); cap(buf) != old { // grown: account for big buffers kept
		if old > bigBuf {
			m.bigBytes -= old
		}
		if cap(buf) > bigBuf {
			m.bigBytes += cap(buf)
		}
	}
	m.kind[i], m.bufs[i] = slotMessage, buf
	m.recv[i] = *r
	m.recv[i].Data = buf
	m.n++
	m.envs++
	return putQueued
}

// shed drops r for a callback that is shedding: counted, and told to a
// loss observer.
func (m *mailbox) shed() {
	m.mu.Lock()
	m.tellDropped()
	m.mu.Unlock()
	m.counters.dropped.Add(1)
	m.counters.shed.Add(1)
}

// drained reports whether the queue is down to half its capacity, when a
// shedding callback rejoins flow control.
func (m *mailbox) drained() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.envs <= m.limit/2
}

// awaitSpace returns a channel that is signalled when a slot is freed, or
// nil if there is room already (or the actor has stopped, so that put
// will not block).
func (m *mailbox) awaitSpace() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.envs < m.limit || m.stopped.Load() {
		return nil
	}
	m.waiting = true
	return m.space
}

// signalSpace wakes a waiting reader; called with mu held.
func (m *mailbox) signalSpace() {
	if m.waiting {
		m.waiting = false
		select {
		case m.space <- struct{}{}:
		default:
		}
	}
}

// dropOldest drops the oldest queued message to make room for a new one
// (DropOldest), keeping the order of the rest; a loss observer hears of it
// before the survivors. It returns false if no message is queued. Called
// with mu held.
func (m *mailbox) dropOldest() bool {
	size := len(m.kind)
	at := -1
	for i := 0; i < m.n; i++ {
		if m.kind[(m.head+i)%size] == slotMessage {
			at = i
			break
		}
	}
	if at < 0 {
		return false
	}
	j := (m.head + at) % size
	m.envs--
	m.counters.dropped.Add(1)
	// With a loss observer, the dropped message becomes a loss notice,
	// merged with one just before it: at most one loss slot leads the
	// queue, however many are dropped.
	merge := false
	if at > 0 {
		p := (j - 1 + size) % size
		if m.kind[p] == slotLoss && m.loss[p].source == handlers.LossMailbox {
			m.loss[p].n++
			merge = true
		}
	}
	if !m.notifyLoss || merge {
		// Shift the older loss and control slots up by one over the
		// dropped message; the slot at head dies (and is reclaimed with
		// the taken ones).
		for k := at; k > 0; k-- {
			d, s := (m.head+k)%size, (m.head+k-1)%size
			m.kind[d], m.recv[d], m.loss[d], m.ctl[d] = m.kind[s], m.recv[s], m.loss[s], m.ctl[s]
			m.bufs[d], m.bufs[s] = m.bufs[s], m.bufs[d]
		}
		m.kill(m.head)
		return true
	}
	m.kind[j], m.recv[j], m.loss[j] = slotLoss, transport.Received{}, lossNotice{n: 1, source: handlers.LossMailbox}
	return true
}

// kill turns the queued slot at head into a dead one in the taken region;
// called with mu held.
func (m *mailbox) kill(i int) {
	m.kind[i], m.recv[i], m.loss[i], m.ctl[i] = slotFree, transport.Received{}, lossNotice{}, nil
	m.head = (m.head + 1) % len(m.kind)
	m.n--
	m.taken++
	m.userCount.Add(-1)
	m.reclaim()
}

// pushLoss queues a loss notice, merged into a loss notice of the same
// source at the end of the queue; called with mu held.
func (m *mailbox) pushLoss(n uint64, source handlers.LossSource) {
	if m.n > 0 {
		last := (m.head + m.n - 1) % len(m.kind)
		if m.kind[last] == slotLoss && m.loss[last].source == source {
			m.loss[last].n += n
			return
		}
	}
	i := m.reserve()
	m.kind[i], m.loss[i] = slotLoss, lossNotice{n: n, source: source}
	m.n++
	m.userCount.Add(1)
}

// tellDropped tells a loss observer of one message dropped here: a loss
// notice behind what is queued, merged with one already last. Queued at
// once, it is heard after the messages kept before it and before those
// kept after, also when nothing follows; consecutive drops (the mailbox
// stays full meanwhile) take one slot. Called with mu held.
func (m *mailbox) tellDropped() {
	if m.notifyLoss {
		m.pushLoss(1, handlers.LossMailbox)
	}
}

// notify queues a loss notice from the socket (datagrams the kernel
// dropped) for a loss observer, in order with the messages.
func (m *mailbox) notify(n uint64, source handlers.LossSource) {
	m.mu.Lock()
	m.pushLoss(n, source)
	m.mu.Unlock()
}
