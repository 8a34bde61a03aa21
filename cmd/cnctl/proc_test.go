package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/cnactor/cnactor/internal/testutil"
)

// procLine is what these tests read of cnctl proc -json lines.
type procLine struct {
	Event   string `json:"event"`
	PID     uint32 `json:"pid"`
	Child   uint32 `json:"child_pid"`
	Code    *int   `json:"code"`
	Signal  *int   `json:"signal"`
	Process *struct {
		Comm string `json:"comm"`
		TGID uint32 `json:"tgid"`
	} `json:"process"`
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
	if l := got[failPID]; l.Code == nil || *l.Code != 3 || l.Process == nil || l.Process.Comm != "sh" {
		t.Errorf("exit 3: %+v", l)
	}
	if l := got[killedPID]; l.Signal == nil || *l.Signal != 9 || l.Process == nil || l.Process.Comm != "sh" {
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

// -pid P -tree follows P's descendants, their execs included, and nothing
// else.
func TestIntegrationProcTree(t *testing.T) {
	testutil.KernelConnector(t)
	root := exec.Command("/bin/sh", "-c", `read x; /bin/sh -c "/bin/ls / >/dev/null"; exit 0`)
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
	var lsExec, childFork bool
	for _, l := range lines {
		if pidOf(l) == uint32(other.Process.Pid) {
			t.Errorf("a process outside the tree shown: %+v", l)
		}
		if l.Event == "exec" && l.Process != nil && l.Process.Comm == "ls" {
			lsExec = true // a grandchild's exec
		}
		if l.Event == "fork" {
			childFork = true
		}
	}
	if !lsExec || !childFork {
		t.Errorf("tree: ls exec %v, fork %v in\n%s", lsExec, childFork, out.String())
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
