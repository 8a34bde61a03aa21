package actors

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// A wider model of the recent set (from a review): seqs and acks over
// wide ranges (the table grows, and spills), the answered flag updated,
// keys remembered again, and the per-generation counts checked at every
// step besides the invariants TestRequesterRecentSetModel checks.
func TestRequesterRecentSetWideModel(t *testing.T) {
	seeds := uint64(6)
	if testutil.RaceEnabled {
		seeds = 2
	}
	for _, capacity := range []int{1, 5, 256, 600} {
		for seed := range seeds {
			rng := rand.New(rand.NewPCG(seed, uint64(capacity)*7))
			r := &Requester{cfg: RequesterConfig{DupCapacity: capacity}, window: 100}
			type remembered struct {
				expires  int64
				order    int
				answered bool
			}
			model := map[matchKey]remembered{}
			order, now, latest, seq := 0, int64(1000), int64(0), uint32(0)
			var keys []matchKey
			for step := range 1500 {
				now += int64(rng.IntN(3)) - 1
				if rng.IntN(200) == 0 {
					now += 150
				}
				latest = max(latest, now)
				var k matchKey
				id := transport.CbID{Idx: uint32(rng.IntN(3)), Val: uint32(rng.IntN(2))}
				switch rng.IntN(5) {
				case 0:
					seq++
					k = matchKey{id: id, seq: seq, ack: 5}
				case 1:
					k = matchKey{id: id, seq: rng.Uint32() & (1<<uint(rng.IntN(20)) - 1) << uint(rng.IntN(12)), ack: 1}
				case 2:
					k = matchKey{id: id, ack: rng.Uint32() & 0xfff, ackOnly: 1}
				case 3:
					if len(keys) > 0 {
						k = keys[rng.IntN(len(keys))]
					} else {
						k = matchKey{id: id, seq: 1}
					}
				default:
					k = matchKey{id: id, seq: uint32(rng.IntN(8)) * 256, ack: uint32(rng.IntN(2))}
				}
				switch op := rng.IntN(6); {
				case op < 4:
					r.rememberLocked(k, sender{port: 1}, false, now)
					order++
					model[k] = remembered{now + r.window, order, false}
					keys = append(keys, k)
				case op == 4:
					r.pruneLocked(now)
					if e, ok := r.recent.find(k, now); ok {
						e.answered = true
						r.recent.update(e)
						if m, ok := model[k]; ok {
							m.answered = true
							model[k] = m
						}
					}
				default:
					r.pruneLocked(now)
				}
				checkRecentSet(t, r, capacity, func() string { return fmt.Sprintf("capacity %d seed %d step %d", capacity, seed, step) })
				if len(r.recent.spill) > 2*capacity+2 {
					t.Fatalf("capacity %d: spill holds %d", capacity, len(r.recent.spill))
				}
				for kk, m := range model {
					if m.expires < now-300 {
						delete(model, kk)
						continue
					}
					e, ok := r.recent.find(kk, now)
					if ok && (e.expires != m.expires || e.answered != m.answered) {
						t.Fatalf("cap %d seed %d step %d: found %+v, want %+v", capacity, seed, step, e, m)
					}
					if !ok && m.expires > latest && order-m.order < (capacity+1)/2 {
						t.Fatalf("cap %d seed %d step %d: key remembered %d ago forgotten", capacity, seed, step, order-m.order)
					}
				}
			}
		}
	}
}

// keptEntries counts the entries the recent set keeps, by key, in its
// slots and its spill map.
func keptEntries(r *Requester) map[matchKey]int {
	kept := map[matchKey]int{}
	s := &r.recent
	for i := range s.slots {
		if e := &s.slots[i]; s.kept(e) {
			kept[e.key]++
		}
	}
	for k, e := range s.spill {
		if s.kept(&e) {
			kept[k]++
		}
	}
	return kept
}

// checkRecentSet checks what holds of the recent set after every step:
// each key kept once; the generations' counts, per bucket too, and the
// per-bucket counts intercept's fast path reads, equal what is kept; at
// most DupCapacity (rounded up to even) kept; the table within its bound.
func checkRecentSet(t *testing.T, r *Requester, capacity int, where func() string) {
	t.Helper()
	s := &r.recent
	kept := keptEntries(r)
	var held [idBuckets]int32
	for k, n := range kept {
		if n > 1 {
			t.Fatalf("%s: %v kept %d times", where(), k, n)
		}
		held[idBucket(k.id)]++
	}
	if len(kept) != s.len() {
		t.Fatalf("%s: %d kept, the generations count %d", where(), len(kept), s.len())
	}
	var perGen [2]int
	var perGenRefs [2][idBuckets]int32
	count := func(e *recentSlot) {
		if !s.kept(e) {
			return
		}
		gi := s.cur ^ 1
		if e.no >= s.gens[s.cur].start {
			gi = s.cur
		}
		perGen[gi]++
		perGenRefs[gi][idBucket(e.key.id)]++
	}
	for i := range s.slots {
		count(&s.slots[i])
	}
	for _, e := range s.spill {
		count(&e)
	}
	for gi := range 2 {
		if perGen[gi] != s.gens[gi].n || perGenRefs[gi] != s.gens[gi].refs {
			t.Fatalf("%s: generation %d counts %d, holds %d", where(), gi, s.gens[gi].n, perGen[gi])
		}
	}
	for b := range held {
		if got := r.idRefs[b].Load(); got != held[b] {
			t.Fatalf("%s: bucket %d counts %d, holds %d", where(), b, got, held[b])
		}
	}
	if n := s.len(); n > capacity+capacity%2 {
		t.Fatalf("%s: %d remembered", where(), n)
	}
	if len(s.slots) > r.maxSlots() {
		t.Fatalf("%s: a table of %d slots, more than %d", where(), len(s.slots), r.maxSlots())
	}
}
