package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// serving starts `cnctl serve` in-process with a pipe for its stdin.
type serving struct {
	stdin          *io.PipeWriter
	stdout, stderr *syncBuffer
	done           chan int
	cancel         context.CancelFunc
}

func startServe(t *testing.T, args ...string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &serving{stdin: pw, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan int, 1), cancel: cancel}
	go func() {
		s.done <- run(ctx, append([]string{"serve"}, args...), &env{stdin: pr, stdout: s.stdout, stderr: s.stderr})
	}()
	t.Cleanup(func() {
		cancel()
		pw.Close()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not exit")
		}
	})
	waitOutput(t, s.stderr, regexp.MustCompile(`serving port=\d+`))
	return s
}

func (s *serving) send(line string) { fmt.Fprintln(s.stdin, line) }

func waitOutput(t *testing.T, b *syncBuffer, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(b.String()); m != nil {
			return m
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %q in output %q", re, b.String())
	return nil
}

func TestIntegrationServeLogAndEcho(t *testing.T) {
	testutil.Privileged(t)
	g := testutil.Group(t)
	s := startServe(t)
	s.send(fmt.Sprintf("add %d:1 log", g))
	s.send(fmt.Sprintf("add %d:2 echo myecho", g))
	waitOutput(t, s.stdout, regexp.MustCompile(`ok added \d+:2 myecho`))

	// What `cnctl send` sends to the group is printed by the log handler.
	if st, _, e := runCmd(t, "send", "-id", fmt.Sprintf("%d:1", g), "-group", fmt.Sprint(g), "-text", "hi"); st != 0 {
		t.Fatalf("send: %s", e)
	}
	waitOutput(t, s.stdout, regexp.MustCompile(fmt.Sprintf(`group=%d id=%d:1 .*text="hi"`, g, g)))

	// A raw socket that sends to the group gets the echo on its own port.
	raw, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := transport.CbID{Idx: g, Val: 2}
	if err := raw.Send(ctx, transport.Addr{Group: g}, &transport.Message{ID: id, Seq: 42, Ack: 7, Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	b := transport.NewBatch(4)
	for {
		if err := raw.ReceiveBatch(ctx, b); err != nil {
			t.Fatalf("no echo: %v", err)
		}
		if len(b.Messages) > 0 {
			break
		}
	}
	r := b.Messages[0]
	if r.ID != id || r.Seq != 42 || r.Ack != 8 || string(r.Data) != "ping" || r.Group != 0 {
		t.Fatalf("echo = %+v", r)
	}

	// The handler counts the message when Receive returns, which may be
	// just after its reply arrived: poll the listing.
	re := regexp.MustCompile(fmt.Sprintf(`%d:2 name=myecho handler=echo group=%d .*handled=1 `, g, g))
	for deadline := time.Now().Add(5 * time.Second); !re.MatchString(s.stdout.String()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("list never showed the echo handled:\n%s", s.stdout.String())
		}
		s.send("list")
	}
	s.send(fmt.Sprintf("del %d:1", g))
	waitOutput(t, s.stdout, regexp.MustCompile(`ok deleted`))
}

func TestIntegrationServeBadCommands(t *testing.T) {
	testutil.Privileged(t)
	s := startServe(t)
	for _, c := range []string{"bogus", "add", "add 7 echo", "add 7:1 nosuch", "del 9:9", "list extra", "del 4294967295:4294967295"} {
		s.send(c)
	}
	s.send("help")
	waitOutput(t, s.stdout, regexp.MustCompile(`commands: add`))
	if n := strings.Count(s.stdout.String(), "error: "); n != 7 {
		t.Fatalf("%d error lines, want 7:\n%s", n, s.stdout.String())
	}
	select {
	case st := <-s.done:
		t.Fatalf("serve exited (%d) on bad commands", st)
	default:
	}
}

// TestIntegrationServeFlaky: with the default supervision spec, the flaky
// handler answers all 90 good messages of 100 in which every 10th asks it
// to panic, within a few seconds.
func TestIntegrationServeFlaky(t *testing.T) {
	testutil.Privileged(t)
	s := startServe(t)
	port := waitOutput(t, s.stderr, regexp.MustCompile(`serving port=(\d+)`))[1]
	s.send("add 77:1 flaky")
	waitOutput(t, s.stdout, regexp.MustCompile(`ok added 77:1 flaky`))
	raw, err := transport.Dial(transport.WithReadBuffer(1 << 20))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var p uint32
	fmt.Sscan(port, &p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	for i := 0; i < 100; i++ {
		data := fmt.Sprintf("good %d", i)
		if i%10 == 9 {
			data = "panic " + data
		}
		if err := raw.Send(ctx, transport.Addr{Port: p}, &transport.Message{ID: transport.CbID{Idx: 77, Val: 1}, Seq: uint32(i), Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	b := transport.NewBatch(0)
	seen := map[uint32]bool{}
	for len(seen) < 90 {
		if err := raw.ReceiveBatch(ctx, b); err != nil {
			t.Fatalf("%d replies after %v: %v", len(seen), time.Since(start), err)
		}
		for _, m := range b.Messages {
			if m.Seq%10 == 9 {
				t.Fatalf("reply to panicking message %d", m.Seq)
			}
			seen[m.Seq] = true
		}
	}
	t.Logf("90 replies in %v", time.Since(start))
	// The last message panics after the last reply: poll the listing.
	re := regexp.MustCompile(`77:1 name=flaky .*failed=10 .*restarts=10 .*state=running`)
	for deadline := time.Now().Add(5 * time.Second); !re.MatchString(s.stdout.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("list never showed 10 failures and restarts:\n%s", s.stdout.String())
		}
		s.send("list")
		time.Sleep(50 * time.Millisecond)
	}
}

// Issue 13, item 4: a stdin line over the reader's limit used to stop the
// command channel for good. It is refused with an error, counted, and the
// next commands are answered.
func TestIntegrationServeLongLine(t *testing.T) {
	testutil.Privileged(t)
	s := startServe(t)
	s.send("add " + strings.Repeat("x", 70<<10))
	s.send("# " + strings.Repeat("y", maxCommandLine+1))
	s.send("help")
	waitOutput(t, s.stdout, regexp.MustCompile(`commands: add`))
	out := s.stdout.String()
	for _, want := range []string{
		fmt.Sprintf("error: command line over %d bytes ignored (1 so far)\n", maxCommandLine),
		fmt.Sprintf("error: command line over %d bytes ignored (2 so far)\n", maxCommandLine),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in output %q", want, out)
		}
	}
	// A line at the limit is still a command.
	s.send("list" + strings.Repeat(" ", maxCommandLine-4))
	waitOutput(t, s.stdout, regexp.MustCompile(`reader datagrams=`))
}

// Issue 13, item 2: `add 1:1 proc` without senders= takes the proc
// handler's declared policy (kernel only), so a user process cannot forge
// an exit; senders= sets another.
func TestIntegrationServeProcSenders(t *testing.T) {
	testutil.Privileged(t)
	s := startServe(t)
	port := waitOutput(t, s.stderr, regexp.MustCompile(`serving port=(\d+)`))[1]
	s.send("add 1:1 proc")
	waitOutput(t, s.stdout, regexp.MustCompile(`ok added 1:1 proc senders=kernel\n`))
	g := testutil.Group(t)
	s.send(fmt.Sprintf("add %d:1 echo e1 senders=kernel", g))
	s.send(fmt.Sprintf("add %d:2 echo senders=ports:0,7", g))
	s.send(fmt.Sprintf("add %d:3 echo senders=everyone", g))
	waitOutput(t, s.stdout, regexp.MustCompile(fmt.Sprintf(`ok added %d:2 echo senders=ports=0,7\n`, g)))
	waitOutput(t, s.stdout, regexp.MustCompile(`error: senders=everyone: want anyone`))
	if !strings.Contains(s.stdout.String(), fmt.Sprintf("ok added %d:1 e1 senders=kernel\n", g)) {
		t.Errorf("senders=kernel not applied:\n%s", s.stdout.String())
	}

	// A forged exit (what 0x80000000, pid 3999999, signal 9), unicast from
	// a user socket to serve: refused, counted, never printed.
	raw, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ev := make([]byte, 40)
	binary.NativeEndian.PutUint32(ev[0:], 0x80000000)
	for i, v := range []uint32{3999999, 3999999, 137, 17, 1, 1} {
		binary.NativeEndian.PutUint32(ev[16+4*i:], v)
	}
	var p uint32
	fmt.Sscan(port, &p)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := raw.Send(ctx, transport.Addr{Port: p}, &transport.Message{ID: transport.CbID{Idx: 1, Val: 1}, Data: ev}); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`1:1 name=proc handler=proc group=1 senders=kernel .*rejected=1 `)
	for deadline := time.Now().Add(5 * time.Second); !re.MatchString(s.stdout.String()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the forged event was never counted as rejected:\n%s", s.stdout.String())
		}
		s.send("list")
	}
	if regexp.MustCompile(`(?m)(^|\s)3999999(\s|$)`).MatchString(s.stdout.String()) {
		t.Errorf("the forged exit was printed:\n%s", s.stdout.String())
	}
}

// Issue 13, item 13: serve prints its final counters when it exits.
func TestIntegrationServeFinalCounts(t *testing.T) {
	testutil.Privileged(t)
	s := startServe(t)
	g := testutil.Group(t)
	s.send(fmt.Sprintf("add %d:1 sink", g))
	waitOutput(t, s.stdout, regexp.MustCompile(`ok added`))
	s.cancel()
	select {
	case st := <-s.done:
		s.done <- st // for the cleanup
		if st != 0 {
			t.Fatalf("serve exited %d: %s", st, s.stderr.String())
		}
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("serve did not exit")
	}
	waitOutput(t, s.stderr, regexp.MustCompile(fmt.Sprintf(`final counts:\n(.*\n)*%d:1 name=sink handler=sink .*received=0 `, g)))
	waitOutput(t, s.stderr, regexp.MustCompile(`final counts:\n(.*\n)*reader datagrams=\d+.*\ncontrol applied=0 malformed=0 rejected=0 subscriptions=0 callbacks_refused=0\n`))
}
