package actors

import (
	"sync/atomic"
	"time"
)

// RTTBuckets returns the upper bounds of the requester's round-trip-time
// histogram, from a local round trip (tens of microseconds) to a slow peer.
// The array is a copy: the bounds cannot be changed under the histogram.
func RTTBuckets() [NumRTTBuckets]time.Duration { return rttBuckets }

var rttBuckets = [NumRTTBuckets]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// NumRTTBuckets is the number of finite RTT buckets.
const NumRTTBuckets = 17

// RTTHistogram is a snapshot of the RTTs of delivered replies: Counts[i]
// replies took at most RTTBuckets()[i] and more than RTTBuckets()[i-1];
// Counts[NumRTTBuckets] took longer than the last bound. Sum is their total.
type RTTHistogram struct {
	Counts [NumRTTBuckets + 1]uint64
	Sum    time.Duration
}

// Count is the number of replies in the histogram.
func (h RTTHistogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// rttHistogram records RTTs lock-free.
type rttHistogram struct {
	counts [NumRTTBuckets + 1]atomic.Uint64
	sum    atomic.Int64
}

func (h *rttHistogram) observe(d time.Duration) {
	i := 0
	for i < NumRTTBuckets && d > rttBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *rttHistogram) snapshot() RTTHistogram {
	var s RTTHistogram
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}
