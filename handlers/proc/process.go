package proc

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"
)

// Process is what /proc said about a process when the monitor saw it fork
// or exec, kept so that its exit can still say what exited.
type Process struct {
	TGID    uint32
	Comm    string
	Cmdline string // arguments joined by spaces
	Exe     string
	// StartNS is when it started, in nanoseconds since boot: the fork or
	// exec event's timestamp, or /proc/PID/stat's start time.
	StartNS uint64
	// Duration is how long it ran; set on exit events when the start is
	// known.
	Duration time.Duration
}

// Enricher attaches what /proc says about a process to its fork, exec and
// exit events, remembering (boundedly) what it read so that an exit can
// still say what exited, and for how long it ran. It is not safe for
// concurrent use: feed it one stream, in order.
type Enricher struct{ c *cache }

// NewEnricher returns an Enricher that remembers up to max processes.
func NewEnricher(max int) *Enricher { return &Enricher{c: newCache(max)} }

// Enrich sets and returns the Process of a fork of a process, an exec, or
// the exit of a thread group leader; for other events it returns nil.
func (e *Enricher) Enrich(ev Event) *Process {
	switch ev := ev.(type) {
	case *Fork:
		if !ev.IsThread() {
			ev.Process = e.c.forked(ev)
		}
		return ev.Process
	case *Exec:
		ev.Process = e.c.execed(ev)
		return ev.Process
	case *Exit:
		if ev.PID == ev.TGID {
			ev.Process = e.c.exited(ev)
		}
		return ev.Process
	}
	return nil
}

// cache is a bounded map from tgid to Process with first-in-first-out
// eviction: enough for the live processes of a busy machine, never more.
type cache struct {
	max   int
	procs map[uint32]*Process
	order []uint32 // insertion order, for eviction
	root  string   // "/proc"
}

func newCache(max int) *cache {
	return &cache{max: max, procs: make(map[uint32]*Process, 256), root: "/proc"}
}

func (c *cache) put(p *Process) {
	if _, ok := c.procs[p.TGID]; !ok {
		if len(c.procs) >= c.max {
			c.evict()
		}
		c.order = append(c.order, p.TGID)
	}
	c.procs[p.TGID] = p
}

func (c *cache) evict() {
	for len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		if _, ok := c.procs[old]; ok {
			delete(c.procs, old)
			return
		}
	}
}

func (c *cache) remove(tgid uint32) {
	delete(c.procs, tgid)
	// Compact the order list once stale keys dominate it.
	if len(c.order) > 2*c.max {
		live := c.order[:0]
		for _, k := range c.order {
			if _, ok := c.procs[k]; ok {
				live = append(live, k)
			}
		}
		c.order = live
	}
}

// forked records a new process: it inherits its parent's identity until
// it execs.
func (c *cache) forked(e *Fork) *Process {
	p := &Process{TGID: e.ChildTGID, StartNS: e.TimestampNS}
	if parent, ok := c.procs[e.ParentTGID]; ok {
		p.Comm, p.Cmdline, p.Exe = parent.Comm, parent.Cmdline, parent.Exe
	} else {
		p.Comm = c.readComm(e.ChildTGID)
	}
	c.put(p)
	return p
}

// execed reads the new program's identity from /proc.
func (c *cache) execed(e *Exec) *Process {
	p, ok := c.procs[e.TGID]
	if !ok {
		p = &Process{TGID: e.TGID, StartNS: c.readStart(e.TGID)}
	}
	np := *p // events already handed out keep the old identity
	np.Comm = c.readComm(e.TGID)
	np.Cmdline = c.readCmdline(e.TGID)
	np.Exe, _ = os.Readlink(c.path(e.TGID, "exe"))
	c.put(&np)
	return &np
}

// exited returns what is known of an exiting process, or nil, and forgets
// it. The process is usually still a zombie: /proc has its comm and stat.
func (c *cache) exited(e *Exit) *Process {
	p, ok := c.procs[e.TGID]
	if !ok {
		p = &Process{TGID: e.TGID, Comm: c.readComm(e.TGID), StartNS: c.readStart(e.TGID)}
		if p.Comm == "" && p.StartNS == 0 {
			return nil // reaped before we looked, and never seen alive
		}
	}
	np := *p
	if np.StartNS != 0 && e.TimestampNS > np.StartNS {
		np.Duration = time.Duration(e.TimestampNS - np.StartNS)
	}
	c.remove(e.TGID)
	return &np
}

func (c *cache) path(pid uint32, file string) string {
	return c.root + "/" + strconv.FormatUint(uint64(pid), 10) + "/" + file
}

func (c *cache) readComm(pid uint32) string {
	b, _ := os.ReadFile(c.path(pid, "comm"))
	return strings.TrimSuffix(string(b), "\n")
}

func (c *cache) readCmdline(pid uint32) string {
	b, _ := os.ReadFile(c.path(pid, "cmdline"))
	return string(bytes.TrimRight(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), " "))
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time; 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// readStart is the process start time in ns since boot, 0 if unknown.
func (c *cache) readStart(pid uint32) uint64 {
	b, err := os.ReadFile(c.path(pid, "stat"))
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: field 22
	// counts from after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0
	}
	return ticks * (1e9 / clockTicks)
}
