package actors

import (
	"fmt"
	"math/bits"
	"time"

	"github.com/cnactor/cnactor/transport"
)

// Matching replies to exchanges. A finished exchange is remembered for
// DupWindow (at most DupCapacity of them), so that a duplicate or late
// reply is counted and consumed rather than routed to a handler as if it
// were new; intercept is the reader's entry, on every admitted message.
//
// Where an entry lives: a table of slots indexed by the key's seq (its
// ack for MatchAck) modulo the table's length. The Connector numbers
// requests with consecutive seqs, so consecutive replies are remembered
// in consecutive slots: the write lands on the cache line the previous
// one used or the next, where a hash map's random insert missed the cache
// three or four times (0.6-0.75 us of a 10 us round trip). A slot still
// holding another kept entry (caller-chosen seqs, MatchAck's random acks)
// makes the table grow, up to DupCapacity rounded up to a power of two,
// if that separates the two; otherwise the older entry moves to a map
// beside the table.
//
// How long an entry is kept: entries are numbered as they are
// remembered, and belong to one of two generations, consecutive ranges of
// numbers. New entries join the current one. Once it holds half of
// DupCapacity (rounded up), the previous generation is forgotten whole,
// expired or not, by raising the lowest number still kept, and the
// current one becomes the previous: the latest half of DupCapacity is
// always kept. Otherwise the previous generation goes once its latest
// expiry has passed, and the current one becomes the previous once its
// earliest has (and the previous is gone), so expired entries do not pile
// up. Nothing is deleted one key at a time: a Go map kept at a fixed size
// by an insert and a delete per reply fills with tombstones.

// recentSet is the slots, the spill map and the two generations; all of it
// is guarded by Requester.mu.
type recentSet struct {
	slots []recentSlot
	spill map[matchKey]recentSlot // kept entries displaced from their slot
	gens  [2]recentGen
	cur   int    // gens[cur] takes new entries
	next  uint64 // the number of the last entry remembered (the first is 1)
	floor uint64 // entries numbered below are forgotten
}

type recentGen struct {
	start uint64 // the number of its first entry
	n     int    // entries kept
	// refs counts its entries per id bucket: dropping the generation
	// takes them off Requester.idRefs in 256 steps, not one per entry.
	refs           [idBuckets]int32
	oldest, newest int64 // the earliest and the latest expiry of its entries
}

// recentSlot is one remembered exchange, or a free slot (no below floor).
type recentSlot struct {
	key matchKey
	recentEntry
	no uint64
}

// recentEntry remembers a finished exchange.
type recentEntry struct {
	from     sender
	expires  int64
	answered bool // a reply was delivered: another one is a duplicate, else it is late
}

const (
	recentMinSlots = 256
	// recentMaxSlots caps the table (56 bytes a slot) whatever DupCapacity
	// says; entries beyond it go to the spill map.
	recentMaxSlots = 1 << 20
)

func (s *recentSet) len() int { return s.gens[0].n + s.gens[1].n }

func (s *recentSet) kept(e *recentSlot) bool { return e.no != 0 && e.no >= s.floor }

// slotIndex is where k's slot is in a table of n slots, n a power of two.
func slotIndex(k matchKey, n int) int { return int(slotKey(k)) & (n - 1) }

func slotKey(k matchKey) uint32 {
	if k.ackOnly != 0 {
		return k.ack
	}
	return k.seq
}

// genOf is the generation entry number no belongs to.
func (s *recentSet) genOf(no uint64) *recentGen {
	if no >= s.gens[s.cur].start {
		return &s.gens[s.cur]
	}
	return &s.gens[s.cur^1]
}

// find returns k's entry, if it is kept and its window has not passed.
func (s *recentSet) find(k matchKey, now int64) (recentSlot, bool) {
	if len(s.slots) > 0 {
		if e := &s.slots[slotIndex(k, len(s.slots))]; e.key == k && s.kept(e) && e.expires > now {
			return *e, true
		}
	}
	if len(s.spill) > 0 {
		if e, ok := s.spill[k]; ok && s.kept(&e) && e.expires > now {
			return e, true
		}
	}
	return recentSlot{}, false
}

// update writes back an entry find returned.
func (s *recentSet) update(e recentSlot) {
	if len(s.slots) > 0 {
		if p := &s.slots[slotIndex(e.key, len(s.slots))]; p.no == e.no {
			*p = e
			return
		}
	}
	s.spill[e.key] = e
}

// rememberLocked keeps k in the recent set.
func (r *Requester) rememberLocked(k matchKey, from sender, answered bool, now int64) {
	r.pruneLocked(now)
	s := &r.recent
	if s.gens[s.cur].n >= r.cfg.DupCapacity/2+r.cfg.DupCapacity%2 { // half, rounded up, without overflow
		r.rotateLocked()
	}
	// An earlier exchange's entry with the same seq and ack is replaced:
	// each key is kept once.
	if len(s.spill) > 0 {
		if old, ok := s.spill[k]; ok {
			delete(s.spill, k)
			if s.kept(&old) {
				r.forgetLocked(&old)
			}
		}
	}
	s.next++
	e := recentSlot{key: k, recentEntry: recentEntry{from: from, expires: now + r.window, answered: answered}, no: s.next}
	r.placeLocked(&e)
	g := &s.gens[s.cur]
	// now is read before mu is taken, so expiries arrive nearly, not
	// strictly, in order.
	if g.n == 0 {
		g.oldest, g.newest = e.expires, e.expires
	}
	g.oldest, g.newest = min(g.oldest, e.expires), max(g.newest, e.expires)
	g.n++
	b := idBucket(k.id)
	g.refs[b]++
	r.idRefs[b].Add(1)
}

// placeLocked writes e into its slot.
func (r *Requester) placeLocked(e *recentSlot) {
	s := &r.recent
	if len(s.slots) == 0 {
		s.slots = make([]recentSlot, min(recentMinSlots, r.maxSlots()))
	}
	for {
		p := &s.slots[slotIndex(e.key, len(s.slots))]
		switch {
		case !s.kept(p):
		case p.key == e.key:
			r.forgetLocked(p)
		case r.growToSeparate(p.key, e.key):
			continue
		default:
			if s.spill == nil {
				s.spill = map[matchKey]recentSlot{}
			}
			s.spill[p.key] = *p
		}
		*p = *e
		return
	}
}

// maxSlots is the table's largest length: DupCapacity, at most
// recentMaxSlots, rounded up to a power of two.
func (r *Requester) maxSlots() int {
	c := max(1, min(r.cfg.DupCapacity, recentMaxSlots))
	return 1 << bits.Len(uint(c-1))
}

// growToSeparate doubles the table as often as it takes for a and b, now
// in one slot, to get a slot each, if that is possible within maxSlots.
func (r *Requester) growToSeparate(a, b matchKey) bool {
	d := slotKey(a) ^ slotKey(b)
	if d == 0 {
		return false
	}
	n := 2 << bits.TrailingZeros32(d)
	if n > r.maxSlots() {
		return false
	}
	s := &r.recent
	old := s.slots
	s.slots = make([]recentSlot, n)
	// Entries in distinct slots of the smaller table are in distinct slots
	// of the larger one.
	for i := range old {
		if p := &old[i]; s.kept(p) {
			s.slots[slotIndex(p.key, n)] = *p
		}
	}
	return true
}

// forgetLocked stops keeping one entry.
func (r *Requester) forgetLocked(e *recentSlot) {
	g := r.recent.genOf(e.no)
	g.n--
	b := idBucket(e.key.id)
	g.refs[b]--
	r.idRefs[b].Add(-1)
	e.no = 0
}

// pruneLocked forgets the generations whose window has passed.
func (r *Requester) pruneLocked(now int64) {
	s := &r.recent
	prev, cur := &s.gens[s.cur^1], &s.gens[s.cur]
	if prev.n > 0 && prev.newest <= now {
		r.dropPrevLocked()
	}
	// Once cur's oldest entry has expired, cur becomes the previous
	// generation, to be dropped when its newest has: expired entries do
	// not pile up under light traffic that never fills a generation.
	if prev.n == 0 && cur.n > 0 && cur.oldest <= now {
		s.newGen()
		if cur.newest <= now {
			r.dropPrevLocked()
		}
	}
}

// rotateLocked forgets the previous generation and starts a new current one.
func (r *Requester) rotateLocked() {
	r.dropPrevLocked()
	r.recent.newGen()
}

// newGen makes the current generation the previous one, which must hold
// nothing, and starts an empty current one.
func (s *recentSet) newGen() {
	s.cur ^= 1
	s.gens[s.cur] = recentGen{start: s.next + 1}
}

// dropPrevLocked forgets the previous generation. Once nothing is kept,
// the table and the spill map are let go: their memory follows the
// traffic of the last window, not the busiest one ever.
func (r *Requester) dropPrevLocked() {
	s := &r.recent
	g := &s.gens[s.cur^1]
	if g.n > 0 {
		for b, n := range g.refs {
			if n != 0 {
				r.idRefs[b].Add(-n)
			}
		}
		g.refs = [idBuckets]int32{}
	}
	g.n, g.oldest, g.newest = 0, 0, 0
	s.floor = s.gens[s.cur].start
	if s.gens[s.cur].n == 0 {
		s.slots, s.spill = nil, nil
		return
	}
	for k, e := range s.spill {
		if !s.kept(&e) {
			delete(s.spill, k)
		}
	}
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
	// ending is the exchange this reply ended and whose caller has not
	// been woken yet. If anything from its end on panics (a bug), nobody
	// else would wake that caller: the timer and Close pass over ended
	// exchanges. It is failed here, then the panic goes on to the reader.
	var ending *exchange
	defer func() {
		if ending == nil {
			return
		}
		p := recover()
		r.failHandover(ending, p)
		panic(p)
	}()
	ex, took := r.match(m, now, taken, &ending)
	if ex == nil {
		return took
	}
	r.c.replies.Add(1)
	rb := &replyBox{Reply: Reply{Received: *m, RTT: time.Duration(now - ex.sent.Load()), Attempts: int(ex.attempts.Load())}}
	r.c.rtt.observe(rb.RTT)
	rb.Data = nil // m's is the reader's buffer
	if len(m.Data) > 0 {
		// In the same allocation when it fits: most replies are small.
		rb.Data = append(rb.small[:0], m.Data...)
	}
	ex.reply = &rb.Reply
	taken() // before the caller wakes and may read the reader's counters
	ending = nil
	ex.ch <- evDone
	return true
}

// failHandover ends, with an error, an exchange whose reply could not be
// handed over because matching it panicked.
func (r *Requester) failHandover(ex *exchange, p any) {
	ex.reply = nil
	ex.err = fmt.Errorf("request %s seq %d ack %d: matching its reply failed: %v", ex.key.id, ex.key.seq, ex.key.ack-1, p)
	r.c.failed.Add(1)
	ex.ch <- evDone
}

// match ends the pending exchange m answers and returns it, or, if m is a
// late or duplicate reply to a remembered one, counts and takes it (took).
// The lock is released by a defer: a panic in here (a bug) must not leave
// it held for the reader, which recovers and goes on.
func (r *Requester) match(m *transport.Received, now int64, taken func(), ending **exchange) (ex *exchange, took bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := matchKey{id: m.ID, seq: m.Seq, ack: m.Ack}
	ex = r.pending[k]
	if (ex == nil || !ex.from.accepts(m.From)) && m.From == 0 && r.ackOnly > 0 {
		k = matchKey{id: m.ID, ack: m.Ack, ackOnly: 1}
		ex = r.pending[k]
	}
	if ex != nil && ex.from.accepts(m.From) {
		*ending = ex // removeLocked marks it done first thing
		r.removeLocked(ex, true, true, now)
		return ex, true
	}
	r.pruneLocked(now)
	k = matchKey{id: m.ID, seq: m.Seq, ack: m.Ack}
	e, ok := r.recent.find(k, now)
	if (!ok || !e.from.accepts(m.From)) && m.From == 0 {
		k = matchKey{id: m.ID, ack: m.Ack, ackOnly: 1}
		e, ok = r.recent.find(k, now)
	}
	r.active.Store(int64(len(r.pending) + r.recent.len()))
	if !ok || !e.from.accepts(m.From) {
		return nil, false
	}
	taken()
	if e.answered {
		r.c.duplicates.Add(1)
	} else {
		r.c.late.Add(1)
		e.answered = true
		r.recent.update(e)
	}
	return nil, true
}
