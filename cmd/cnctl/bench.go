package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/cnactor/cnactor/benchmarks"
	"golang.org/x/sys/unix"
)

func runBench(ctx context.Context, args []string, e *env) error {
	scenario := benchmarks.Throughput
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	fs := newFlagSet("bench", e.stderr)
	var cfg benchmarks.Config
	cfg.Scenario = scenario
	fs.StringVar(&cfg.Transport, "transport", benchmarks.Netlink, "`NAME`: netlink or memory (the in-process transport, no kernel, no privilege)")
	fs.StringVar(&cfg.Mode, "mode", benchmarks.Unicast, "`MODE`: unicast (to the receiver's port) or multicast (to a group it joined)")
	fs.StringVar(&cfg.Method, "method", benchmarks.Live, "throughput `METHOD`: live (sender running alongside, each receiver in turn) or drain (time emptying a pre-filled queue)")
	fs.IntVar(&cfg.Handlers, "handlers", 0, "spread the traffic over `N` callback ids (default 1; overload 4)")
	fs.IntVar(&cfg.Payload, "payload", 64, "`BYTES` of payload per message, 16..16384")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run for this `DURATION` (default 5s; overload 10s)")
	fs.IntVar(&cfg.InFlight, "inflight", 1, "latency: `N` requests in flight")
	fs.IntVar(&cfg.Mailbox, "mailbox", 0, "handler mailbox of `N` messages (default: cnactor's, 1024)")
	fs.BoolVar(&cfg.SenderInProcess, "sender-in-process", false, "live: run the sender on a thread of this process instead of a process of its own (kinder to cnactor; for comparison with runs before 2026-12-01)")
	fs.BoolVar(&cfg.Batch, "batch", false, "cnactor's counting handlers take each run as a slice (handlers.BatchHandler) instead of one call per message")
	fs.IntVar(&cfg.Procs, "procs", 0, "proc: `N` processes in the storm (default 3000)")
	fs.IntVar(&cfg.Chunk, "chunk", 0, "throughput drain: `N` messages queued per timed drain (default 20000, fewer for big payloads)")
	fs.StringVar(&cfg.Peers, "peers", "", "proc: `PATH` of cnbench-peers (built from benchmarks/peers); looked up in $PATH if empty")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object")
	strict := fs.Bool("strict", false, "exit 1 also when a target is missed")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this `FILE` (go tool pprof)")
	if err := parseFlags(fs, args, e.stdout); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.Scenario != benchmarks.Throughput {
		cfg.Method = ""
	}
	if err := cfg.Normalize(); err != nil {
		return &usageError{err}
	}
	pr := newProgressPrinter(e.stderr)
	cfg.Progress = pr.print
	res, err := benchmarks.Run(ctx, cfg)
	pr.end()
	if res != nil {
		if *jsonOut {
			b, jerr := json.Marshal(res)
			if jerr != nil {
				return jerr
			}
			fmt.Fprintf(e.stdout, "%s\n", b)
		} else {
			printBench(e.stdout, res)
		}
	}
	if errors.Is(err, benchmarks.ErrAccounting) {
		fmt.Fprintln(e.stderr, "\n!!! ACCOUNTING MISMATCH: the messages of this run do not add up; see the accounting table !!!")
		return &exitError{code: 1, err: err}
	}
	if err != nil {
		return err
	}
	if *strict && res != nil {
		for _, t := range res.Targets {
			if !t.Met {
				return &exitError{code: 1, err: fmt.Errorf("target missed: %s: want %s, got %.3g", t.Name, t.Want, t.Got)}
			}
		}
	}
	return nil
}

// progressPrinter shows the live progress line: rewritten in place on a
// terminal, one line a second otherwise.
type progressPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	last  time.Time
	width int
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	p := &progressPrinter{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

func (p *progressPrinter) print(pg benchmarks.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("%s %-16s %6.1fs  sent %s  received %s  %s/s  drops %d",
		pg.Scenario, pg.Phase, pg.Elapsed.Seconds(), human(float64(pg.Sent)), human(float64(pg.Received)), human(pg.Rate), pg.Drops)
	if pg.RSS > 0 {
		line += fmt.Sprintf("  rss %.1f MB", float64(pg.RSS)/1e6)
	}
	if p.tty {
		pad := max(p.width-len(line), 0)
		p.width = len(line)
		fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
		return
	}
	if now := time.Now(); now.Sub(p.last) >= time.Second {
		p.last = now
		fmt.Fprintln(p.w, line)
	}
}

func (p *progressPrinter) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.width > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
	}
}

// human formats a count with k/M suffixes.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func printBench(w io.Writer, r *benchmarks.Result) {
	c := r.Config
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	head := fmt.Sprintf("%s: %s %s, %d handler(s), %d-byte payloads, %v", c.Scenario, c.Transport, c.Mode, c.Handlers, c.Payload, c.Duration)
	switch c.Scenario {
	case benchmarks.Throughput:
		head += ", " + c.Method + " method"
		if c.Batch {
			head += ", batch handlers"
		}
	case benchmarks.Latency:
		head = fmt.Sprintf("latency: %s %s, %d in flight, %d-byte payloads, %v", c.Transport, c.Mode, c.InFlight, c.Payload, c.Duration)
	case benchmarks.Proc:
		head = fmt.Sprintf("proc: storm of %d processes, netlink", c.Procs)
	}
	fmt.Fprintln(tw, head)
	if len(r.Receivers) > 0 {
		fmt.Fprintln(tw, "\nreceiver\tmessages\tseconds\tmsgs/s\tMB/s\tcpu s\tcpu ns/msg\tallocs/msg\tB/msg\tdrops\t")
		for _, rr := range r.Receivers {
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%s\t%.1f\t%.3f\t%.0f\t%.3f\t%.0f\t%d\t\n", rr.Name, rr.Messages, rr.Seconds, human(rr.Rate), rr.MBps,
				rr.CPUSeconds, rr.CPUNsPerMsg, rr.AllocsPerMsg, rr.BytesPerMsg, rr.Drops)
		}
		for _, rr := range r.Receivers {
			if rr.SentRate > 0 {
				fmt.Fprintf(tw, "sender rate against %s: %s/s (sender thread cpu %.3fs, not counted above)\n", rr.Name, human(rr.SentRate), rr.SenderCPUSeconds)
			}
		}
		tw.Flush()
		for _, rr := range r.Receivers[:len(r.Receivers)-1] {
			if v, ok := r.Ratios[benchmarks.NameCnactor+"/"+rr.Name]; ok {
				fmt.Fprintf(tw, "ratio cnactor/%s: %.2fx\n", rr.Name, v)
			}
		}
		for _, rr := range r.Receivers[:len(r.Receivers)-1] {
			if v, ok := r.CPURatios[benchmarks.NameCnactor+"/"+rr.Name]; ok {
				fmt.Fprintf(tw, "cpu/msg ratio cnactor/%s: %.2fx (lower is better)\n", rr.Name, v)
			}
		}
	}
	if l := r.Latency; l != nil {
		fmt.Fprintln(tw, "\nside\tround trips\tp50 us\tp90 us\tp99 us\tmax us\tper s\ttimeouts\t")
		for _, s := range l.Sides {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%d\t\n", s.Name, s.Count, s.P50, s.P90, s.P99, s.Max, human(s.Rate), s.Timeouts)
		}
		for _, s := range l.Sides[:len(l.Sides)-1] {
			if v, ok := l.P50Ratios[benchmarks.NameCnactor+"/"+s.Name]; ok {
				fmt.Fprintf(tw, "p50 ratio cnactor/%s\t%.2fx\n", s.Name, v)
			}
		}
	}
	if o := r.Overload; o != nil {
		fmt.Fprintf(tw, "\nsent\t%d in %.1fs (%s/s)\n", o.Sent, o.Seconds, human(o.SentRate))
		fmt.Fprintf(tw, "rss\tstart %.1f MB, max %.1f MB, end %.1f MB (%d samples)\n", mb(o.RSSStart), mb(o.RSSMax), mb(o.RSSEnd), o.RSSSamples)
		fmt.Fprintf(tw, "stalled handler\t%d mailbox drops\n", o.StalledDrops)
		fmt.Fprintf(tw, "running handlers\t%s msgs/s during the stall\n", human(o.OthersRate))
		fmt.Fprintf(tw, "kernel drops\t%d\n", o.KernelDrops)
		fmt.Fprintln(tw, "\nhandler\tsent\tdelivered\tfraction\tof what the kernel queued\t")
		for _, h := range o.Others {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.4f\t%.4f\t\n", h.ID, h.Sent, h.Delivered, h.Fraction, h.QueuedFraction)
		}
	}
	if p := r.Proc; p != nil {
		fmt.Fprintf(tw, "\nstorm of %d processes in %.2fs; %d events each receiver should see\n", p.Procs, p.Seconds, 3*p.Procs)
		fmt.Fprintln(tw, "receiver\tforks\texecs\texits\tmissing\treported lost\terror\t")
		for _, pr := range p.Receivers {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", pr.Name, pr.Forks, pr.Execs, pr.Exits, pr.Missing, pr.Reported, pr.Error)
		}
		for _, s := range p.Skipped {
			fmt.Fprintf(tw, "not run: %s\n", s)
		}
	}
	fmt.Fprintln(tw, "\naccounting\tsent\tdelivered\tkernel drops\tmailbox drops\tother\tbalanced\t")
	for _, a := range r.Accounting {
		other := a.Rejected + a.Unknown + a.Malformed + a.Failed + a.Intercepted
		ok := "yes"
		if !a.OK {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", a.Receiver, a.Sent, a.Delivered, a.KernelDrops, a.MailboxDrops, other, ok)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(tw, "\ntarget\twant\tgot\t")
		for _, t := range r.Targets {
			met := "met"
			if !t.Met {
				met = "MISSED"
			}
			fmt.Fprintf(tw, "%s\t%s\t%.3g%s\t%s\n", t.Name, t.Want, t.Got, t.Unit, met)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "\nnote: %s", n)
	}
	m := r.Machine
	fmt.Fprintf(tw, "\nmachine: %s, %d CPUs, Linux %s, %s\n", m.CPU, m.CPUs, m.Kernel, m.Go)
}

func mb(b uint64) float64 { return float64(b) / 1e6 }
