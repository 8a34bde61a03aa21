package actors

import (
	"time"

	"github.com/cnactor/cnactor/transport"
)

// Matching replies to exchanges. A finished exchange is remembered for
// DupWindow (at most DupCapacity of them), so that a duplicate or late
// reply is counted and consumed rather than routed to a handler as if it
// were new; intercept is the reader's entry, on every admitted message.
//
// The memory is two generations of a map. New keys go into the current
// one. Once it holds half of DupCapacity (rounded up), the previous
// generation is forgotten whole, expired or not, and the current one
// becomes the previous: the latest half of DupCapacity is always kept.
// Otherwise a generation goes once its latest expiry has passed, and the
// current one becomes the previous once its earliest has (and the previous
// is gone), so expired entries do not pile up. Nothing is deleted one key
// at a time: a Go map kept at a fixed size by an insert and a delete per
// reply fills with tombstones, and at 65,536 entries its probing took 10%
// of a round trip.

// recentSet is the two generations; all of it is guarded by Requester.mu.
type recentSet struct {
	gens [2]recentGen
	cur  int // gens[cur] takes new keys
}

type recentGen struct {
	m map[matchKey]recentEntry
	// refs counts the entries per id bucket: dropping the generation
	// takes them off Requester.idRefs in 256 steps, not one per entry.
	refs           [idBuckets]int32
	oldest, newest int64 // the earliest and the latest expiry of its entries
}

// recentEntry remembers a finished exchange.
type recentEntry struct {
	from     sender
	expires  int64
	answered bool // a reply was delivered: another one is a duplicate, else it is late
}

func (s *recentSet) len() int { return len(s.gens[0].m) + len(s.gens[1].m) }

// find returns k's entry, if it is remembered and its window has not passed,
// and the generation holding it.
func (s *recentSet) find(k matchKey, now int64) (recentEntry, *recentGen, bool) {
	for _, i := range [2]int{s.cur, s.cur ^ 1} {
		if e, ok := s.gens[i].m[k]; ok && e.expires > now {
			return e, &s.gens[i], true
		}
	}
	return recentEntry{}, nil, false
}

// rememberLocked keeps k in the recent set.
func (r *Requester) rememberLocked(k matchKey, from sender, answered bool, now int64) {
	r.pruneLocked(now)
	g := &r.recent.gens[r.recent.cur]
	if len(g.m) >= r.cfg.DupCapacity/2+r.cfg.DupCapacity%2 { // half, rounded up, without overflow
		r.rotateLocked()
		g = &r.recent.gens[r.recent.cur]
	}
	if g.m == nil {
		g.m = map[matchKey]recentEntry{}
	}
	e := recentEntry{from: from, expires: now + r.window, answered: answered}
	// now is read before mu is taken, so expiries arrive nearly, not
	// strictly, in order.
	if len(g.m) == 0 || e.expires < g.oldest {
		g.oldest = e.expires
	}
	g.newest = max(g.newest, e.expires)
	// One map operation, not a lookup and an insert: the generation is
	// too big for the cache, and each costs a miss. A key already there
	// (an earlier exchange's that used the same seq and ack) leaves the
	// length as it was.
	n := len(g.m)
	g.m[k] = e
	if len(g.m) != n {
		b := idBucket(k.id)
		g.refs[b]++
		r.idRefs[b].Add(1)
	}
}

// pruneLocked forgets the generations whose window has passed.
func (r *Requester) pruneLocked(now int64) {
	prev, cur := &r.recent.gens[r.recent.cur^1], &r.recent.gens[r.recent.cur]
	if len(prev.m) > 0 && prev.newest <= now {
		r.dropLocked(prev)
	}
	// Once cur's oldest entry has expired, cur becomes the previous
	// generation, to be dropped when its newest has: expired entries do
	// not pile up under light traffic that never fills a generation.
	if len(prev.m) == 0 && len(cur.m) > 0 && cur.oldest <= now {
		r.recent.cur ^= 1
		if cur.newest <= now {
			r.dropLocked(cur)
		}
	}
}

// rotateLocked forgets the previous generation and starts a new current one.
func (r *Requester) rotateLocked() {
	r.dropLocked(&r.recent.gens[r.recent.cur^1])
	r.recent.cur ^= 1
}

func (r *Requester) dropLocked(g *recentGen) {
	for b, n := range g.refs {
		if n != 0 {
			r.idRefs[b].Add(-n)
		}
	}
	g.refs = [idBuckets]int32{}
	g.oldest, g.newest = 0, 0
	clear(g.m)
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
	e, g, ok := r.recent.find(k, now)
	if (!ok || !e.from.accepts(m.From)) && m.From == 0 {
		k = matchKey{id: m.ID, ack: m.Ack, ackOnly: 1}
		e, g, ok = r.recent.find(k, now)
	}
	r.active.Store(int64(len(r.pending) + r.recent.len()))
	if !ok || !e.from.accepts(m.From) {
		return false
	}
	taken()
	if e.answered {
		r.c.duplicates.Add(1)
	} else {
		r.c.late.Add(1)
		e.answered = true
		g.m[k] = e
	}
	return true
}
