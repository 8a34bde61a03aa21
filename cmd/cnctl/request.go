package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

// newRequestConnector opens the connector `cnctl request` sends from; tests
// replace it with one on an in-memory network.
var newRequestConnector = func() (*cnactor.Connector, error) { return cnactor.New() }

func runRequest(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("request", e.stderr)
	var id idFlag
	var dest destFlags
	var payload payloadFlags
	fs.Var(&id, "id", "callback id `IDX:VAL`, each part decimal or 0x hex (required)")
	dest.register(fs)
	payload.register(fs)
	timeout := fs.Duration("timeout", cnactor.DefaultRequestTimeout, "the first attempt waits this `DURATION` for its reply")
	retries := fs.Int("retries", 0, "`N` resends, with the same seq and ack, when an attempt's wait runs out")
	count := fs.Int("count", 1, "send `N` requests")
	concurrency := fs.Int("concurrency", 1, "`N` requests in flight at once")
	ackOnly := fs.Bool("ack-only", false, "match replies by id and ack+1 from the kernel, as the proc connector answers; joins group IDX")
	jsonOut := fs.Bool("json", false, "print one JSON object per reply")
	if err := parseFlags(fs, args, e.stdout); err != nil {
		return err
	}
	switch {
	case !id.set:
		return usagef("-id IDX:VAL is required")
	case *count < 1 || *concurrency < 1:
		return usagef("-count and -concurrency must be at least 1")
	case *concurrency > maxConcurrency:
		// Each request in flight is a goroutine and a pending exchange.
		return usagef("-concurrency %d: at most %d", *concurrency, maxConcurrency)
	case *retries < 0 || *timeout <= 0:
		return usagef("-retries must be >= 0 and -timeout > 0")
	}
	to, err := dest.addr()
	if err != nil {
		return &usageError{err}
	}
	data, err := payload.bytes()
	if err != nil {
		return &usageError{err}
	}
	c, err := newRequestConnector()
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	opts := []cnactor.RequestOption{cnactor.WithRequestTimeout(*timeout), cnactor.WithRetries(*retries)}
	if *ackOnly {
		// The callback joins group IDX, where the kernel multicasts its acks.
		if err := c.AddCallback(id.id, "request-ack-only", handlers.Sink()); err != nil {
			return err
		}
		opts = append(opts, cnactor.WithMatch(cnactor.MatchAck))
	}

	out := bufio.NewWriter(e.stdout)
	var mu sync.Mutex // guards out, line, rtts, failLines and the error lines
	var line []byte
	var rtts []time.Duration
	var left, started atomic.Int64
	var timedOut, failed, interrupted atomic.Int64
	failLines := 0
	left.Store(int64(*count))
	// A peer that is gone refuses every send at once: stop everything on
	// the first refusal instead of spinning through -count failures.
	work, stopWork := context.WithCancelCause(ctx)
	defer stopWork(nil)
	var wg sync.WaitGroup
	for range min(*concurrency, *count) {
		wg.Go(func() {
			for work.Err() == nil && left.Add(-1) >= 0 {
				started.Add(1)
				r, err := c.Request(work, to, &transport.Message{ID: id.id, Data: data}, opts...)
				mu.Lock()
				switch {
				case err == nil:
					rtts = append(rtts, r.RTT)
					line = appendReply(line[:0], r, *jsonOut)
					out.Write(append(line, '\n'))
				case errors.Is(err, cnactor.ErrTimeout):
					timedOut.Add(1)
					fmt.Fprintf(e.stderr, "no reply: %v\n", err)
				case work.Err() != nil:
					interrupted.Add(1) // cut short by SIGINT or a stop: not a failure of its own
				case errors.Is(err, syscall.ECONNREFUSED):
					failed.Add(1)
					stopWork(fmt.Errorf("the peer refuses requests (no socket at %s: it exited?): %w", to, err))
				default:
					failed.Add(1)
					if failLines++; failLines <= maxFailLines {
						fmt.Fprintf(e.stderr, "request failed: %v\n", err)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := out.Flush(); err != nil {
		return err
	}
	if failLines > maxFailLines {
		fmt.Fprintf(e.stderr, "%d more failure line(s) suppressed\n", failLines-maxFailLines)
	}
	st := c.Stats().Requester
	sent := started.Load()
	fmt.Fprintf(e.stderr, "sent=%d replied=%d timed_out=%d failed=%d retried=%d %s\n",
		st.Requests, len(rtts), timedOut.Load(), failed.Load(), st.Retries, rttSummary(rtts))
	if cause := context.Cause(work); cause != nil && ctx.Err() == nil {
		return &exitError{code: 1, err: fmt.Errorf("stopped after %d of %d request(s): %w", sent, *count, cause)}
	}
	if ctx.Err() != nil {
		// Interrupted: requests never started are not unanswered ones.
		return &exitError{code: 1, err: fmt.Errorf("interrupted: %d of %d request(s) started, %d answered, %d cut short, %d timed out, %d failed",
			sent, *count, len(rtts), interrupted.Load(), timedOut.Load(), failed.Load())}
	}
	if missing := *count - len(rtts); missing > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d request(s) got no reply", missing, *count)}
	}
	return nil
}

// maxConcurrency bounds -concurrency.
const maxConcurrency = 4096

// maxFailLines bounds the "request failed" lines of one run; the rest are
// counted.
const maxFailLines = 20

// appendReply formats a reply like `cnctl listen` formats a message, plus
// its round-trip time.
func appendReply(b []byte, r *cnactor.Reply, jsonOut bool) []byte {
	if jsonOut {
		b = handlers.AppendJSON(b, &r.Received)
		b = append(b[:len(b)-1], `,"rtt_us":`...) // reopen the object
		b = strconv.AppendFloat(b, float64(r.RTT)/float64(time.Microsecond), 'f', 1, 64)
		return append(b, '}')
	}
	b = handlers.AppendText(b, &r.Received)
	b = append(b, " rtt="...)
	return append(b, r.RTT.Round(100*time.Nanosecond).String()...)
}

// rttSummary is "rtt p50=… p90=… p99=… max=…" over the replies' RTTs.
func rttSummary(rtts []time.Duration) string {
	if len(rtts) == 0 {
		return "rtt n/a"
	}
	slices.Sort(rtts)
	pct := func(p int) time.Duration { return rtts[(len(rtts)*p+99)/100-1] } // nearest rank
	r := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	return fmt.Sprintf("rtt p50=%s p90=%s p99=%s max=%s", r(pct(50)), r(pct(90)), r(pct(99)), r(rtts[len(rtts)-1]))
}
