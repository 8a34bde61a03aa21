package remote

import (
	"math/rand/v2"
	"testing"
)

// The queue's accounting, under random offers, takes and upstream losses:
// offered = sent + dropped + queued at every step, and, seen from the
// receiving end, every gap in the numbering is exactly the drops reported
// with the next message (drops at the end are in the final counters).
func TestSubQueueAccounting(t *testing.T) {
	for _, dropOldest := range []bool{false, true} {
		for _, limit := range []int{1, 2, 8, 100} {
			rng := rand.New(rand.NewPCG(uint64(limit), 7))
			q := newSubQueue(limit, dropOldest)
			var lastSeq, delivered, reportedDrops, reportedSocket, socket uint64
			it := &item{data: []byte("x")}
			check := func(buf []entry) {
				for _, e := range buf {
					if e.seq <= lastSeq {
						t.Fatalf("limit %d oldest %v: seq %d after %d", limit, dropOldest, e.seq, lastSeq)
					}
					if gap := e.seq - lastSeq - 1; gap != e.dropped {
						t.Fatalf("limit %d oldest %v: gap %d before seq %d, reported drops %d", limit, dropOldest, gap, e.seq, e.dropped)
					}
					lastSeq = e.seq
					delivered++
					reportedDrops += e.dropped
					reportedSocket += e.socketLost
				}
			}
			for step := 0; step < 20000; step++ {
				switch r := rng.IntN(10); {
				case r < 6:
					q.offer(it)
				case r < 7:
					n := uint64(rng.IntN(3) + 1)
					socket += n
					q.lost(n, false)
				default:
					check(q.take(nil, rng.IntN(limit+2)+1, 1<<20))
				}
				c := q.counters()
				if c.Offered != c.Sent+c.Dropped+c.Queued {
					t.Fatalf("counters %+v", c)
				}
			}
			check(q.take(nil, limit, 1<<20))
			c := q.close()
			if c.Sent != delivered || reportedDrops > c.Dropped || c.Offered-lastSeq+reportedDrops != c.Dropped ||
				c.SocketLost != socket || reportedSocket > socket {
				t.Fatalf("limit %d oldest %v: final %+v; delivered %d, last seq %d, drops reported %d, socket %d/%d",
					limit, dropOldest, c, delivered, lastSeq, reportedDrops, reportedSocket, socket)
			}
		}
	}
}

func TestSubQueueTakeBytes(t *testing.T) {
	q := newSubQueue(10, false)
	for i := 0; i < 5; i++ {
		q.offer(&item{data: make([]byte, 100)})
	}
	if got := len(q.take(nil, 10, 250)); got != 2 {
		t.Fatalf("took %d entries of 100 bytes within 250", got)
	}
	if got := len(q.take(nil, 10, 50)); got != 1 {
		t.Fatalf("took %d entries when one exceeds the byte budget; want 1", got)
	}
}
