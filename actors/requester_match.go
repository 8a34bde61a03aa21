package actors

import (
	"time"

	"github.com/cnactor/cnactor/transport"
)

// Matching replies to exchanges. A finished exchange is remembered for
// DupWindow (at most DupCapacity of them), so that a duplicate or late
// reply is counted and consumed rather than routed to a handler as if it
// were new; intercept is the reader's entry, on every admitted message.

// rememberLocked keeps k in the recent set.
func (r *Requester) rememberLocked(k matchKey, from sender, answered bool, now int64) {
	r.pruneLocked(now)
	if len(r.recent) >= r.cfg.DupCapacity {
		r.evictLocked(now, true)
	}
	r.gen++
	if _, again := r.recent[k]; !again {
		r.idRefs[idBucket(k.id)].Add(1)
	}
	r.recent[k] = recentEntry{from: from, expires: now + r.window, gen: r.gen, answered: answered}
	r.recentQ = append(r.recentQ, recentItem{key: k, gen: r.gen})
}

// pruneLocked forgets the finished exchanges whose window has passed.
func (r *Requester) pruneLocked(now int64) {
	for r.recentHd < len(r.recentQ) && r.evictLocked(now, false) {
	}
}

// evictLocked drops the oldest remembered exchange if it expired (or if
// force) and reports whether the queue head was consumed.
func (r *Requester) evictLocked(now int64, force bool) bool {
	for r.recentHd < len(r.recentQ) {
		it := r.recentQ[r.recentHd]
		e, ok := r.recent[it.key]
		if ok && e.gen == it.gen && !force && e.expires > now {
			return false
		}
		r.recentQ[r.recentHd] = recentItem{}
		r.recentHd++
		if ok && e.gen == it.gen {
			delete(r.recent, it.key)
			r.idRefs[idBucket(it.key.id)].Add(-1)
			break
		}
		// A stale item (its key was remembered again later): keep going.
	}
	if r.recentHd > 1024 && r.recentHd*2 >= len(r.recentQ) {
		n := copy(r.recentQ, r.recentQ[r.recentHd:])
		clear(r.recentQ[n:])
		r.recentQ = r.recentQ[:n]
		r.recentHd = 0
	}
	return true
}

// idBuckets spreads callback ids over counters of pending and remembered
// exchanges, so that intercept can pass other ids by without the lock.
const idBuckets = 256

func idBucket(id transport.CbID) uint32 { return (id.Idx*0x9e3779b1 ^ id.Val) % idBuckets }

// intercept takes replies to pending exchanges, and late and duplicate
// replies to finished ones, out of the reader's stream; it returns whether
// it took m. It never blocks. Having taken m, it calls taken before
// anything that lets a caller observe it (waking a waiting request): the
// reader's Intercepted counter must never lag behind what a caller has
// seen.
func (r *Requester) intercept(m *transport.Received, taken func()) bool {
	// Lock-free for the traffic of ids with no exchange pending or
	// remembered, which is most of it.
	if r.active.Load() == 0 || r.idRefs[idBucket(m.ID)].Load() == 0 {
		return false
	}
	now := r.now()
	r.mu.Lock()
	k := matchKey{id: m.ID, seq: m.Seq, ack: m.Ack}
	ex := r.pending[k]
	if (ex == nil || !ex.from.accepts(m.From)) && m.From == 0 && r.ackOnly > 0 {
		k = matchKey{id: m.ID, ack: m.Ack, ackOnly: 1}
		ex = r.pending[k]
	}
	if ex != nil && ex.from.accepts(m.From) {
		r.removeLocked(ex, true, true, now)
		r.mu.Unlock()
		r.c.replies.Add(1)
		ex.reply = Reply{Received: *m, RTT: time.Duration(now - ex.sent.Load()), Attempts: int(ex.attempts.Load())}
		r.c.rtt.observe(ex.reply.RTT)
		ex.reply.Data = append([]byte(nil), m.Data...)
		taken() // before the caller wakes and may read the reader's counters
		ex.ch <- evDone
		return true
	}
	defer r.mu.Unlock()
	r.pruneLocked(now)
	k = matchKey{id: m.ID, seq: m.Seq, ack: m.Ack}
	e, ok := r.recent[k]
	if (!ok || !e.from.accepts(m.From)) && m.From == 0 {
		k = matchKey{id: m.ID, ack: m.Ack, ackOnly: 1}
		e, ok = r.recent[k]
	}
	r.active.Store(int64(len(r.pending) + len(r.recent)))
	if !ok || !e.from.accepts(m.From) {
		return false
	}
	taken()
	if e.answered {
		r.c.duplicates.Add(1)
	} else {
		r.c.late.Add(1)
		e.answered = true
		r.recent[k] = e
	}
	return true
}
