//go:build linux

package proc_test

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/proc"
)

// helperThreads starts threads that stay alive until it exits: the
// process ends with several thread exits.
func helperThreads() {
	var ready sync.WaitGroup
	for range 4 {
		ready.Add(1)
		go func() {
			runtime.LockOSThread() // a thread of its own, never reused
			ready.Done()
			select {}
		}()
	}
	ready.Wait()
	os.Exit(0)
}

// TestIntegrationNamesEveryEvent: of the fork, exec and exit events of
// processes and threads the test spawns, at least 99.5% name the right
// program, with every event and with exits only (the table still sees
// the forks and execs); exit statuses are decoded. The right name of a
// process reaped before its exec was read comes from its taskstats exit
// record, which needs privilege: without it, 99.5% are named, some stale.
func TestIntegrationNamesEveryEvent(t *testing.T) {
	testutil.KernelConnector(t)
	testutil.Exclusive(t, testutil.ProcStorm) // compares whole streams
	for _, tc := range []struct {
		name string
		opts []proc.Option
	}{
		{"all", nil},
		{"exit", []proc.Option{proc.WithEvents(proc.WhatExit)}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkNames(t, tc.opts...) })
	}
}

func checkNames(t *testing.T, opts ...proc.Option) {
	c := listen(t, opts...)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.ReadFile("/proc/self/comm")
	selfComm := string(bytes.TrimSpace(self))
	// The threaded helper is this test binary: slow to start under the
	// race detector, so fewer of those.
	rounds, helpers := 60, 10
	if testutil.RaceEnabled {
		rounds, helpers = 20, 3
	}
	// Collect in the background: the pids are known only after Start.
	var (
		mu     sync.Mutex
		events []proc.Event
		exits  = map[uint32]bool{}
	)
	go func() {
		for ev := range c.m.Events() {
			mu.Lock()
			events = append(events, ev)
			if e, ok := ev.(*proc.Exit); ok {
				exits[e.PID] = true
			}
			mu.Unlock()
		}
	}()
	want := map[uint32]string{} // tgid -> comm after exec
	statuses := map[uint32]string{}
	run := func(comm, status string, cmd *exec.Cmd) {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		want[uint32(cmd.Process.Pid)] = comm
		statuses[uint32(cmd.Process.Pid)] = status
	}
	for i := range rounds {
		run("sh", `"code":3`, exec.Command("/bin/sh", "-c", "exit 3"))
		run("sh", `"signal":9`, exec.Command("/bin/sh", "-c", "kill -9 $$"))
		run("ls", `"code":0`, exec.Command("/bin/ls", "/"))
		if i >= helpers {
			continue
		}
		th := exec.Command(exe)
		th.Env = append(os.Environ(), helperEnv+"=threads")
		run(selfComm, `"code":0`, th)
	}
	// Everything above has exited: a marker's exit comes after all of it.
	m := exec.Command("/bin/true")
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	end := uint32(m.Process.Pid)
	testutil.WaitFor(t, "the marker's exit", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return exits[end]
	})
	mu.Lock()
	defer mu.Unlock()
	// named: the event carries the process (thread group) and a name;
	// right: the name is the program's. A process reaped before its exec
	// could be read keeps its earlier name, marked Stale; any other wrong
	// name is a failure.
	var total, named, right, stale, threadExits int
	var bad []string
	for _, ev := range events {
		var tgid uint32
		expect := ""
		switch e := ev.(type) {
		case *proc.Fork:
			tgid = e.ChildTGID
			expect = selfComm // a child has its parent's name until it execs
			if e.IsThread() {
				expect = want[tgid]
			}
		case *proc.Exec:
			tgid, expect = e.TGID, want[e.TGID]
		case *proc.Exit:
			tgid, expect = e.TGID, want[e.TGID]
			if _, ours := want[tgid]; ours && !e.IsThread() {
				if line := string(proc.AppendJSON(nil, e)); !strings.Contains(line, statuses[tgid]+",") {
					t.Errorf("exit of %d: %s, want %s", tgid, line, statuses[tgid])
				}
			}
			if _, ours := want[tgid]; ours && e.IsThread() {
				threadExits++
			}
		case *proc.Lost:
			t.Fatalf("lost %d events (%s)", e.Count, e.Source)
		}
		if _, ours := want[tgid]; !ours {
			continue
		}
		total++
		p := proc.ProcessOf(ev)
		if p == nil || p.TGID != tgid || proc.Name(p, proc.NameCmdline) == "" {
			if len(bad) < 10 {
				bad = append(bad, "unnamed: "+string(proc.AppendJSON(nil, ev)))
			}
			continue
		}
		named++
		switch {
		case p.Comm == expect:
			right++
		case p.Stale:
			stale++
		default:
			t.Errorf("wrong name, not marked stale: %s (want %s)", proc.AppendJSON(nil, ev), expect)
		}
	}
	ts := c.m.Table().Stats()
	t.Logf("%d events of spawned processes: %d named (%.2f%%), %d with the program's name (%.2f%%), %d stale (reaped before the exec was read); %d thread exits; taskstats %v: table misses %d, named from exit records %d, stale %d",
		total, named, 100*float64(named)/float64(total), right, 100*float64(right)/float64(total), stale, threadExits,
		c.m.Taskstats(), ts.Misses, ts.ExitNamed, ts.Stale)
	if total < rounds*3 || threadExits < helpers*4 {
		t.Fatalf("only %d events, %d thread exits, for %d rounds", total, threadExits, rounds)
	}
	if named*1000 < total*995 {
		t.Fatalf("%d of %d named (< 99.5%%); first misses:\n%s", named, total, strings.Join(bad, "\n"))
	}
	if c.m.Taskstats() && right*1000 < total*995 {
		t.Fatalf("%d of %d with the program's name (< 99.5%%), %d stale, with taskstats", right, total, stale)
	}
}
