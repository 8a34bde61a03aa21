package remote

import (
	"sync"

	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
)

// item is one message the node's forwarder received, shared read-only by
// the queues of every subscription of its id.
type item struct {
	from, group uint32
	creds       transport.Credentials
	seq, ack    uint32
	flags       uint16
	data        []byte
	process     *wire.Process
	stamp       int64
}

// entry is an item queued for one subscription, with its number there and
// the losses reported just before it.
type entry struct {
	it                               *item
	seq                              uint64
	dropped, socketLost, mailboxLost uint64
}

// subQueue is one subscription's bounded queue on the node. The forwarder
// offers to it from the connector's handler actor; the outlet actor takes
// from it. Every offered message is numbered; a full queue drops (the newest
// or the oldest) and counts it, and the count travels with the next message
// that is sent, so that the subscriber can tell drops from transport loss:
// offered = sent + dropped + queued at all times.
type subQueue struct {
	mu         sync.Mutex
	ring       []entry
	head, n    int
	limit      int
	dropOldest bool
	closed     bool

	offered, sent, dropped  uint64
	socketLost, mailboxLost uint64
	// losses not yet attached to a queued entry
	pendDropped, pendSocket, pendMailbox uint64
}

func newSubQueue(limit int, dropOldest bool) *subQueue {
	limit = max(limit, 1)
	return &subQueue{ring: make([]entry, min(limit, 64)), limit: limit, dropOldest: dropOldest}
}

// offer queues it; it reports whether something was queued.
func (q *subQueue) offer(it *item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.offered++
	e := entry{it: it, seq: q.offered}
	if q.n >= q.limit {
		q.dropped++
		if !q.dropOldest {
			q.pendDropped++
			return false
		}
		old := q.ring[q.head]
		q.ring[q.head] = entry{}
		q.head = (q.head + 1) % len(q.ring)
		q.n--
		// The oldest goes; what was reported with it moves to its successor.
		next := &e
		if q.n > 0 {
			next = &q.ring[q.head]
		}
		next.dropped += old.dropped + 1
		next.socketLost += old.socketLost
		next.mailboxLost += old.mailboxLost
	}
	e.dropped += q.pendDropped
	e.socketLost += q.pendSocket
	e.mailboxLost += q.pendMailbox
	q.pendDropped, q.pendSocket, q.pendMailbox = 0, 0, 0
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)%len(q.ring)] = e
	q.n++
	return true
}

func (q *subQueue) grow() {
	next := make([]entry, min(2*len(q.ring), q.limit))
	for i := 0; i < q.n; i++ {
		next[i] = q.ring[(q.head+i)%len(q.ring)]
	}
	q.ring, q.head = next, 0
}

// lost records n messages lost upstream (the node's socket or its
// callback's mailbox); they are reported before the next queued message.
func (q *subQueue) lost(n uint64, mailbox bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if mailbox {
		q.mailboxLost += n
		q.pendMailbox += n
	} else {
		q.socketLost += n
		q.pendSocket += n
	}
}

// take moves up to maxItems entries, and about maxBytes of payload (at
// least one entry), into buf and counts them as sent.
func (q *subQueue) take(buf []entry, maxItems, maxBytes int) []entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	k, size := 0, 0
	for k < maxItems && q.n > 0 && (k == 0 || size+len(q.ring[q.head].it.data) <= maxBytes) {
		e := q.ring[q.head]
		size += len(e.it.data)
		buf = append(buf, e)
		q.ring[q.head] = entry{}
		q.head = (q.head + 1) % len(q.ring)
		q.n--
		k++
	}
	q.sent += uint64(k)
	return buf
}

// close ends the queue: what is still queued is counted as dropped, and
// nothing is accepted any more. It returns the final counters.
func (q *subQueue) close() *wire.Counters {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		q.dropped += uint64(q.n)
		for i := 0; i < q.n; i++ {
			q.ring[(q.head+i)%len(q.ring)] = entry{}
		}
		q.n = 0
	}
	return q.countersLocked()
}

func (q *subQueue) counters() *wire.Counters {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.countersLocked()
}

func (q *subQueue) countersLocked() *wire.Counters {
	return &wire.Counters{
		Offered: q.offered, Sent: q.sent, Dropped: q.dropped, Queued: uint64(q.n),
		SocketLost: q.socketLost, MailboxLost: q.mailboxLost,
	}
}
