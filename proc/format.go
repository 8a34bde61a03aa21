package proc

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// AppendJSON appends ev as one JSON object: "event", "cpu",
// "timestamp_ns", then the kernel's field names with the process_ prefix
// dropped, values as the kernel sent them; then, when enrichment knows it,
// "process": {"comm", "cmdline", "exe", "start_ns", "duration_ns"}.
// Lost events are {"event":"lost","count":N,"source":...}.
func AppendJSON(b []byte, ev Event) []byte {
	hd := ev.Head()
	name := hd.What.String()
	if _, ok := ev.(*Lost); ok {
		name = "lost"
	}
	b = append(b, `{"event":"`...)
	b = append(b, name...)
	b = append(b, `","cpu":`...)
	b = strconv.AppendUint(b, uint64(hd.CPU), 10)
	b = append(b, `,"timestamp_ns":`...)
	b = strconv.AppendUint(b, hd.TimestampNS, 10)
	num := func(key string, v uint64) {
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, v, 10)
	}
	var proc *Process
	switch e := ev.(type) {
	case *Ack:
		num("err", uint64(e.Err))
		num("ack", uint64(e.Ack))
	case *Fork:
		num("parent_pid", uint64(e.ParentPID))
		num("parent_tgid", uint64(e.ParentTGID))
		num("child_pid", uint64(e.ChildPID))
		num("child_tgid", uint64(e.ChildTGID))
		proc = e.Process
	case *Exec:
		num("pid", uint64(e.PID))
		num("tgid", uint64(e.TGID))
		proc = e.Process
	case *UID:
		num("pid", uint64(e.PID))
		num("tgid", uint64(e.TGID))
		num("ruid", uint64(e.RUID))
		num("euid", uint64(e.EUID))
	case *GID:
		num("pid", uint64(e.PID))
		num("tgid", uint64(e.TGID))
		num("rgid", uint64(e.RGID))
		num("egid", uint64(e.EGID))
	case *SID:
		num("pid", uint64(e.PID))
		num("tgid", uint64(e.TGID))
	case *Ptrace:
		num("pid", uint64(e.PID))
		num("tgid", uint64(e.TGID))
		num("tracer_pid", uint64(e.TracerPID))
		num("tracer_tgid", uint64(e.TracerTGID))
	case *Comm:
		num("pid", uint64(e.PID))
		num("tgid", uint64(e.TGID))
		b = append(b, `,"comm":`...)
		b = appendString(b, e.Comm)
	case *Coredump:
		num("pid", uint64(e.PID))
		num("tgid", uint64(e.TGID))
		num("parent_pid", uint64(e.ParentPID))
		num("parent_tgid", uint64(e.ParentTGID))
	case *Exit:
		num("pid", uint64(e.PID))
		num("tgid", uint64(e.TGID))
		num("exit_code", uint64(e.ExitCode))
		b = append(b, `,"exit_signal":`...)
		b = strconv.AppendInt(b, int64(e.ExitSignal), 10)
		num("parent_pid", uint64(e.ParentPID))
		num("parent_tgid", uint64(e.ParentTGID))
		if sig := e.Signal(); sig != 0 {
			num("signal", uint64(sig))
		} else {
			num("code", uint64(e.Code()))
		}
		b = append(b, `,"core_dumped":`...)
		b = strconv.AppendBool(b, e.CoreDumped())
		if e.IsThread() {
			b = append(b, `,"thread":true`...)
		}
		proc = e.Process
	case *Lost:
		num("count", e.Count)
		b = append(b, `,"source":`...)
		b = appendString(b, e.Source)
	}
	if proc == nil {
		proc = ProcessOf(ev)
	}
	if proc != nil {
		b = append(b, `,"process":{"tgid":`...)
		b = strconv.AppendUint(b, uint64(proc.TGID), 10)
		num("ppid", uint64(proc.PPID))
		b = append(b, `,"comm":`...)
		b = appendString(b, proc.Comm)
		b = append(b, `,"cmdline":`...)
		b = appendString(b, proc.Cmdline)
		b = append(b, `,"exe":`...)
		b = appendString(b, proc.Exe)
		num("start_ns", proc.StartNS)
		if proc.Duration > 0 {
			num("duration_ns", uint64(proc.Duration))
		}
		num("uid", uint64(proc.UID))
		if proc.Cgroup != "" {
			b = append(b, `,"cgroup":`...)
			b = appendString(b, proc.Cgroup)
		}
		if proc.Container != "" {
			b = append(b, `,"container":`...)
			b = appendString(b, proc.Container)
		}
		if proc.Kernel {
			b = append(b, `,"kernel":true`...)
		}
		if proc.Stale {
			b = append(b, `,"stale":true`...)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // JSON escaping, not Go's
	return append(b, q...)
}

// PID is the process an event is about: the child of a fork, the pid of
// the others, 0 for acks and losses.
func PID(ev Event) uint32 {
	switch e := ev.(type) {
	case *Fork:
		return e.ChildPID
	case *Exec:
		return e.PID
	case *UID:
		return e.PID
	case *GID:
		return e.PID
	case *SID:
		return e.PID
	case *Ptrace:
		return e.PID
	case *Comm:
		return e.PID
	case *Coredump:
		return e.PID
	case *Exit:
		return e.PID
	}
	return 0
}

// Involves reports whether ev concerns pid: as the subject, its thread
// group, its parent or tracer.
func Involves(ev Event, pid uint32) bool {
	switch e := ev.(type) {
	case *Fork:
		return pid == e.ChildPID || pid == e.ChildTGID || pid == e.ParentPID || pid == e.ParentTGID
	case *Exit:
		return pid == e.PID || pid == e.TGID || pid == e.ParentPID || pid == e.ParentTGID
	case *Coredump:
		return pid == e.PID || pid == e.TGID || pid == e.ParentPID || pid == e.ParentTGID
	case *Ptrace:
		return pid == e.PID || pid == e.TGID || pid == e.TracerPID || pid == e.TracerTGID
	case *Lost, *Ack:
		return true // never hide a loss or an acknowledgement
	}
	return PID(ev) == pid || tgid(ev) == pid
}

func tgid(ev Event) uint32 {
	switch e := ev.(type) {
	case *Exec:
		return e.TGID
	case *UID:
		return e.TGID
	case *GID:
		return e.TGID
	case *SID:
		return e.TGID
	case *Comm:
		return e.TGID
	}
	return 0
}

// Info is the short description forkstat-style views print for ev.
func Info(ev Event) string {
	switch e := ev.(type) {
	case *Ack:
		return "ack err=" + strconv.FormatUint(uint64(e.Err), 10)
	case *Fork:
		if e.IsThread() {
			return "thread of " + strconv.FormatUint(uint64(e.ChildTGID), 10)
		}
		return "parent=" + strconv.FormatUint(uint64(e.ParentPID), 10)
	case *UID:
		return "ruid=" + strconv.FormatUint(uint64(e.RUID), 10) + " euid=" + strconv.FormatUint(uint64(e.EUID), 10)
	case *GID:
		return "rgid=" + strconv.FormatUint(uint64(e.RGID), 10) + " egid=" + strconv.FormatUint(uint64(e.EGID), 10)
	case *Ptrace:
		if e.TracerPID == 0 {
			return "detached"
		}
		return "tracer=" + strconv.FormatUint(uint64(e.TracerPID), 10)
	case *Comm:
		return "comm=" + e.Comm
	case *Coredump:
		return "parent=" + strconv.FormatUint(uint64(e.ParentPID), 10)
	case *Exit:
		s := ""
		if e.IsThread() {
			s = "thread "
		}
		if sig := e.Signal(); sig != 0 {
			s += "signal=" + strconv.Itoa(int(sig))
			if e.CoreDumped() {
				s += " core"
			}
			return s
		}
		return s + "code=" + strconv.Itoa(e.Code())
	case *Lost:
		return "lost " + strconv.FormatUint(e.Count, 10) + " events (" + e.Source + ")"
	}
	return ""
}

// ProcessOf is the process attached to ev, or nil.
func ProcessOf(ev Event) *Process {
	switch e := ev.(type) {
	case *Fork:
		return e.Process
	case *Exec:
		return e.Process
	case *Exit:
		return e.Process
	case *UID:
		return e.Process
	case *GID:
		return e.Process
	case *SID:
		return e.Process
	case *Ptrace:
		return e.Process
	case *Comm:
		return e.Process
	case *Coredump:
		return e.Process
	}
	return nil
}

// Duration formats how long a process ran in seconds with a fixed six
// decimals ("0.000370s", "4.018448s"), or "" if unknown.
func Duration(p *Process) string {
	if p == nil || p.Duration <= 0 {
		return ""
	}
	us := p.Duration.Round(time.Microsecond).Microseconds()
	return fmt.Sprintf("%d.%06ds", us/1e6, us%1e6)
}

// NameForm is how a process is named in text output.
type NameForm uint8

const (
	NameCmdline NameForm = iota // the command line (the default), else the comm
	NameComm                    // the kernel's command name
	NameBase                    // the command line with the program's directory stripped
	NameShort                   // the program's base name, no arguments
)

// ParseNameForm parses cmdline, comm, base or short.
func ParseNameForm(s string) (NameForm, error) {
	for i, n := range nameForms {
		if n == s {
			return NameForm(i), nil
		}
	}
	return 0, fmt.Errorf("proc: unknown name form %q (want cmdline, comm, base or short)", s)
}

var nameForms = [...]string{"cmdline", "comm", "base", "short"}

func (f NameForm) String() string { return nameForms[f] }

// Name is p's name in form f: kernel threads as [comm], the way ps shows
// them; "" for nil.
func Name(p *Process, f NameForm) string {
	if p == nil {
		return ""
	}
	if p.Kernel || p.Cmdline == "" && f != NameComm {
		if p.Kernel {
			return "[" + p.Comm + "]"
		}
		return p.Comm
	}
	switch f {
	case NameComm:
		return p.Comm
	case NameBase, NameShort:
		prog, args, _ := strings.Cut(p.Cmdline, " ")
		prog = prog[strings.LastIndexByte(prog, '/')+1:]
		if f == NameShort || args == "" {
			return prog
		}
		return prog + " " + args
	}
	return strings.TrimSpace(p.Cmdline)
}

// AppendText appends ev as one forkstat-style line: time, event, pid,
// info, duration, process (its command line; see Name). A thread's fork
// is a "clone", as forkstat calls it. Losses are LOST lines.
func AppendText(b []byte, ev Event, clock BootClock) []byte {
	return AppendTextAs(b, ev, clock, NameCmdline)
}

// AppendTextAs is AppendText with the process named in form f.
func AppendTextAs(b []byte, ev Event, clock BootClock, f NameForm) []byte {
	p := ProcessOf(ev)
	name := Name(p, f)
	if p != nil && p.Stale {
		name += " (before exec: gone before /proc was read)"
	}
	return fmt.Appendf(b, "%-15s %-8s %7d %-22s %10s %s\n", clock.Wall(ev.Head().TimestampNS).Format("15:04:05.000000"),
		EventName(ev), PID(ev), Info(ev), Duration(p), name)
}

// EventName is the event column of text output: the kind, "clone" for a
// thread's fork, "LOST" for a loss.
func EventName(ev Event) string {
	switch e := ev.(type) {
	case *Lost:
		return "LOST"
	case *Fork:
		if e.IsThread() {
			return "clone"
		}
	}
	return ev.Head().What.String()
}

// TextHeader is the header line of AppendText's columns.
const TextHeader = "Time            Event        PID Info                     Duration Process\n"

// BootClock turns the kernel's event timestamps (CLOCK_MONOTONIC
// nanoseconds) into wall-clock times.
type BootClock struct{ offset time.Duration }

// NewBootClock reads the offset between the two clocks now.
func NewBootClock() BootClock {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return BootClock{offset: time.Duration(time.Now().UnixNano() - ts.Nano())}
}

// Wall is the wall-clock time of a timestamp; now for 0 (a Lost event).
func (c BootClock) Wall(ns uint64) time.Time {
	if ns == 0 {
		return time.Now()
	}
	return time.Unix(0, int64(ns)+int64(c.offset))
}
