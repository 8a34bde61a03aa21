package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeProc is a /proc with the files the table reads.
type fakeProc struct {
	t    *testing.T
	root string
}

func newFakeProc(t *testing.T) *fakeProc { return &fakeProc{t: t, root: t.TempDir()} }

// add writes pid's stat (comm, ppid, start in ticks) and cmdline.
func (f *fakeProc) add(pid, ppid uint32, comm string, startTicks uint64, args ...string) {
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	if err := os.MkdirAll(filepath.Join(dir, "task"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	// Fields 3.. of proc(5): state ppid pgrp session tty ... start (22) ... rt_priority (40).
	rest := make([]string, 50)
	for i := range rest {
		rest[i] = "0"
	}
	rest[0], rest[1], rest[2], rest[3] = "S", fmt.Sprint(ppid), fmt.Sprint(pid), fmt.Sprint(pid)
	rest[19] = fmt.Sprint(startTicks)
	stat := fmt.Sprintf("%d (%s) %s\n", pid, comm, strings.Join(rest, " "))
	os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(args, "\x00")+"\x00"), 0o644)
}

func (f *fakeProc) remove(pid uint32) { os.RemoveAll(filepath.Join(f.root, fmt.Sprint(pid))) }

func TestTableNamesEveryEvent(t *testing.T) {
	f := newFakeProc(t)
	f.add(1, 0, "init", 1, "/sbin/init")
	f.add(2, 0, "kthreadd", 1)
	f.add(100, 1, "bash", 50, "/bin/bash", "-l")
	tab := NewTable(withRoot(f.root))
	if n, err := tab.Seed(); err != nil || n != 3 {
		t.Fatalf("seeded %d, %v", n, err)
	}
	// bash forks 200, which execs ls; /proc has it by then.
	fork := &Fork{Header: Header{What: WhatFork, TimestampNS: 1e9}, ParentPID: 100, ParentTGID: 100, ChildPID: 200, ChildTGID: 200}
	tab.Update(fork)
	if p := fork.Process; p == nil || p.Cmdline != "/bin/bash -l" || p.PPID != 100 || p.StartNS != 1e9 {
		t.Fatalf("fork: %+v", p)
	}
	f.add(200, 100, "ls", 100, "/bin/ls", "-l")
	exec := &Exec{Header: Header{What: WhatExec, TimestampNS: 2e9}, PID: 200, TGID: 200}
	tab.Update(exec)
	if p := exec.Process; p == nil || p.Comm != "ls" || p.Cmdline != "/bin/ls -l" || p.StartNS != 1e9 || p.PPID != 100 {
		t.Fatalf("exec: %+v", exec.Process)
	}
	if fork.Process.Comm != "bash" {
		t.Fatal("the fork's process changed after the event was handed out")
	}
	// A thread of 200; a comm change; then the process is reaped before
	// its exit is handled: the table still names it.
	clone := &Fork{Header: Header{What: WhatFork, TimestampNS: 3e9}, ParentPID: 200, ParentTGID: 200, ChildPID: 201, ChildTGID: 200}
	tab.Update(clone)
	if got := tab.Threads(200); len(got) != 1 || got[0] != 201 {
		t.Fatalf("threads %v", got)
	}
	comm := &Comm{Header: Header{What: WhatComm, TimestampNS: 3e9}, PID: 200, TGID: 200, Comm: "lister"}
	tab.Update(comm)
	f.remove(200)
	thrExit := &Exit{Header: Header{What: WhatExit, TimestampNS: 4e9}, PID: 201, TGID: 200, ExitSignal: -1}
	tab.Update(thrExit)
	if p := thrExit.Process; p == nil || p.Comm != "lister" || p.Duration != time.Second {
		t.Fatalf("thread exit: %+v", p)
	}
	exit := &Exit{Header: Header{What: WhatExit, TimestampNS: 5e9}, PID: 200, TGID: 200, ExitCode: 3 << 8, ExitSignal: 17}
	tab.Update(exit)
	if p := exit.Process; p == nil || p.Cmdline != "/bin/ls -l" || p.Duration != 4*time.Second {
		t.Fatalf("exit: %+v", p)
	}
	// A late event about it is still named while retained.
	if p, ok := tab.Lookup(200); !ok || p.Comm != "lister" {
		t.Fatalf("retained: %+v %v", p, ok)
	}
	if !tab.Descends(200, 1) || tab.Descends(100, 200) {
		t.Fatal("parent links")
	}
	// Kernel threads are marked, ordinary processes are not.
	if p, _ := tab.Lookup(2); !p.Kernel || Name(p, NameCmdline) != "[kthreadd]" {
		t.Fatalf("kthreadd: %+v", p)
	}
	if p, _ := tab.Lookup(100); p.Kernel || Name(p, NameCmdline) != "/bin/bash -l" {
		t.Fatalf("bash: %+v", p)
	}
	// Retention is event time: an event 11 s later forgets 200.
	tab.Update(&Exec{Header: Header{What: WhatExec, TimestampNS: 16e9 + 1}, PID: 100, TGID: 100})
	if _, ok := tab.Lookup(200); ok {
		t.Fatal("exited process kept past the retention")
	}
	if s := tab.Stats(); s.Expired != 1 || s.Live != 3 || s.Threads != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A pid reused after a lost exit is a new process, not the old one.
func TestTableReusedPID(t *testing.T) {
	f := newFakeProc(t)
	f.add(100, 1, "bash", 50, "/bin/bash")
	f.add(300, 1, "old", 60, "/usr/bin/old")
	tab := NewTable(withRoot(f.root))
	tab.Seed()
	fork := &Fork{Header: Header{What: WhatFork, TimestampNS: 1e9}, ParentPID: 100, ParentTGID: 100, ChildPID: 300, ChildTGID: 300}
	tab.Update(fork)
	if fork.Process.Comm != "bash" || fork.Process.PPID != 100 {
		t.Fatalf("reused pid got %+v", fork.Process)
	}
	if s := tab.Stats(); s.Live != 2 || s.Exited != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// The table never holds more than its limit; rejections are counted and
// logged once per interval, and events are still named.
func TestTableBounded(t *testing.T) {
	f := newFakeProc(t)
	f.add(100, 1, "bash", 50, "/bin/bash")
	core, logs := observer.New(zap.WarnLevel)
	tab := NewTable(withRoot(f.root), WithTableLimit(10), WithRetention(time.Hour), WithTableLogger(zap.New(core)))
	tab.Seed()
	ts := uint64(1e9)
	for pid := uint32(1000); pid < 1100; pid++ {
		ts++
		fork := &Fork{Header: Header{What: WhatFork, TimestampNS: ts}, ParentPID: 100, ParentTGID: 100, ChildPID: pid, ChildTGID: pid}
		tab.Update(fork)
		if fork.Process == nil || fork.Process.Comm != "bash" {
			t.Fatalf("fork %d unnamed", pid)
		}
		if pid%2 == 0 { // half of them exit: retained, then evicted for room
			tab.Update(&Exit{Header: Header{What: WhatExit, TimestampNS: ts}, PID: pid, TGID: pid})
		}
		if s := tab.Stats(); s.Live+s.Threads+s.Exited > 10 {
			t.Fatalf("table holds %+v, limit 10", s)
		}
	}
	s := tab.Stats()
	if s.Rejected == 0 || s.Expired == 0 {
		t.Fatalf("stats %+v: want rejections and evictions", s)
	}
	if logs.Len() != 1 {
		t.Fatalf("%d log lines for %d rejections, want 1 (rate-limited)", logs.Len(), s.Rejected)
	}
}

// A live entry whose exit was lost is pruned when /proc no longer has it.
func TestTablePrunesAfterLoss(t *testing.T) {
	f := newFakeProc(t)
	f.add(100, 1, "bash", 50, "/bin/bash")
	f.add(101, 1, "gone", 50, "/bin/gone")
	tab := NewTable(withRoot(f.root), WithTableLimit(4))
	tab.Seed()
	f.remove(101) // its exit is lost
	tab.Update(&Lost{Count: 1, Source: "socket"})
	tab.Update(&Exec{Header: Header{What: WhatExec, TimestampNS: 1}, PID: 100, TGID: 100})
	if _, ok := tab.Lookup(101); ok {
		t.Fatal("entry of a lost exit survived the resync")
	}
	if _, ok := tab.Lookup(100); !ok {
		t.Fatal("a live process was pruned")
	}
	if s := tab.Stats(); s.Pruned != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNameForms(t *testing.T) {
	p := &Process{Comm: "python3", Cmdline: "/usr/bin/python3 -m http.server"}
	for f, want := range map[NameForm]string{NameCmdline: "/usr/bin/python3 -m http.server", NameComm: "python3",
		NameBase: "python3 -m http.server", NameShort: "python3"} {
		if got := Name(p, f); got != want {
			t.Errorf("%v: %q, want %q", f, got, want)
		}
	}
	if got := Name(&Process{Comm: "zombie"}, NameCmdline); got != "zombie" {
		t.Errorf("no cmdline: %q", got)
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		status    uint32
		code, sig int
		core      bool
		info      string
	}{
		{3 << 8, 3, 0, false, "code=3"},
		{0, 0, 0, false, "code=0"},
		{9, 0, 9, false, "signal=9"},
		{11 | 0x80, 0, 11, true, "signal=11 core"},
	}
	for _, tt := range tests {
		e := &Exit{Header: Header{What: WhatExit}, PID: 5, TGID: 5, ExitCode: tt.status}
		if e.Code() != tt.code || int(e.Signal()) != tt.sig || e.CoreDumped() != tt.core || Info(e) != tt.info {
			t.Errorf("%#x: code %d signal %d core %v info %q", tt.status, e.Code(), e.Signal(), e.CoreDumped(), Info(e))
		}
	}
	th := &Exit{Header: Header{What: WhatExit}, PID: 6, TGID: 5, ExitSignal: -1}
	if !th.IsThread() || Info(th) != "thread code=0" {
		t.Errorf("thread exit: %q", Info(th))
	}
	if got := string(AppendJSON(nil, th)); !strings.Contains(got, `"exit_signal":-1,`) || !strings.Contains(got, `"code":0,"core_dumped":false,"thread":true`) {
		t.Errorf("thread exit JSON %s", got)
	}
}

func TestDurationFixedUnit(t *testing.T) {
	for d, want := range map[time.Duration]string{370 * time.Microsecond: "0.000370s", 101719 * time.Microsecond: "0.101719s",
		4018448 * time.Microsecond: "4.018448s", 0: ""} {
		if got := Duration(&Process{Duration: d}); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

func TestAppendTextNames(t *testing.T) {
	var clock BootClock
	line := func(ev Event) string {
		s := string(AppendText(nil, ev, clock))
		return strings.Join(strings.Fields(s[16:]), " ") // without the time
	}
	leader := &Process{TGID: 10, Comm: "worker", Cmdline: "/usr/bin/worker -v"}
	for _, tt := range []struct {
		ev   Event
		want string
	}{
		{&Exec{Header: Header{What: WhatExec}, PID: 2, TGID: 2, Process: &Process{TGID: 2, Comm: "kthreadd", Kernel: true}}, "exec 2 [kthreadd]"},
		{&Exec{Header: Header{What: WhatExec}, PID: 10, TGID: 10, Process: leader}, "exec 10 /usr/bin/worker -v"},
		{&Exit{Header: Header{What: WhatExit}, PID: 11, TGID: 10, ExitSignal: -1, Process: &Process{TGID: 10, Comm: "worker", Cmdline: "/usr/bin/worker -v", Duration: 1500 * time.Microsecond}},
			"exit 11 thread code=0 0.001500s /usr/bin/worker -v"},
		{&Fork{Header: Header{What: WhatFork}, ParentPID: 10, ParentTGID: 10, ChildPID: 12, ChildTGID: 10, Process: leader}, "clone 12 thread of 10 /usr/bin/worker -v"},
		{&Comm{Header: Header{What: WhatComm}, PID: 10, TGID: 10, Comm: "w2", Process: leader}, "comm 10 comm=w2 /usr/bin/worker -v"},
		{&Exec{Header: Header{What: WhatExec}, PID: 13, TGID: 13, Process: &Process{TGID: 13, Comm: "bash", Cmdline: "bash", Stale: true}},
			"exec 13 bash (before exec: gone before /proc was read)"},
		{&Exec{Header: Header{What: WhatExec}, PID: 14, TGID: 14, Process: &Process{TGID: 14, Comm: "zombie"}}, "exec 14 zombie"},
	} {
		if got := line(tt.ev); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

// A read filter spares /proc reads of execs outside a tree; inside it,
// names are read as usual.
func TestTableReadFilter(t *testing.T) {
	f := newFakeProc(t)
	f.add(100, 1, "bash", 50, "/bin/bash")
	f.add(200, 1, "cron", 50, "/usr/sbin/cron")
	tab := NewTable(withRoot(f.root), WithReadFilter(func(p *Process, descends func(uint32) bool) bool { return descends(100) }))
	tab.Seed()
	for _, c := range []struct{ parent, child uint32 }{{100, 101}, {200, 201}} {
		tab.Update(&Fork{Header: Header{What: WhatFork, TimestampNS: 1}, ParentPID: c.parent, ParentTGID: c.parent, ChildPID: c.child, ChildTGID: c.child})
		f.add(c.child, c.parent, "ls", 60, "/bin/ls")
	}
	in := &Exec{Header: Header{What: WhatExec, TimestampNS: 2}, PID: 101, TGID: 101}
	out := &Exec{Header: Header{What: WhatExec, TimestampNS: 2}, PID: 201, TGID: 201}
	tab.Update(in)
	tab.Update(out)
	if in.Process.Comm != "ls" || in.Process.Stale {
		t.Errorf("in the tree: %+v", in.Process)
	}
	if out.Process.Comm != "cron" || !out.Process.Stale {
		t.Errorf("outside the tree: %+v", out.Process)
	}
	if s := tab.Stats(); s.Reads != 1 || s.Skipped != 1 {
		t.Errorf("stats %+v: want 1 read, 1 skipped", s)
	}
}
