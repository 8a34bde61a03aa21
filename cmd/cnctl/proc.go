package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/cnactor/cnactor/proc"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// procFlags are cnctl proc's options; forkstat's equivalents are in the
// README's comparison.
type procFlags struct {
	events   string
	pid      u32Flag
	tree     bool
	json     bool
	enrich   bool
	name     string
	stats    bool
	quiet    bool
	extra    bool
	realtime bool
	glyphs   bool
	comm     string
	cmdline  string
	user     string
	pgid     u32Flag
	sid      u32Flag
	cgroup   string
	cid      string
	cidCol   bool
}

func runProc(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("proc", e.stderr)
	var f procFlags
	fs.StringVar(&f.events, "events", "all", "comma-separated `LIST` of kinds: fork, exec, exit, uid, gid, sid, ptrace, comm, coredump, nonzero_exit, all; forkstat's core, ptrce, clone, nonzeroexit too")
	fs.Var(&f.pid, "pid", "show only events involving this `PID` (as subject, parent, thread group or tracer)")
	fs.BoolVar(&f.tree, "tree", false, "with -pid: also every descendant of it (forks, execs, exits, ...)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per event")
	duration := fs.Duration("duration", 0, "stop after this `DURATION` (0 = until interrupted)")
	fs.BoolVar(&f.enrich, "enrich", true, "keep a process table (seeded from /proc) that names every event")
	fs.StringVar(&f.name, "name", "cmdline", "`FORM` of process names: cmdline, comm (forkstat -c), base (the command line without the program's directory, -d) or short (the program's base name, -s)")
	fs.BoolVar(&f.stats, "stats", false, "print per-process event counts at the end (forkstat -S)")
	fs.BoolVar(&f.quiet, "quiet", false, "print no events, only the counts at the end (forkstat -q)")
	fs.BoolVar(&f.extra, "extra", false, "add user and tty columns (forkstat -x)")
	fs.BoolVar(&f.realtime, "realtime", false, "run at real-time (SCHED_FIFO) priority, so short-lived processes are read from /proc before they are gone (forkstat -r; needs CAP_SYS_NICE; rarely needed as root, where taskstats exit records name them)")
	fs.BoolVar(&f.glyphs, "glyphs", false, "mark each event kind with an ASCII glyph (forkstat -g)")
	fs.StringVar(&f.comm, "comm", "", "show only processes whose comm matches this `REGEXP`")
	fs.StringVar(&f.cmdline, "cmdline", "", "show only processes whose command line matches this `REGEXP`")
	fs.StringVar(&f.user, "user", "", "show only processes of this `USER` (name or uid)")
	fs.Var(&f.pgid, "pgid", "show only processes of the process group `PGID`")
	fs.Var(&f.sid, "sid", "show only processes of the session `SID`")
	fs.StringVar(&f.cgroup, "cgroup", "", "show only processes whose cgroup path matches this `REGEXP`")
	fs.StringVar(&f.cid, "container", "", "show only processes of the container `ID` (its id, a prefix of it, or an nspawn machine name)")
	fs.BoolVar(&f.cidCol, "container-column", false, "add a Container column (docker, containerd/Kubernetes, CRI-O, podman ids, 12 characters; nspawn machine names)")
	fleet := addProcRemoteFlags(fs) // -remote and its options (remote.go)
	if err := parseFlags(fs, args, e.stdout); err != nil {
		return err
	}
	mask, err := proc.ParseWhat(f.events)
	if err != nil {
		return &usageError{fmt.Errorf("-events: %s", strings.TrimPrefix(err.Error(), "proc: "))}
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if fleet.remote != "" {
		return runProcRemote(ctx, e, fleet, mask, f.events, f.pid, f.json)
	}
	filter, err := f.filter()
	if err != nil {
		return &usageError{err}
	}
	form, err := proc.ParseNameForm(f.name)
	if err != nil {
		return &usageError{err}
	}
	if f.realtime {
		if err := setRealtime(); err != nil {
			return fmt.Errorf("-realtime: %w", err)
		}
	}
	// Filters on what a process inherits apply before /proc is read.
	// Warnings (a full process table, a failing connector) go to stderr.
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.AddSync(e.stderr), zapcore.WarnLevel))
	m, err := proc.Listen(ctx, proc.WithEvents(mask), proc.WithEnrichment(f.enrich), proc.WithTable(proc.WithReadFilter(filter.readable())),
		proc.WithLogger(log))
	if err != nil {
		return err
	}
	defer m.Close()
	filter.table = m.Table()
	fmt.Fprintf(e.stderr, "listening to process events: mode=%s events=%s port=%d\n", m.Mode(), f.events, m.Connector().Port())
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	show := !f.quiet
	if show && !f.json {
		out.WriteString(textHeader(f.extra, f.cidCol))
	}
	counts := newProcCounts(form)
	clock := proc.NewBootClock()
	users := newUserNames()
	var line []byte
	var shown uint64
	handle := func(ev proc.Event) {
		if _, isAck := ev.(*proc.Ack); isAck && !f.json {
			return
		}
		if !filter.match(ev) {
			return
		}
		shown++
		if f.stats || f.quiet {
			counts.add(ev)
		}
		if !show {
			return
		}
		switch {
		case f.json:
			line = append(proc.AppendJSON(line[:0], ev), '\n')
		default:
			line = appendProcText(line[:0], ev, clock, textOpts{form: form, extra: f.extra, glyphs: f.glyphs, container: f.cidCol}, users)
		}
		out.Write(line)
	}
	for ev := range m.Events() {
		handle(ev)
		// Flushed whenever nothing is waiting, also after an event the
		// filter dropped: a shown line must not sit in the buffer while
		// other processes' events keep the channel busy.
		if out.Buffered() > 0 && len(m.Events()) == 0 {
			if err := out.Flush(); err != nil {
				return err
			}
		}
	}
	if f.stats || f.quiet {
		counts.print(out)
	}
	out.Flush()
	st := m.Stats()
	fmt.Fprintf(e.stderr, "events=%d shown=%d lost=%d\n", st.Events, shown, st.Lost)
	if t := m.Table(); t != nil {
		ts := t.Stats()
		fmt.Fprintf(e.stderr, "process table: live=%d exited=%d read=%d gone_before_read=%d named_from_exit=%d stale=%d not_read=%d rejected=%d\n",
			ts.Live, ts.Exited, ts.Reads, ts.Misses, ts.ExitNamed, ts.Stale, ts.Skipped, ts.Rejected)
		switch stale := ts.Stale - min(ts.Stale, ts.Skipped); {
		case stale == 0:
		case !m.Taskstats():
			fmt.Fprintf(e.stderr, "%d processes were gone before their exec could be read and keep their earlier names (marked); as root (CAP_NET_ADMIN) the kernel's taskstats exit records name them; -realtime makes it rarer\n", stale)
		default:
			fmt.Fprintf(e.stderr, "%d processes were gone before their exec could be read and their exit records came too late (a burst); they keep their earlier names (marked); -realtime makes it rarer\n", stale)
		}
	}
	if err := m.Err(); !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// filter builds the display filter; the process table must be on for
// every filter that looks at processes.
func (f *procFlags) filter() (*procFilter, error) {
	pf := &procFilter{pid: f.pid, tree: f.tree, pgid: f.pgid, sid: f.sid, container: f.cid}
	if f.tree && !f.pid.set {
		return nil, errors.New("-tree needs -pid")
	}
	var err error
	if f.comm != "" {
		if pf.comm, err = regexp.Compile(f.comm); err != nil {
			return nil, fmt.Errorf("-comm: %w", err)
		}
	}
	if f.cmdline != "" {
		if pf.cmdline, err = regexp.Compile(f.cmdline); err != nil {
			return nil, fmt.Errorf("-cmdline: %w", err)
		}
	}
	if f.cgroup != "" {
		if pf.cgroup, err = regexp.Compile(f.cgroup); err != nil {
			return nil, fmt.Errorf("-cgroup: %w", err)
		}
	}
	if f.user != "" {
		uid, err := lookupUID(f.user)
		if err != nil {
			return nil, fmt.Errorf("-user: %w", err)
		}
		pf.uid = &uid
	}
	if !f.enrich && (f.tree || pf.byProcess() || f.name != "cmdline" || f.extra || f.cidCol) {
		return nil, errors.New("-tree, -comm, -cmdline, -user, -pgid, -sid, -cgroup, -container, -name, -extra and -container-column need the process table (-enrich)")
	}
	return pf, nil
}
