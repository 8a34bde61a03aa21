package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor/benchmarks"
	"github.com/cnactor/cnactor/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestMain lets this test binary serve as cnctl bench's sender process, as
// cnctl itself does (see benchmarks.MaybeServeSender).
func TestMain(m *testing.M) {
	benchmarks.MaybeServeSender()
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe for a command writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// started runs a cnctl command in the background and returns its outputs
// and a channel with its exit status.
func started(t *testing.T, ctx context.Context, args ...string) (stdout, stderr *syncBuffer, done chan int) {
	t.Helper()
	stdout, stderr, done = &syncBuffer{}, &syncBuffer{}, make(chan int, 1)
	go func() { done <- run(ctx, args, &env{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr}) }()
	return stdout, stderr, done
}

// runCmd runs a cnctl command to completion.
func runCmd(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	status = run(context.Background(), args, &env{stdin: strings.NewReader(""), stdout: &o, stderr: &e})
	return status, o.String(), e.String()
}

var listeningRE = regexp.MustCompile(`listening port=(\d+) groups=([\d,]*)`)

func waitListening(t *testing.T, stderr *syncBuffer) (port string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m := listeningRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("listen never printed its port; stderr: %q", stderr.String())
	return ""
}

func TestIntegrationListenSendJSON(t *testing.T) {
	testutil.Privileged(t)
	group := fmt.Sprint(testutil.Group(t))
	stdout, stderr, done := started(t, context.Background(), "listen", "-group", group, "-json", "-count", "2", "-timeout", "10s")
	port := waitListening(t, stderr)
	if !strings.Contains(stderr.String(), "groups="+group) {
		t.Fatalf("stderr %q does not name group %s", stderr.String(), group)
	}
	if st, _, e := runCmd(t, "send", "-id", "7:1", "-group", group, "-text", "hi"); st != 0 {
		t.Fatalf("send to group: status %d: %s", st, e)
	}
	if st, _, e := runCmd(t, "send", "-id", "0x7:0x2", "-seq", "0x10", "-ack", "9", "-flags", "3", "-port", port, "-data", "00ff"); st != 0 {
		t.Fatalf("send to port: status %d: %s", st, e)
	}
	if st := <-done; st != 0 {
		t.Fatalf("listen exited %d; stderr %q", st, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), stdout.String())
	}
	type msg struct {
		From, Group, Idx, Val, Seq, Ack, Flags, Len uint32
		Data                                        string
	}
	var got []msg
	for _, l := range lines {
		var m msg
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, m)
	}
	g := got[0]
	if fmt.Sprint(g.Group) != group || g.Idx != 7 || g.Val != 1 || g.Len != 2 || g.Data != "6869" || g.From == 0 {
		t.Errorf("group message = %+v", g)
	}
	u := got[1]
	if u.Group != 0 || u.Idx != 7 || u.Val != 2 || u.Seq != 16 || u.Ack != 9 || u.Flags != 3 || u.Data != "00ff" {
		t.Errorf("unicast message = %+v", u)
	}
}

func TestIntegrationListenReportsMalformedAndGoesOn(t *testing.T) {
	testutil.Privileged(t)
	stdout, stderr, done := started(t, context.Background(), "listen", "-count", "1", "-timeout", "10s")
	port := waitListening(t, stderr)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var p uint32
	fmt.Sscan(port, &p)
	if err := unix.Sendto(fd, []byte("short"), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: p}); err != nil {
		t.Fatal(err)
	}
	if st, _, e := runCmd(t, "send", "-id", "3:3", "-port", port, "-text", "after"); st != 0 {
		t.Fatalf("send: %d %s", st, e)
	}
	if st := <-done; st != 0 {
		t.Fatalf("listen exited %d: %s", st, stderr.String())
	}
	if !strings.Contains(stderr.String(), "malformed datagram") {
		t.Errorf("stderr %q does not report the malformed datagram", stderr.String())
	}
	if !strings.Contains(stdout.String(), `text="after"`) {
		t.Errorf("stdout %q lacks the message sent after the malformed one", stdout.String())
	}
}

func TestIntegrationListenTimeout(t *testing.T) {
	testutil.KernelConnector(t)
	st, _, stderr := runCmd(t, "listen", "-timeout", "50ms")
	if st == 0 || !strings.Contains(stderr, "timed out") {
		t.Fatalf("status %d, stderr %q", st, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "Usage:"},
		{[]string{"frob"}, "unknown command"},
		{[]string{"send", "-group", "7", "-text", "x"}, "-id"},
		{[]string{"send", "-id", "7:1", "-text", "x"}, "exactly one of -port and -group"},
		{[]string{"send", "-id", "7:1", "-port", "0", "-group", "7"}, "exactly one"},
		{[]string{"send", "-id", "7", "-port", "0"}, "IDX:VAL"},
		{[]string{"send", "-id", "7:1", "-port", "0", "-data", "zz"}, "-data"},
		{[]string{"send", "-id", "7:1", "-port", "0", "-data", "00", "-text", "x"}, "exclusive"},
		{[]string{"send", "-id", "7:1", "-group", "33"}, "1..32"},
		{[]string{"send", "-id", "7:1", "-port", "0", "-flags", "0x10000"}, "16 bits"},
		{[]string{"listen", "-group", "0"}, "1..32"},
		{[]string{"listen", "extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		st, _, stderr := runCmd(t, tt.args...)
		if st != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("cnctl %v: status %d, stderr %q, want 2 and a mention of %q", tt.args, st, stderr, tt.want)
		}
	}
}
