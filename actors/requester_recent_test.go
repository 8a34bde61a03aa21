package actors

import (
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
				kept := keptEntries(r)
				var held [idBuckets]int32
				for kk, n := range kept {
					if n > 1 {
						t.Fatalf("cap %d seed %d step %d: %v kept %d times", capacity, seed, step, kk, n)
					}
					held[idBucket(kk.id)]++
				}
				if len(kept) != r.recent.len() {
					t.Fatalf("cap %d seed %d step %d: %d kept, gens count %d", capacity, seed, step, len(kept), r.recent.len())
				}
				// per-generation counts
				s := &r.recent
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
						t.Fatalf("cap %d seed %d step %d: gen %d counts %d, holds %d", capacity, seed, step, gi, s.gens[gi].n, perGen[gi])
					}
				}
				for b := range held {
					if got := r.idRefs[b].Load(); got != held[b] {
						t.Fatalf("cap %d seed %d step %d: bucket %d counts %d, holds %d", capacity, seed, step, b, got, held[b])
					}
				}
				if n := r.recent.len(); n > capacity+capacity%2 {
					t.Fatalf("cap %d seed %d step %d: %d remembered", capacity, seed, step, n)
				}
				if len(s.slots) > r.maxSlots() {
					t.Fatalf("table %d > max %d", len(s.slots), r.maxSlots())
				}
				if len(s.spill) > 2*capacity+2 {
					t.Fatalf("cap %d: spill holds %d", capacity, len(s.spill))
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
