package main

import (
	"bufio"
	"context"
	"fmt"

	"github.com/cnactor/cnactor/handlers/proc"
)

func runProc(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("proc", e.stderr)
	events := fs.String("events", "all", "comma-separated kinds: fork, exec, exit, uid, gid, sid, ptrace, comm, coredump, nonzero_exit, all")
	var pid u32Flag
	fs.Var(&pid, "pid", "show only events involving this pid (as subject, parent, thread group or tracer)")
	jsonOut := fs.Bool("json", false, "print one JSON object per event")
	duration := fs.Duration("duration", 0, "stop after this long (0 = until interrupted)")
	enrich := fs.Bool("enrich", true, "read command names and lines from /proc")
	fleet := addProcRemoteFlags(fs) // -remote and its options (remote.go)
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
	if fleet.remote != "" {
		return runProcRemote(ctx, e, fleet, mask, *events, pid, *jsonOut)
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
		out.WriteString(proc.TextHeader)
	}
	clock := proc.NewBootClock()
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
				line = proc.AppendText(line[:0], ev, clock)
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
