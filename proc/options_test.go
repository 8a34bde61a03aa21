package proc_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/conntest"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/proc"
	"go.uber.org/zap"
)

// Every option reaches the monitor: on the in-memory network, with the
// table on, an exec event is named from the table and counted.
func TestListenOptions(t *testing.T) {
	t.Parallel()
	c, net := conntest.New(t)
	var asked atomic.Int32
	m, err := proc.Listen(context.Background(), proc.WithConnector(c), proc.WithMode(proc.ModeAll),
		proc.WithEvents(proc.WhatExec), proc.WithBuffer(16), proc.WithMailbox(64), proc.WithReadBuffer(1<<20),
		proc.WithLogger(zap.NewNop()), proc.WithTable(proc.WithTableLimit(128), proc.WithRetention(time.Second),
			proc.WithReadFilter(func(*proc.Process, func(uint32) bool) bool { asked.Add(1); return true })))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Mode() != proc.ModeAll || m.Mode().String() != "all" || m.Table() == nil || m.Connector() != c {
		t.Fatalf("mode %v, table %v, connector %p", m.Mode(), m.Table(), m.Connector())
	}
	self := uint32(1) // init: always there to read
	kernelEvent(t, net, 1, proc.WhatExec, self, self)
	select {
	case ev := <-m.Events():
		e, ok := ev.(*proc.Exec)
		if !ok || e.PID != self || e.Process == nil || e.Process.Comm == "" {
			t.Fatalf("event %T %+v", ev, ev)
		}
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("no event")
	}
	testutil.WaitFor(t, "the event counted", func() bool { return m.Stats().Events == 1 })
	if asked.Load() == 0 {
		t.Error("the read filter was never asked")
	}
}

func TestInvolvesAndNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ev   proc.Event
		pid  uint32
		want bool
	}{
		{&proc.Fork{ParentPID: 1, ParentTGID: 1, ChildPID: 7, ChildTGID: 7}, 7, true},
		{&proc.Fork{ParentPID: 1, ParentTGID: 1, ChildPID: 7, ChildTGID: 7}, 1, true},
		{&proc.Fork{ParentPID: 1, ParentTGID: 1, ChildPID: 7, ChildTGID: 7}, 9, false},
		{&proc.Exit{PID: 8, TGID: 7, ParentPID: 1, ParentTGID: 1}, 7, true},
		{&proc.Exit{PID: 8, TGID: 7, ParentPID: 1, ParentTGID: 1}, 9, false},
		{&proc.Coredump{PID: 5, TGID: 5, ParentPID: 2, ParentTGID: 2}, 2, true},
		{&proc.Ptrace{PID: 5, TGID: 5, TracerPID: 3, TracerTGID: 3}, 3, true},
		{&proc.Ptrace{PID: 5, TGID: 5, TracerPID: 3, TracerTGID: 3}, 4, false},
		{&proc.Exec{PID: 6, TGID: 4}, 4, true},
		{&proc.Exec{PID: 6, TGID: 4}, 6, true},
		{&proc.Exec{PID: 6, TGID: 4}, 5, false},
		{&proc.Lost{Count: 3}, 99, true},
	} {
		if got := proc.Involves(tc.ev, tc.pid); got != tc.want {
			t.Errorf("Involves(%T %+v, %d) = %v", tc.ev, tc.ev, tc.pid, got)
		}
	}
	for _, s := range []string{"cmdline", "comm", "base", "short"} {
		f, err := proc.ParseNameForm(s)
		if err != nil || f.String() != s {
			t.Errorf("ParseNameForm(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := proc.ParseNameForm("long"); err == nil {
		t.Error("ParseNameForm accepted long")
	}
	for m, s := range map[proc.Mode]string{proc.ModeAuto: "auto", proc.ModeKernelFilter: "kernel-filter", proc.ModeUserspaceFilter: "userspace-filter"} {
		if m.String() != s {
			t.Errorf("%d.String() = %q", m, m.String())
		}
	}
}
