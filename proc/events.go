package proc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// What is the kind of a proc event, the kernel's enum proc_cn_event. The
// values are also the bits of a subscription filter.
type What uint32

// Event kinds, as the kernel numbers them.
const (
	WhatNone        What = 0x00000000 // an acknowledgement
	WhatFork        What = 0x00000001
	WhatExec        What = 0x00000002
	WhatUID         What = 0x00000004
	WhatGID         What = 0x00000040
	WhatSID         What = 0x00000080
	WhatPtrace      What = 0x00000100
	WhatComm        What = 0x00000200
	WhatNonzeroExit What = 0x20000000 // filter only: exits with a non-zero code
	WhatCoredump    What = 0x40000000
	WhatExit        What = 0x80000000

	// WhatAll is every event kind.
	WhatAll = WhatFork | WhatExec | WhatUID | WhatGID | WhatSID | WhatPtrace | WhatComm | WhatCoredump | WhatExit
)

var whatNames = []struct {
	w    What
	name string
}{
	{WhatNone, "ack"}, {WhatFork, "fork"}, {WhatExec, "exec"}, {WhatUID, "uid"}, {WhatGID, "gid"},
	{WhatSID, "sid"}, {WhatPtrace, "ptrace"}, {WhatComm, "comm"}, {WhatCoredump, "coredump"},
	{WhatExit, "exit"}, {WhatNonzeroExit, "nonzero_exit"},
}

// String is the event name used in cnctl's output ("fork", "exec", ...).
func (w What) String() string {
	for _, n := range whatNames {
		if n.w == w {
			return n.name
		}
	}
	return "what_0x" + strconv.FormatUint(uint64(w), 16)
}

// whatAliases are forkstat's event names. The kernel has one fork event
// for processes and threads, so "clone" asks for forks (threads show as
// "clone" in text).
var whatAliases = map[string]string{"core": "coredump", "ptrce": "ptrace", "clone": "fork", "nonzeroexit": "nonzero_exit"}

// ParseWhat parses a comma-separated list of event names into a filter
// mask; forkstat's names (core, ptrce, clone, nonzeroexit) are accepted too.
func ParseWhat(list string) (What, error) {
	var mask What
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if a, ok := whatAliases[name]; ok {
			name = a
		}
		found := false
		for _, n := range whatNames {
			if n.name == name && n.w != WhatNone {
				mask |= n.w
				found = true
			}
		}
		if name == "all" {
			mask |= WhatAll
			found = true
		}
		if !found {
			return 0, fmt.Errorf("proc: unknown event %q (want fork, exec, uid, gid, sid, ptrace, comm, coredump, exit, nonzero_exit or all)", name)
		}
	}
	return mask, nil
}

// Header is what every event carries.
type Header struct {
	What        What
	CPU         uint32
	TimestampNS uint64 // nanoseconds since boot
	Seq         uint32 // cn_msg seq: a per-CPU counter
}

// Event is one decoded proc event: *Ack, *Fork, *Exec, *UID, *GID, *SID,
// *Ptrace, *Comm, *Coredump, *Exit, or *Lost (not from the kernel: how many
// events were lost at this point of the stream).
type Event interface {
	Head() *Header
}

// Head returns the header.
func (h *Header) Head() *Header { return h }

// Ack answers a LISTEN or IGNORE. Its Seq is the kernel's per-CPU counter,
// not the request's: match it by ack (request ack + 1).
type Ack struct {
	Header
	Ack uint32
	Err uint32
}

// Fork is a clone: a new process or, when ChildPID != ChildTGID, a thread.
type Fork struct {
	Header
	ParentPID, ParentTGID, ChildPID, ChildTGID uint32
	Process                                    *Process // the child, if enrichment is on
}

// IsThread reports whether the fork created a thread.
func (e *Fork) IsThread() bool { return e.ChildPID != e.ChildTGID }

// Exec is an execve.
type Exec struct {
	Header
	PID, TGID uint32
	Process   *Process
}

// UID is a change of real or effective uid.
type UID struct {
	Header
	PID, TGID, RUID, EUID uint32
	Process               *Process
}

// GID is a change of real or effective gid.
type GID struct {
	Header
	PID, TGID, RGID, EGID uint32
	Process               *Process
}

// SID is a new session (setsid).
type SID struct {
	Header
	PID, TGID uint32
	Process   *Process
}

// Ptrace is an attach or detach; TracerPID is 0 on detach.
type Ptrace struct {
	Header
	PID, TGID, TracerPID, TracerTGID uint32
	Process                          *Process
}

// Comm is a change of the command name (prctl PR_SET_NAME or exec).
type Comm struct {
	Header
	PID, TGID uint32
	Comm      string
	Process   *Process
}

// Coredump is a core dump.
type Coredump struct {
	Header
	PID, TGID, ParentPID, ParentTGID uint32
	Process                          *Process
}

// Exit is the end of a task: a process (PID == TGID) or a thread.
//
// ExitCode is the kernel's task->exit_code, a wait status: the code a
// process passed to exit in bits 8-15, or the signal that killed it in bits
// 0-6 with bit 7 set when it dumped core. Read it with Code, Signal and
// CoreDumped rather than by hand.
//
// ExitSignal is task->exit_signal: the signal the parent is sent when this
// task ends, SIGCHLD (17) for an ordinary child, -1 for a thread (threads
// notify no one), or whatever clone asked for. It is never the signal that
// killed the task: that is Signal.
type Exit struct {
	Header
	PID, TGID, ExitCode   uint32
	ExitSignal            int32
	ParentPID, ParentTGID uint32
	Process               *Process // the process (a thread's group leader), with Duration, if known
}

// Code is the exit code of a task that exited (0-255); 0 when it was killed
// by a signal.
func (e *Exit) Code() int {
	if e.Signal() != 0 {
		return 0
	}
	return int(e.ExitCode>>8) & 0xff
}

// Signal is the signal that killed the task, or 0 if it exited.
func (e *Exit) Signal() syscall.Signal { return syscall.Signal(e.ExitCode & 0x7f) }

// CoreDumped reports whether the task dumped core as it was killed.
func (e *Exit) CoreDumped() bool { return e.Signal() != 0 && e.ExitCode&0x80 != 0 }

// IsThread reports whether a thread ended rather than a whole process.
func (e *Exit) IsThread() bool { return e.PID != e.TGID }

// Lost says that Count events are missing at this point of the stream.
type Lost struct {
	Header
	Count uint64
	// Source is where the loss was seen: "socket" (the kernel's drop
	// counter: the receive queue was full), "sequence" (a gap in a CPU's
	// event numbers) or "mailbox" (the handler fell behind); on a remote
	// stream (package remote) also "queue" (the subscription's queue on
	// the node) or "transport" (the connection broke). Except for
	// "sequence", these are handlers.LossSource names.
	Source string
}

// EventLen is the size of struct proc_event: what, cpu, timestamp and a
// 24-byte union.
const EventLen = 40

// ErrShortEvent: a payload shorter than a proc_event.
var ErrShortEvent = errors.New("proc: payload shorter than a proc event")

// Decode decodes a proc_event payload received with cn_msg seq and ack.
func Decode(data []byte, seq, ack uint32) (Event, error) {
	if len(data) < EventLen {
		return nil, ErrShortEvent
	}
	u32 := func(i int) uint32 { return binary.NativeEndian.Uint32(data[16+4*i:]) }
	h := Header{
		What:        What(binary.NativeEndian.Uint32(data[0:])),
		CPU:         binary.NativeEndian.Uint32(data[4:]),
		TimestampNS: binary.NativeEndian.Uint64(data[8:]),
		Seq:         seq,
	}
	switch h.What {
	case WhatNone:
		return &Ack{Header: h, Ack: ack, Err: u32(0)}, nil
	case WhatFork:
		return &Fork{Header: h, ParentPID: u32(0), ParentTGID: u32(1), ChildPID: u32(2), ChildTGID: u32(3)}, nil
	case WhatExec:
		return &Exec{Header: h, PID: u32(0), TGID: u32(1)}, nil
	case WhatUID:
		return &UID{Header: h, PID: u32(0), TGID: u32(1), RUID: u32(2), EUID: u32(3)}, nil
	case WhatGID:
		return &GID{Header: h, PID: u32(0), TGID: u32(1), RGID: u32(2), EGID: u32(3)}, nil
	case WhatSID:
		return &SID{Header: h, PID: u32(0), TGID: u32(1)}, nil
	case WhatPtrace:
		return &Ptrace{Header: h, PID: u32(0), TGID: u32(1), TracerPID: u32(2), TracerTGID: u32(3)}, nil
	case WhatComm:
		comm := data[24:40]
		if i := strings.IndexByte(string(comm), 0); i >= 0 {
			comm = comm[:i]
		}
		return &Comm{Header: h, PID: u32(0), TGID: u32(1), Comm: string(comm)}, nil
	case WhatCoredump:
		return &Coredump{Header: h, PID: u32(0), TGID: u32(1), ParentPID: u32(2), ParentTGID: u32(3)}, nil
	case WhatExit:
		return &Exit{Header: h, PID: u32(0), TGID: u32(1), ExitCode: u32(2), ExitSignal: int32(u32(3)), ParentPID: u32(4), ParentTGID: u32(5)}, nil
	}
	return nil, fmt.Errorf("proc: unknown event kind %v", h.What)
}
