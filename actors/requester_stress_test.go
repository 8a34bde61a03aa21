package actors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor/transport"
)

// Pooled exchanges under load (from a review): many callers, short
// timeouts, retries, cancellations, replies late, duplicated or missing:
// each Request's reply must be its own (echoed token), and the counters
// must add up.
func TestRequesterPooledExchangesStress(t *testing.T) {
	g := newReqRig(t, RequesterConfig{DupCapacity: 64, DupWindow: 20 * time.Millisecond})
	stop := make(chan struct{})
	var rw sync.WaitGroup
	rw.Add(1)
	go func() {
		defer rw.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		type later struct {
			at time.Time
			m  transport.Message
		}
		var q []later
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case s := <-g.s.sent:
				rep := transport.Message{ID: s.m.ID, Seq: s.m.Seq, Ack: s.m.Ack + 1, Data: append([]byte(nil), s.m.Data...)}
				switch rng.IntN(5) {
				case 0: // never
				case 1:
					q = append(q, later{time.Now().Add(time.Duration(rng.IntN(4000)) * time.Microsecond), rep})
				case 2:
					g.r.intercept(received(rep, 7, 0), nop)
					g.r.intercept(received(rep, 7, 0), nop)
				default:
					g.r.intercept(received(rep, 7, 0), nop)
				}
			case <-tick.C:
				now := time.Now()
				kept := q[:0]
				for _, l := range q {
					if now.After(l.at) {
						g.r.intercept(received(l.m, 7, 0), nop)
					} else {
						kept = append(kept, l)
					}
				}
				q = kept
			case <-stop:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range 1500 {
				tok := fmt.Sprintf("w%d-%d", w, i)
				o := RequestOptions{Timeout: time.Duration(500+rng.IntN(2500)) * time.Microsecond, Retries: rng.IntN(3), Backoff: 1}
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				deadline := rng.IntN(3) == 0
				if deadline {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
				}
				if ctx.Err() != nil {
					cancel()
					continue
				}
				rep, err := g.r.Request(ctx, transport.Addr{Port: 7}, transport.Message{ID: testID, Data: []byte(tok)}, o)
				cancel()
				k := "ok"
				switch {
				case err == nil:
					if string(rep.Data) != tok {
						t.Errorf("reply %q to request %q", rep.Data, tok)
					}
				case errors.Is(err, ErrTimeout):
					k = "timeout"
				case errors.Is(err, context.DeadlineExceeded):
					k = "cancelled"
				default:
					t.Errorf("request %s: %v", tok, err)
				}
				mu.Lock()
				counts[k]++
				if deadline {
					counts["with a deadline"]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	rw.Wait()
	s := g.r.Stats()
	if s.InFlight != 0 || s.Requests != s.Replies+s.Timeouts+s.Cancelled+s.Failed {
		t.Errorf("stats do not add up: %+v", s)
	}
	// A context that ran out between the caller's check and Request's own
	// fails the request before it is counted: the callers' cancellations
	// are the requester's plus the requests it never registered.
	calls := uint64(counts["ok"] + counts["timeout"] + counts["cancelled"])
	unregistered := calls - s.Requests
	if s.Failed != 0 || unregistered > uint64(counts["with a deadline"]) ||
		uint64(counts["ok"]) != s.Replies || uint64(counts["timeout"]) != s.Timeouts ||
		uint64(counts["cancelled"]) != s.Cancelled+unregistered {
		t.Errorf("callers saw %v, stats %+v", counts, s)
	}
}
