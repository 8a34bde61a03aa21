package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/proc"
)

func TestParseExports(t *testing.T) {
	exps, err := parseExports("1:1, 0x10:2")
	if err != nil {
		t.Fatal(err)
	}
	if len(exps) != 2 || exps[0].ID != proc.ID() || !exps[0].ReadOnly || exps[1].ID.Idx != 16 || exps[1].ID.Val != 2 || exps[1].ReadOnly {
		t.Fatalf("exports %+v", exps)
	}
	for _, bad := range []string{"", "1", "1:x", ","} {
		if _, err := parseExports(bad); err == nil {
			t.Errorf("-export %q accepted", bad)
		}
	}
}

// A loopback subscriber cannot be dialled back by a node elsewhere.
func TestProcRemoteNeedsReachableListen(t *testing.T) {
	st, _, stderr := runCmd(t, "proc", "-remote", "web=192.0.2.1:7390", "-duration", "1s")
	if st != 1 || !strings.Contains(stderr, "not on this host") {
		t.Fatalf("status %d, stderr %q", st, stderr)
	}
	st, _, stderr = runCmd(t, "proc", "-remote", "a=127.0.0.1:1,a=127.0.0.2:1")
	if st != 1 || !strings.Contains(stderr, "twice") {
		t.Fatalf("status %d, stderr %q", st, stderr)
	}
}

// cnctlBinary builds cnctl into the test's directory, to run it as a
// process.
func cnctlBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cnctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

var nodeListeningRE = regexp.MustCompile(`node listening addr=(\S+)`)

// startServeNode runs `cnctl serve -export 1:1 -listen LISTEN` and returns
// the node's address.
func startServeNode(t *testing.T, bin, listen string) string {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-export", "1:1", "-listen", listen)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	var lines []string
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
			if m := nodeListeningRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("cnctl serve did not exit")
			cmd.Process.Kill()
			<-done
		}
		cmd.Wait()
		mu.Lock()
		defer mu.Unlock()
		t.Logf("serve %s: %q", listen, lines)
	})
	select {
	case a := <-addr:
		return a
	case <-done:
	case <-time.After(10 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	t.Fatalf("cnctl serve -export printed no address: %q", lines)
	return ""
}

// `cnctl proc -remote` over three `cnctl serve -export 1:1` nodes on this
// machine: every process spawned shows up once per node, labelled with its
// host, in JSON (a "host" key) and in text (a Host column).
func TestIntegrationProcRemote(t *testing.T) {
	testutil.KernelConnector(t)
	testutil.Exclusive(t, testutil.ProcStorm) // a loss fails it: no storm meanwhile
	bin := cnctlBinary(t)
	var list []string
	for i := 1; i <= 3; i++ {
		list = append(list, fmt.Sprintf("n%d=%s", i, startServeNode(t, bin, fmt.Sprintf("127.0.0.%d:0", i))))
	}
	remotes := strings.Join(list, ",")

	// JSON, in this process.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr, done := started(t, ctx, "proc", "-remote", remotes, "-json", "-events", "exec,exit")
	waitFor(t, stderr, "listening to process events of 3 hosts")
	pids := spawnUntilSeen(t, stdout, 5)
	cancel()
	if st := <-done; st != 0 {
		t.Fatalf("status %d: %s", st, stderr.String())
	}
	count := map[string]int{}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	// Closing reports what was still on its way from the nodes as lost:
	// after the last line about the test's processes, that is allowed.
	last := 0
	for i, l := range lines {
		var ev struct {
			PID uint32 `json:"pid"`
		}
		if json.Unmarshal([]byte(l), &ev) == nil && pids[ev.PID] {
			last = i
		}
	}
	for i, l := range lines {
		var ev struct {
			Host  string `json:"host"`
			Event string `json:"event"`
			PID   uint32 `json:"pid"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if ev.Event == "lost" {
			if i < last {
				t.Errorf("lost events: %s", l)
			} else {
				t.Logf("lost at close: %s", l)
			}
			continue
		}
		if ev.Event != "exec" && ev.Event != "exit" && ev.Event != "ack" {
			t.Errorf("-events exec,exit let %s through", l)
		}
		if pids[ev.PID] {
			count[fmt.Sprintf("%s %s %d", ev.Host, ev.Event, ev.PID)]++
		}
	}
	for pid := range pids {
		for _, host := range []string{"n1", "n2", "n3"} {
			for _, what := range []string{"exec", "exit"} {
				if n := count[fmt.Sprintf("%s %s %d", host, what, pid)]; n != 1 {
					t.Errorf("%s: %d %s events of %d", host, n, what, pid)
				}
			}
		}
	}
	if !strings.Contains(stderr.String(), "host=n1 events=") {
		t.Errorf("no final counts on stderr: %q", stderr.String())
	}

	// Text, as a process.
	cmd := exec.Command(bin, "proc", "-remote", remotes, "-duration", "3s")
	var out, errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &errOut, "listening to process events of 3 hosts")
	pids = spawnUntilSeen(t, &out, 2)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	text := out.String()
	if !strings.HasPrefix(text, "Host ") {
		t.Fatalf("no Host column: %q", text[:min(len(text), 200)])
	}
	for pid := range pids {
		for _, host := range []string{"n1", "n2", "n3"} {
			re := regexp.MustCompile(`(?m)^` + host + ` +\S+ +exec +` + fmt.Sprint(pid) + ` `)
			if len(re.FindAllString(text, -1)) != 1 {
				t.Errorf("%s: exec of %d not shown once in %q", host, pid, text)
			}
		}
	}
}

// waitFor waits until b contains s.
func waitFor(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", s, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// spawnUntilSeen runs /bin/true until one run shows in out (the nodes
// subscribe without waiting for the kernel), then n more, and waits until
// the exit of the last appears from every host; it returns the n pids.
func spawnUntilSeen(t *testing.T, out *syncBuffer, n int) map[uint32]bool {
	t.Helper()
	run := func() uint32 {
		cmd := exec.Command("/bin/true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		return uint32(cmd.Process.Pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pid := run()
		time.Sleep(100 * time.Millisecond)
		if strings.Count(out.String(), fmt.Sprint(pid)) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no events: %q", out.String())
		}
	}
	pids := map[uint32]bool{}
	var last uint32
	for range n {
		last = run()
		pids[last] = true
	}
	exitRE := regexp.MustCompile(`exit"?,?.*\b` + fmt.Sprint(last) + `\b|\bexit +` + fmt.Sprint(last) + `\b`)
	for len(exitRE.FindAllString(out.String(), -1)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the exit of %d did not arrive from every host: %q", last, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for duplicates to show
	return pids
}
