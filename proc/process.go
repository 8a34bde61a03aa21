package proc

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is what was known of a process when an event about it was
// handled: its names as /proc gave them at fork or exec time (a forked
// child has its parent's until it execs), its parent and its start. A
// thread's events carry its group leader's Process. Values handed out are
// never modified afterwards: a later change makes a new one.
type Process struct {
	TGID uint32
	PPID uint32 // the parent's tgid when the process was first seen; 0 if unknown
	Comm string // the kernel's 15-byte command name
	// Cmdline is the arguments joined by spaces, at most MaxCmdline bytes;
	// empty for kernel threads and when the process was gone before /proc
	// could be read (named from its taskstats exit record: Comm only).
	Cmdline string
	Exe     string
	// StartNS is when it started, on the events' clock (CLOCK_MONOTONIC
	// nanoseconds): the fork event's timestamp, or for processes older
	// than the monitor /proc/PID/stat's start time (10 ms steps; stat
	// counts time suspended, which is taken off).
	StartNS uint64
	// Duration is how long it (or, on a thread's exit, the thread) ran; set
	// on exit events when the start is known.
	Duration time.Duration
	UID      uint32 // effective uid (the owner of /proc/PID), kept current from uid events
	PGID     uint32 // process group
	SID      uint32 // session, kept current from sid events
	TTY      uint32 // controlling terminal (stat's tty_nr), 0 for none
	RTPrio   uint32 // real-time priority, 0 for normal scheduling
	Kernel   bool   // a kernel thread (kthreadd or its child)
	// Cgroup is the cgroup path (the unified hierarchy's) read at exec or
	// first sight; a forked child is in its parent's.
	Cgroup string
	// Container is the container id recognised in Cgroup (ContainerID).
	Container string
	// Stale: the names are those it had before its last exec, because it
	// was gone before /proc could be read and no taskstats exit record
	// named it (or a ReadFilter skipped it).
	Stale bool
}

// MaxCmdline bounds how much of a command line is kept.
const MaxCmdline = 4096

// procReader reads /proc with reused buffers; not safe for concurrent use.
type procReader struct {
	root string
	buf  []byte
}

func (r *procReader) path(pid uint32, file string) string {
	return r.root + "/" + strconv.FormatUint(uint64(pid), 10) + "/" + file
}

// read reads at most len(r.buf) bytes of a /proc file.
func (r *procReader) read(pid uint32, file string) ([]byte, bool) {
	if r.buf == nil {
		r.buf = make([]byte, MaxCmdline)
	}
	f, err := os.Open(r.path(pid, file))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	n := 0
	for n < len(r.buf) {
		m, err := f.Read(r.buf[n:])
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	return r.buf[:n], true
}

// stat fills p from /proc/PID/stat; false if the process is gone (or
// reaped: a zombie still has its stat).
func (r *procReader) stat(pid uint32, p *Process) bool {
	b, ok := r.read(pid, "stat")
	if !ok {
		return false
	}
	// The command name is in parentheses and may hold anything: the other
	// fields count from after the last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return false
	}
	p.Comm = string(b[open+1 : end])
	fields := bytes.Fields(b[end+1:])
	if len(fields) < 40 {
		return false
	}
	num := func(i int) uint64 { v, _ := strconv.ParseUint(string(fields[i]), 10, 64); return v }
	// fields[0] is field 3 of proc(5): state.
	p.PPID = uint32(num(1))
	p.PGID = uint32(num(2))
	p.SID = uint32(num(3))
	p.TTY = uint32(num(4))
	p.StartNS = bootToMonotonic(num(19) * (1e9 / clockTicks))
	p.RTPrio = uint32(num(37))
	p.Kernel = pid == 2 || p.PPID == 2
	if fi, err := os.Stat(r.root + "/" + strconv.FormatUint(uint64(pid), 10)); err == nil {
		p.UID = fileUID(fi)
	}
	return true
}

// cmdline is /proc/PID/cmdline with NULs as spaces, bounded by MaxCmdline.
func (r *procReader) cmdline(pid uint32) string {
	b, _ := r.read(pid, "cmdline")
	b = bytes.TrimRight(b, "\x00 ")
	for i, c := range b {
		if c == 0 {
			b[i] = ' '
		}
	}
	return string(b)
}

func (r *procReader) exe(pid uint32) string {
	s, _ := os.Readlink(r.path(pid, "exe"))
	return s
}

// full reads everything the table keeps about pid.
func (r *procReader) full(pid uint32) (*Process, bool) {
	p := &Process{TGID: pid}
	if !r.stat(pid, p) {
		return nil, false
	}
	p.Cmdline = r.cmdline(pid)
	p.Exe = r.exe(pid)
	p.Cgroup = r.cgroup(pid)
	p.Container = ContainerID(p.Cgroup)
	return p, true
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time; 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// bootToMonotonic converts a CLOCK_BOOTTIME time (stat's start times) to
// CLOCK_MONOTONIC (the events' timestamps): they differ by the time the
// machine spent suspended.
func bootToMonotonic(ns uint64) uint64 {
	var boot, mono unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	if off := uint64(boot.Nano() - mono.Nano()); ns > off {
		return ns - off
	}
	return ns
}

func fileUID(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}
