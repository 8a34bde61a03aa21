//go:build linux

package proc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/transport"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a helper process (see TestMain).
const helperEnv = "CNACTOR_PROC_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "actions":
		helperActions()
	case "listen":
		helperListen()
	case "threads":
		helperThreads()
	}
}

// helperActions changes its comm, then its uid, and exits 7. The Go
// runtime has made threads by then.
func helperActions() {
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafePtr("cnactor-comm")), 0, 0, 0)
	if err := syscall.Setresuid(65534, 65534, 65534); err != nil {
		os.Exit(99)
	}
	os.Exit(7)
}

// helperListen subscribes (as whoever runs it), prints "ready", then
// prints the pid of the first exit event of the pid named on stdin.
func helperListen() {
	m, err := proc.Listen(context.Background())
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	defer m.Close()
	fmt.Println("ready")
	var pid uint32
	fmt.Scan(&pid)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-m.Events():
			if e, ok := ev.(*proc.Exit); ok && e.PID == pid {
				fmt.Println("exit", e.PID, e.ExitCode)
				return
			}
		case <-timeout:
			fmt.Println("timeout")
			os.Exit(1)
		}
	}
}

// collector gathers a monitor's events in the background.
type collector struct {
	m *proc.Monitor
}

func listen(t *testing.T, opts ...proc.Option) *collector {
	t.Helper()
	m, err := proc.Listen(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &collector{m: m}
}

// until reads events until done returns true for one, or fails after 20 s.
func (c *collector) until(t *testing.T, what string, done func(proc.Event) bool) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-c.m.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s", what)
			}
			if done(ev) {
				return
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestIntegrationProcessLifecycle(t *testing.T) {
	testutil.Privileged(t)                    // the helper changes uid
	testutil.Exclusive(t, testutil.ProcStorm) // any loss fails it: no storm meanwhile
	c := listen(t)
	if c.m.Mode() != proc.ModeAll {
		t.Fatalf("mode %v, want all", c.m.Mode())
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A helper that changes its comm and uid and exits 7, a shell that
	// exits 3, and a sleep killed by SIGKILL.
	helper := exec.Command(exe)
	helper.Env = append(os.Environ(), helperEnv+"=actions")
	sh := exec.Command("/bin/sh", "-c", "exit 3")
	sleeper := exec.Command("/bin/sleep", "30")
	for _, cmd := range []*exec.Cmd{helper, sh, sleeper} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// Killed at once: Start returns when the vfork'ed child releases the
	// parent inside execve, before the kernel's exec event, so the sleeper
	// may die without one. Its fork and its exit by SIGKILL are certain.
	sleeper.Process.Kill()
	for _, cmd := range []*exec.Cmd{helper, sh, sleeper} {
		cmd.Wait()
	}
	if code := helper.ProcessState.ExitCode(); code != 7 {
		t.Fatalf("helper exited %d, want 7 (99: setresuid failed)", code)
	}
	hp, sp, kp := uint32(helper.Process.Pid), uint32(sh.Process.Pid), uint32(sleeper.Process.Pid)
	self := uint32(os.Getpid())

	type seen struct{ fork, exec, exit, thread, comm, uid bool }
	got := map[uint32]*seen{hp: {}, sp: {}, kp: {}}
	exitCodes := map[uint32]uint32{}
	t.Cleanup(func() {
		if t.Failed() {
			for pid, s := range got {
				t.Logf("pid %d: %+v", pid, *s)
			}
		}
	})
	c.until(t, "every expected event", func(ev proc.Event) bool {
		switch e := ev.(type) {
		case *proc.Fork:
			if s := got[e.ChildPID]; s != nil && !e.IsThread() {
				if e.ParentTGID != self {
					t.Errorf("fork of %d: parent tgid %d, want %d", e.ChildPID, e.ParentTGID, self)
				}
				s.fork = true
			}
			if e.IsThread() && e.ChildTGID == hp {
				got[hp].thread = true
			}
		case *proc.Exec:
			if s := got[e.PID]; s != nil {
				s.exec = true
			}
		case *proc.Comm:
			if e.TGID == hp && e.Comm == "cnactor-comm" {
				got[hp].comm = true
			}
		case *proc.UID:
			if e.TGID == hp && e.RUID == 65534 && e.EUID == 65534 {
				got[hp].uid = true
			}
		case *proc.Exit:
			if s := got[e.PID]; s != nil && e.PID == e.TGID {
				s.exit = true
				exitCodes[e.PID] = e.ExitCode
				if e.ParentTGID != self {
					t.Errorf("exit of %d: parent tgid %d, want %d", e.PID, e.ParentTGID, self)
				}
			}
		case *proc.Lost:
			t.Fatalf("lost %d events (%s): the lifecycle cannot be checked", e.Count, e.Source)
		}
		h, s, k := got[hp], got[sp], got[kp]
		return h.fork && h.exec && h.exit && h.thread && h.comm && h.uid && s.fork && s.exec && s.exit && k.fork && k.exit
	})
	if exitCodes[hp] != 7<<8 || exitCodes[sp] != 3<<8 || exitCodes[kp] != uint32(syscall.SIGKILL) {
		t.Errorf("exit codes: helper %#x, sh %#x, killed %#x", exitCodes[hp], exitCodes[sp], exitCodes[kp])
	}
}

func TestIntegrationFilteredSubscription(t *testing.T) {
	testutil.KernelConnector(t)
	c := listen(t, proc.WithEvents(proc.WhatExec|proc.WhatExit))
	if c.m.Mode() != proc.ModeKernelFilter && c.m.Mode() != proc.ModeUserspaceFilter {
		t.Fatalf("mode %v", c.m.Mode())
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	var sawExec bool
	c.until(t, "the exec and exit", func(ev proc.Event) bool {
		switch e := ev.(type) {
		case *proc.Exec:
			sawExec = sawExec || e.PID == pid
		case *proc.Exit:
			return sawExec && e.PID == pid
		case *proc.Lost:
		default:
			t.Fatalf("filtered subscription delivered %T", ev)
		}
		return false
	})
}

func TestIntegrationTwoSubscribers(t *testing.T) {
	testutil.KernelConnector(t)
	a, b := listen(t), listen(t)
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	for _, c := range []*collector{a, b} {
		var fork, exec bool
		c.until(t, "fork, exec and exit on both", func(ev proc.Event) bool {
			switch e := ev.(type) {
			case *proc.Fork:
				fork = fork || e.ChildPID == pid
			case *proc.Exec:
				exec = exec || e.PID == pid
			case *proc.Exit:
				return fork && exec && e.PID == pid
			}
			return false
		})
	}
	// Closing one leaves the other listening (IGNORE affects one socket).
	a.m.Close()
	cmd = exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid = uint32(cmd.Process.Pid)
	b.until(t, "the next exit after the other subscriber left", func(ev proc.Event) bool {
		e, ok := ev.(*proc.Exit)
		return ok && e.PID == pid
	})
}

// TestIntegrationUnprivileged runs a subscriber as nobody.
func TestIntegrationUnprivileged(t *testing.T) {
	testutil.Privileged(t) // to switch credentials
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// nobody must be able to run the test binary: copy it somewhere open.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	bin := filepath.Join(dir, "helper")
	copyFile(t, exe, bin)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), helperEnv+"=listen")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("unprivileged subscriber: %q", out.Text())
	}
	child := exec.Command("/bin/sh", "-c", "exit 5")
	if err := child.Run(); err == nil {
		t.Fatal("child did not fail")
	}
	fmt.Fprintln(stdin, child.Process.Pid)
	if !out.Scan() {
		t.Fatal("no answer from the unprivileged subscriber")
	}
	if want := fmt.Sprintf("exit %d %d", child.Process.Pid, 5<<8); out.Text() != want {
		t.Fatalf("unprivileged subscriber saw %q, want %q", out.Text(), want)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
}

// gatedConn holds receives back until the test opens the gate, so that the
// socket's queue overflows for real.
type gatedConn struct {
	*transport.NetlinkConn
	gate chan struct{}
}

func (g *gatedConn) ReceiveBatch(ctx context.Context, b *transport.Batch) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.NetlinkConn.ReceiveBatch(ctx, b)
}

// ReceiveEach waits at the gate too: the embedded NetlinkConn's own loop
// would otherwise be used, gate or not.
func (g *gatedConn) ReceiveEach(ctx context.Context, b *transport.Batch, deliver func(*transport.Batch) *transport.Batch, idle func()) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.NetlinkConn.ReceiveEach(ctx, b, deliver, idle)
}

func TestIntegrationLossMatchesDropCounter(t *testing.T) {
	testutil.KernelConnector(t)
	testutil.Exclusive(t, testutil.ProcStorm)
	nc, err := transport.Dial(transport.WithReadBuffer(1)) // the kernel's minimum
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedConn{NetlinkConn: nc, gate: make(chan struct{})}
	c, err := cnactor.New(cnactor.WithTransport(g))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	m, err := proc.Listen(context.Background(), proc.WithConnector(c), proc.WithEnrichment(false))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// While nothing reads, a burst overflows the tiny queue.
	if err := exec.Command("/bin/sh", "-c", "for i in $(seq 200); do /bin/true; done").Run(); err != nil {
		t.Fatal(err)
	}
	drops, err := nc.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if drops == 0 {
		t.Fatal("no drops provoked")
	}
	close(g.gate)
	// A marker process tells us when everything before it has been read;
	// until the queue has drained, a marker's own events may be dropped
	// too (and counted), so markers are sent until one arrives.
	markers := map[uint32]bool{}
	marker := func() {
		cmd := exec.Command("/bin/true")
		cmd.Run()
		markers[uint32(cmd.Process.Pid)] = true
	}
	marker()
	var lost uint64
	var sources []string
	timeout := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-m.Events():
			switch e := ev.(type) {
			case *proc.Lost:
				lost += e.Count
				sources = append(sources, e.Source)
			case *proc.Exit:
				done = markers[e.PID]
			}
		case <-time.After(100 * time.Millisecond):
			marker()
		case <-timeout:
			t.Fatal("no marker exit arrived")
		}
	}
	final, _ := nc.Drops()
	if lost != final {
		t.Fatalf("reported %d lost events (%v), drop counter %d", lost, sources, final)
	}
	t.Logf("drops %d, reported %d via %v", final, lost, sources)
}

// TestIntegrationBurst: 3,000 short-lived processes with the default
// settings; every fork, exec and exit of them arrives.
func TestIntegrationBurst(t *testing.T) {
	testutil.KernelConnector(t)
	testutil.Exclusive(t, testutil.ProcStorm)
	n := 3000
	if testutil.RaceEnabled {
		n = 500
	}
	c := listen(t)
	// A loop of builtins: the shell forks only for /bin/true.
	sh := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt "+strconv.Itoa(n)+" ]; do /bin/true; i=$((i+1)); done")
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	shPID := uint32(sh.Process.Pid)
	children := map[uint32]bool{}
	var forks, execs, exits, lost int
	start := time.Now()
	c.until(t, "the burst", func(ev proc.Event) bool {
		switch e := ev.(type) {
		case *proc.Fork:
			if e.ParentTGID == shPID && !e.IsThread() {
				children[e.ChildPID] = true
				forks++
			}
		case *proc.Exec:
			if children[e.PID] {
				execs++
			}
		case *proc.Exit:
			if children[e.PID] {
				exits++
			}
			return e.PID == shPID
		case *proc.Lost:
			lost += int(e.Count)
		}
		return false
	})
	sh.Wait()
	t.Logf("%d processes in %v: forks %d, execs %d, exits %d, lost %d", n, time.Since(start), forks, execs, exits, lost)
	if forks != n || execs != n || exits != n || lost != 0 {
		t.Fatalf("forks %d, execs %d, exits %d, lost %d; want %d each and no loss", forks, execs, exits, lost, n)
	}
}

// TestIntegrationEnrichment: exec and exit events say what ran, and for
// how long.
func TestIntegrationEnrichment(t *testing.T) {
	testutil.KernelConnector(t)
	c := listen(t)
	cmd := exec.Command("/bin/sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	c.until(t, "the exec", func(ev proc.Event) bool {
		e, ok := ev.(*proc.Exec)
		if !ok || e.PID != pid {
			return false
		}
		if e.Process == nil || e.Process.Comm != "sleep" || e.Process.Cmdline != "/bin/sleep 30" || !strings.HasSuffix(e.Process.Exe, "sleep") {
			t.Errorf("exec enrichment: %+v", e.Process)
		}
		if e.Process != nil && e.Process.Cgroup != ownCgroup(t) {
			t.Errorf("cgroup %q, want the test's %q", e.Process.Cgroup, ownCgroup(t))
		}
		return true
	})
	time.Sleep(20 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	c.until(t, "the exit", func(ev proc.Event) bool {
		e, ok := ev.(*proc.Exit)
		if !ok || e.PID != pid {
			return false
		}
		if e.Process == nil || e.Process.Cmdline != "/bin/sleep 30" || e.Process.Duration < 20*time.Millisecond || e.Process.Duration > 10*time.Second {
			t.Errorf("exit enrichment: %+v", e.Process)
		}
		return true
	})
}

// TestIntegrationSecondListenKeepsTheFirst: a second Listen on the same
// connector fails without taking the first monitor's callback with it.
func TestIntegrationSecondListenKeepsTheFirst(t *testing.T) {
	testutil.KernelConnector(t)
	first := listen(t)
	if _, err := proc.Listen(context.Background(), proc.WithConnector(first.m.Connector())); err == nil {
		t.Fatal("second Listen on one connector succeeded")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	first.until(t, "the first monitor's next exit", func(ev proc.Event) bool {
		e, ok := ev.(*proc.Exit)
		return ok && e.PID == pid
	})
}

// ownCgroup is this process's cgroup: the unified hierarchy's path, else
// the first controller's (what a child starts in).
func ownCgroup(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	first := ""
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			return parts[2]
		}
		if first == "" {
			first = parts[2]
		}
	}
	return first
}
