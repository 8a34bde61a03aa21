package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

func runListen(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("listen", e.stderr)
	var groups groupsFlag
	fs.Var(&groups, "group", "join multicast `GROUP` 1..32 (repeatable)")
	jsonOut := fs.Bool("json", false, "print one JSON object per message")
	count := fs.Int("count", 0, "exit 0 after `N` messages (0 = never)")
	timeout := fs.Duration("timeout", 0, "exit 1 if this `DURATION` elapses first (0 = never)")
	rcvbuf := fs.Int("rcvbuf", 4<<20, "socket receive buffer of `BYTES`")
	if err := parseFlags(fs, args, e.stdout); err != nil {
		return err
	}
	if *rcvbuf < 0 || *rcvbuf > transport.MaxReadBuffer {
		return usagef("-rcvbuf %d: want 0..%d (the most the kernel takes)", *rcvbuf, transport.MaxReadBuffer)
	}
	conn, err := transport.Dial(transport.WithGroups(groups...), transport.WithReadBuffer(*rcvbuf))
	if err != nil {
		return err
	}
	defer conn.Close()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	fmt.Fprintf(e.stderr, "listening port=%d groups=%s\n", conn.Port(), groups.String())
	return listenLoop(ctx, conn, e, *jsonOut, *count)
}

func listenLoop(ctx context.Context, conn transport.Conn, e *env, jsonOut bool, count int) error {
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	batch := transport.NewBatch(0)
	var line []byte
	seen := 0
	// One malformed-datagram line per second at most: a peer sending
	// garbage must not flood stderr. What was suppressed is counted, shown
	// on the next line, and summed up on exit.
	var malformed, suppressed, pending int // pending: suppressed since the last line
	var nextMalformed time.Time
	defer func() {
		if suppressed > 0 {
			fmt.Fprintf(e.stderr, "malformed datagrams: %d in total, %d line(s) suppressed\n", malformed, suppressed)
		}
	}()
	for {
		if err := conn.ReceiveBatch(ctx, batch); err != nil {
			out.Flush()
			if errors.Is(err, context.DeadlineExceeded) {
				return &exitError{code: 1, err: fmt.Errorf("timed out after %d message(s)", seen)}
			}
			if errors.Is(err, context.Canceled) {
				return nil // interrupted by the user
			}
			return err
		}
		if batch.Lost > 0 {
			fmt.Fprintf(e.stderr, "lost %d datagram(s): receive queue overflowed\n", batch.Lost)
		}
		for _, m := range batch.Malformed {
			malformed++
			if now := time.Now(); now.Before(nextMalformed) {
				suppressed++
				pending++
				continue
			} else {
				nextMalformed = now.Add(malformedInterval)
			}
			fmt.Fprintf(e.stderr, "malformed datagram from port %d (%d bytes): %v", m.From, len(m.Data), m.Err)
			if pending > 0 {
				fmt.Fprintf(e.stderr, " (%d line(s) suppressed before it)", pending)
				pending = 0
			}
			fmt.Fprintln(e.stderr)
		}
		for i := range batch.Messages {
			if jsonOut {
				line = handlers.AppendJSON(line[:0], &batch.Messages[i])
			} else {
				line = handlers.AppendText(line[:0], &batch.Messages[i])
			}
			out.Write(append(line, '\n'))
			seen++
			if count > 0 && seen >= count {
				return nil
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

// malformedInterval is the least time between two malformed-datagram lines.
const malformedInterval = time.Second

// sendTimeout bounds a send when the user gave no -timeout.
const sendTimeout = 5 * time.Second
