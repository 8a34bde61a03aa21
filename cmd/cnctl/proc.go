package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cnactor/cnactor/handlers/proc"
	"golang.org/x/sys/unix"
)

func runProc(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("proc", e.stderr)
	events := fs.String("events", "all", "comma-separated kinds: fork, exec, exit, uid, gid, sid, ptrace, comm, coredump, nonzero_exit, all")
	var pid u32Flag
	fs.Var(&pid, "pid", "show only events involving this pid (as subject, parent, thread group or tracer)")
	jsonOut := fs.Bool("json", false, "print one JSON object per event")
	duration := fs.Duration("duration", 0, "stop after this long (0 = until interrupted)")
	enrich := fs.Bool("enrich", true, "read command names and lines from /proc")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	mask, err := proc.ParseWhat(*events)
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	m, err := proc.Listen(ctx, proc.WithEvents(mask), proc.WithEnrichment(*enrich))
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Fprintf(e.stderr, "listening to process events: mode=%s events=%s port=%d\n", m.Mode(), *events, m.Connector().Port())
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	if !*jsonOut {
		fmt.Fprintf(out, "%-15s %-8s %7s %-22s %10s %s\n", "Time", "Event", "PID", "Info", "Duration", "Process")
	}
	clock := newBootClock()
	var line []byte
	for {
		select {
		case <-ctx.Done():
			st := m.Stats()
			fmt.Fprintf(e.stderr, "events=%d lost=%d\n", st.Events, st.Lost)
			return nil
		case ev, ok := <-m.Events():
			if !ok {
				return nil
			}
			if _, isAck := ev.(*proc.Ack); isAck && !*jsonOut {
				continue
			}
			if pid.set && !proc.Involves(ev, pid.v) {
				continue
			}
			if *jsonOut {
				line = append(proc.AppendJSON(line[:0], ev), '\n')
			} else {
				line = appendProcText(line[:0], ev, clock)
			}
			out.Write(line)
			if len(m.Events()) == 0 {
				if err := out.Flush(); err != nil {
					return err
				}
			}
		}
	}
}

// appendProcText formats an event as a forkstat-like line.
func appendProcText(b []byte, ev proc.Event, clock bootClock) []byte {
	name := ev.Head().What.String()
	if _, ok := ev.(*proc.Lost); ok {
		name = "LOST"
	}
	process := ""
	if p := proc.ProcessOf(ev); p != nil {
		process = p.Cmdline
		if process == "" && p.Comm != "" {
			process = "[" + p.Comm + "]" // kernel threads and zombies have no command line
		}
	}
	return fmt.Appendf(b, "%-15s %-8s %7d %-22s %10s %s\n", clock.wall(ev.Head().TimestampNS).Format("15:04:05.000000"),
		name, proc.PID(ev), proc.Info(ev), proc.Duration(proc.ProcessOf(ev)), strings.TrimSpace(process))
}

// bootClock turns the kernel's event timestamps (CLOCK_MONOTONIC
// nanoseconds) into wall-clock times.
type bootClock struct{ offset time.Duration }

func newBootClock() bootClock {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return bootClock{offset: time.Duration(time.Now().UnixNano() - ts.Nano())}
}

func (c bootClock) wall(ns uint64) time.Time {
	if ns == 0 {
		return time.Now()
	}
	return time.Unix(0, int64(ns)+int64(c.offset))
}
