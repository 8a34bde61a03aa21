package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/proc"
)

// procLine is what these tests read of cnctl proc -json lines.
type procLine struct {
	Event   string `json:"event"`
	PID     uint32 `json:"pid"`
	Child   uint32 `json:"child_pid"`
	Parent  uint32 `json:"parent_pid"`
	Code    *int   `json:"code"`
	Signal  *int   `json:"signal"`
	Process *struct {
		Comm  string `json:"comm"`
		TGID  uint32 `json:"tgid"`
		Stale bool   `json:"stale"` // reaped before its exec was read: the earlier name
	} `json:"process"`
}

// named reports whether l names comm, or says its name is stale.
func (l procLine) named(comm string) bool {
	return l.Process != nil && (l.Process.Comm == comm || l.Process.Stale)
}

// startProc runs cnctl proc until the test ends and waits until it
// listens.
func startProc(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr, done := started(t, ctx, append([]string{"proc", "-json"}, args...)...)
	t.Cleanup(func() {
		cancel()
		if st := <-done; st != 0 {
			t.Errorf("cnctl proc exited %d: %s", st, stderr.String())
		}
	})
	testutil.WaitFor(t, "cnctl proc to listen", func() bool {
		return strings.Contains(stderr.String(), "listening to process events")
	})
	t.Cleanup(func() { // before the cancel above: a failure shows what cnctl printed
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			t.Logf("cnctl proc printed %d lines, the last ones:\n%s\nstderr:\n%s", len(lines),
				strings.Join(lines[max(len(lines)-40, 0):], "\n"), stderr.String())
		}
	})
	return stdout
}

func procLines(t *testing.T, out string) []procLine {
	var lines []procLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var pl procLine
		if l != "" && json.Unmarshal([]byte(l), &pl) == nil {
			lines = append(lines, pl)
		}
	}
	return lines
}

func pidOf(l procLine) uint32 {
	if l.Event == "fork" {
		return l.Child
	}
	return l.PID
}

// forkstat's event names work, and nonzeroexit shows failing exits only,
// named, with the exit code or the killing signal decoded.
func TestIntegrationProcForkstatEvents(t *testing.T) {
	testutil.KernelConnector(t)
	testutil.Exclusive(t, testutil.ProcStorm) // waits for given events: a storm's loss would fail it
	out := startProc(t, "-events", "core,ptrce,clone,nonzeroexit")
	ok := exec.Command("/bin/true") // exits 0: must not show
	ok.Run()
	fail := exec.Command("/bin/sh", "-c", "exit 3")
	fail.Run()
	killed := exec.Command("/bin/sh", "-c", "kill -9 $$")
	killed.Run()
	okPID, failPID, killedPID := uint32(ok.Process.Pid), uint32(fail.Process.Pid), uint32(killed.Process.Pid)
	var got map[uint32]procLine
	testutil.WaitFor(t, "the failing exits", func() bool {
		got = map[uint32]procLine{}
		for _, l := range procLines(t, out.String()) {
			if l.Event == "exit" {
				got[l.PID] = l
			}
		}
		_, a := got[failPID]
		_, b := got[killedPID]
		return a && b
	})
	if l := got[failPID]; l.Code == nil || *l.Code != 3 || !l.named("sh") {
		t.Errorf("exit 3: %+v", l)
	}
	if l := got[killedPID]; l.Signal == nil || *l.Signal != 9 || !l.named("sh") {
		t.Errorf("kill -9: %+v", l)
	}
	// The zero exit came before the failing ones, which did arrive.
	if _, shown := got[okPID]; shown {
		t.Errorf("a zero exit was shown with nonzeroexit")
	}
	for _, l := range procLines(t, out.String()) {
		if p := pidOf(l); (p == failPID || p == killedPID) && l.Event == "exec" {
			t.Errorf("exec shown though not asked for: %+v", l)
		}
	}
}

// -pid P -tree follows P's descendants, their execs included (read from
// /proc: the table reads the tree's execs), and nothing else.
func TestIntegrationProcTree(t *testing.T) {
	testutil.KernelConnector(t)
	testutil.Exclusive(t, testutil.ProcStorm) // waits for given events: a storm's loss would fail it
	// The grandchild, cat, lives until stdin closes: its exec is read.
	root := exec.Command("/bin/sh", "-c", `read x; /bin/sh -c "exec /bin/cat >/dev/null"; exit 0`)
	stdin, err := root.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Start(); err != nil {
		t.Fatal(err)
	}
	rootPID := uint32(root.Process.Pid)
	out := startProc(t, "-pid", fmt.Sprint(rootPID), "-tree")
	other := exec.Command("/bin/true") // not in the tree: must not show
	other.Run()
	fmt.Fprintln(stdin, "go")
	testutil.WaitFor(t, "the grandchild's exec, named", func() bool {
		for _, l := range procLines(t, out.String()) {
			if l.Event == "exec" && l.PID != rootPID && l.Process != nil && l.Process.Comm == "cat" && !l.Process.Stale {
				return true
			}
		}
		return false
	})
	stdin.Close()
	root.Wait()
	var lines []procLine
	testutil.WaitFor(t, "the root's exit", func() bool {
		lines = procLines(t, out.String())
		for _, l := range lines {
			if l.Event == "exit" && l.PID == rootPID {
				return true
			}
		}
		return false
	})
	var childFork bool
	for _, l := range lines {
		if pidOf(l) == uint32(other.Process.Pid) {
			t.Errorf("a process outside the tree shown: %+v", l)
		}
		childFork = childFork || l.Event == "fork"
	}
	if !childFork {
		t.Errorf("no fork in the tree:\n%s", out.String())
	}
}

func TestProcFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"proc", "-tree"},
		{"proc", "-enrich=false", "-comm", "x"},
		{"proc", "-comm", "("},
		{"proc", "-name", "long"},
		{"proc", "-events", "spawn"},
	} {
		if st, _, _ := runCmd(t, args...); st == 0 {
			t.Errorf("%v: status 0", args)
		}
	}
}

func TestProcFilterByProcess(t *testing.T) {
	id := strings.Repeat("ab", 32)
	in := &proc.Exec{PID: 5, TGID: 5, Process: &proc.Process{TGID: 5, Comm: "nginx", Cmdline: "nginx -g daemon off;", UID: 33, PGID: 5, SID: 5,
		Cgroup: "/system.slice/docker-" + id + ".scope", Container: id}}
	out := &proc.Exec{PID: 6, TGID: 6, Process: &proc.Process{TGID: 6, Comm: "bash", Cmdline: "bash", UID: 0, PGID: 6, SID: 6, Cgroup: "/user.slice"}}
	uid := uint32(33)
	for name, f := range map[string]*procFilter{
		"comm":      {comm: regexp.MustCompile("^ngin")},
		"cmdline":   {cmdline: regexp.MustCompile("daemon off")},
		"user":      {uid: &uid},
		"pgid":      {pgid: u32Flag{v: 5, set: true}},
		"sid":       {sid: u32Flag{v: 5, set: true}},
		"cgroup":    {cgroup: regexp.MustCompile("docker-")},
		"container": {container: id[:12]},
	} {
		if !f.match(in) || f.match(out) {
			t.Errorf("%s: match(in) %v, match(out) %v", name, f.match(in), f.match(out))
		}
		if !f.match(&proc.Lost{Count: 1}) {
			t.Errorf("%s hides a loss", name)
		}
	}
}

func TestTTYName(t *testing.T) {
	for nr, want := range map[uint32]string{0: "?", 136<<8 | 3: "pts/3", 4<<8 | 1: "tty1", 4<<8 | 64: "ttyS0", 137<<8 | 2: "pts/258"} {
		if got := ttyName(nr); got != want {
			t.Errorf("ttyName(%#x) = %q, want %q", nr, got, want)
		}
	}
}

func TestProcCounts(t *testing.T) {
	c := newProcCounts(proc.NameComm)
	sh := &proc.Process{TGID: 5, Comm: "sh"}
	for _, ev := range []proc.Event{
		&proc.Fork{Header: proc.Header{What: proc.WhatFork}, ChildPID: 5, ChildTGID: 5, Process: sh},
		&proc.Fork{Header: proc.Header{What: proc.WhatFork}, ChildPID: 6, ChildTGID: 5, Process: sh}, // a thread: clone
		&proc.Exec{Header: proc.Header{What: proc.WhatExec}, PID: 5, TGID: 5, Process: sh},
		&proc.Exit{Header: proc.Header{What: proc.WhatExit}, PID: 5, TGID: 5, Process: sh},
		&proc.Exit{Header: proc.Header{What: proc.WhatExit}, PID: 7, TGID: 7}, // unknown process
		&proc.Lost{Count: 3}, // not a process's event
	} {
		c.add(ev)
	}
	var b strings.Builder
	w := bufio.NewWriter(&b)
	c.print(w)
	w.Flush()
	want := `   Fork   Clone    Exec    Exit    Core    Comm   Ptrce     Uid     Gid     Sid   Total Process
      1       1       1       1       0       0       0       0       0       0       4 sh
      0       0       0       1       0       0       0       0       0       0       1 (unknown)
      1       1       1       2       0       0       0       0       0       0       5 Total
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// A shown line is written out even while other processes' events, all
// filtered out, keep arriving: a flood of unrelated processes runs
// throughout, and each fork of the watched process must appear while it
// does, before the next one is asked for.
func TestIntegrationProcFlushesUnderUnrelatedTraffic(t *testing.T) {
	testutil.KernelConnector(t)
	testutil.Exclusive(t, testutil.ProcStorm)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flood := exec.CommandContext(ctx, "/bin/sh", "-c", "while :; do /bin/true; done")
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	defer flood.Wait()
	defer cancel()
	target := exec.Command("/bin/sh", "-c", "while read x; do /bin/true; done")
	stdin, err := target.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer target.Wait()
	defer stdin.Close()
	pid := uint32(target.Process.Pid)
	out := startProc(t, "-pid", fmt.Sprint(pid))
	for round := 1; round <= 20; round++ {
		fmt.Fprintln(stdin, "fork")
		testutil.WaitFor(t, fmt.Sprintf("fork %d of the watched process shown during the flood", round), func() bool {
			n := 0
			for _, l := range procLines(t, out.String()) {
				if l.Event == "fork" && l.Parent == pid {
					n++
				}
			}
			return n >= round
		})
	}
}
