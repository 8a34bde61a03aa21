package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// memRequest points `cnctl request` at an in-memory network where a
// Connector serves echo at id, and returns that server's port.
func memRequest(t *testing.T, id transport.CbID) (port uint32) {
	t.Helper()
	net := memory.NewNetwork()
	sconn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := cnactor.New(cnactor.WithTransport(sconn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	if err := srv.AddCallback(id, "echo", handlers.Echo()); err != nil {
		t.Fatal(err)
	}
	requestOn(t, net)
	return srv.Port()
}

// requestOn makes `cnctl request` send from net for the rest of the test.
func requestOn(t *testing.T, net *memory.Network) {
	orig := newRequestConnector
	newRequestConnector = func() (*cnactor.Connector, error) {
		conn, err := net.Dial()
		if err != nil {
			return nil, err
		}
		return cnactor.New(cnactor.WithTransport(conn))
	}
	t.Cleanup(func() { newRequestConnector = orig })
}

var summaryRE = regexp.MustCompile(`sent=(\d+) replied=(\d+) timed_out=(\d+) failed=(\d+) retried=(\d+) rtt (p50=\S+ p90=\S+ p99=\S+ max=\S+|n/a)`)

type replyLine struct {
	From, Group, Idx, Val, Seq, Ack, Flags, Len uint32
	Data                                        string
	RTTus                                       float64 `json:"rtt_us"`
}

func TestRequestJSONAndSummary(t *testing.T) {
	id := transport.CbID{Idx: 0x700, Val: 1}
	port := memRequest(t, id)
	st, stdout, stderr := runCmd(t, "request", "-id", "0x700:1", "-port", fmt.Sprint(port), "-text", "hi",
		"-count", "40", "-concurrency", "8", "-json")
	if st != 0 {
		t.Fatalf("status %d: %s", st, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 40 {
		t.Fatalf("%d lines: %q", len(lines), stdout)
	}
	seqs := map[uint32]bool{}
	for _, l := range lines {
		var r replyLine
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if r.From != port || r.Idx != 0x700 || r.Val != 1 || r.Data != "6869" || r.Len != 2 || r.RTTus <= 0 {
			t.Fatalf("reply %+v", r)
		}
		seqs[r.Seq] = true
	}
	if len(seqs) != 40 {
		t.Fatalf("%d distinct seqs in 40 replies", len(seqs))
	}
	m := summaryRE.FindStringSubmatch(stderr)
	if m == nil || m[1] != "40" || m[2] != "40" || m[3] != "0" || m[4] != "0" || m[6] == "n/a" {
		t.Fatalf("summary: %q", stderr)
	}
}

func TestRequestText(t *testing.T) {
	id := transport.CbID{Idx: 0x701, Val: 2}
	port := memRequest(t, id)
	st, stdout, stderr := runCmd(t, "request", "-id", "0x701:2", "-port", fmt.Sprint(port), "-data", "00ff")
	if st != 0 || !regexp.MustCompile(`^from=\d+ group=0 id=1793:2 seq=\d+ ack=\d+ flags=0 len=2 data=00ff rtt=\S+\n$`).MatchString(stdout) {
		t.Fatalf("status %d, stdout %q, stderr %q", st, stdout, stderr)
	}
}

func TestRequestNoReplyFails(t *testing.T) {
	memRequest(t, transport.CbID{Idx: 0x702, Val: 1})
	// Nobody serves 0x703:1: every request times out after its retries.
	st, stdout, stderr := runCmd(t, "request", "-id", "0x703:1", "-port", "1000", "-count", "3", "-concurrency", "3",
		"-timeout", "10ms", "-retries", "2")
	if st != 1 || stdout != "" {
		t.Fatalf("status %d, stdout %q", st, stdout)
	}
	m := summaryRE.FindStringSubmatch(stderr)
	if m == nil || m[1] != "3" || m[2] != "0" || m[3] != "3" || m[5] != "6" || m[6] != "n/a" {
		t.Fatalf("summary: %q", stderr)
	}
	if !strings.Contains(stderr, "3 of 3 request(s) got no reply") || strings.Count(stderr, "no reply: ") != 3 {
		t.Fatalf("stderr %q", stderr)
	}
}

func TestRequestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"request", "-port", "1", "-text", "x"}, "-id"},
		{[]string{"request", "-id", "7:1", "-text", "x"}, "exactly one of -port and -group"},
		{[]string{"request", "-id", "7:1", "-port", "1", "-count", "0"}, "at least 1"},
		{[]string{"request", "-id", "7:1", "-port", "1", "-concurrency", "0"}, "at least 1"},
		{[]string{"request", "-id", "7:1", "-port", "1", "-concurrency", "1000000000"}, "-concurrency 1000000000: at most 4096"},
		{[]string{"request", "-id", "7:1", "-port", "1", "-retries", "-1"}, "-retries"},
		{[]string{"request", "-id", "7:1", "-port", "1", "-data", "00", "-text", "x"}, "exclusive"},
		{[]string{"request", "-id", "7:1", "-group", "33"}, "1..32"},
	}
	for _, tt := range tests {
		st, _, stderr := runCmd(t, tt.args...)
		if st != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("cnctl %v: status %d, stderr %q, want 2 and a mention of %q", tt.args, st, stderr, tt.want)
		}
	}
}

// `cnctl request` against `cnctl serve` with an echo callback, over the
// real kernel, gets every reply.
func TestIntegrationRequestAgainstServe(t *testing.T) {
	testutil.Privileged(t)
	g := testutil.Group(t)
	s := startServe(t)
	port := waitOutput(t, s.stderr, regexp.MustCompile(`serving port=(\d+)`))[1]
	s.send(fmt.Sprintf("add %d:1 echo", g))
	waitOutput(t, s.stdout, regexp.MustCompile(`ok added`))
	for _, dest := range [][]string{{"-port", port}, {"-group", fmt.Sprint(g)}} {
		args := append([]string{"request", "-id", fmt.Sprintf("%d:1", g), "-text", "ping", "-count", "200", "-concurrency", "16", "-json", "-retries", "2"}, dest...)
		st, stdout, stderr := runCmd(t, args...)
		if st != 0 {
			t.Fatalf("%v: status %d: %s", dest, st, stderr)
		}
		if n := strings.Count(stdout, `"data":"70696e67"`); n != 200 {
			t.Fatalf("%v: %d replies", dest, n)
		}
		if m := summaryRE.FindStringSubmatch(stderr); m == nil || m[2] != "200" {
			t.Fatalf("%v: summary %q", dest, stderr)
		}
		t.Logf("%v: %s", dest, strings.TrimSpace(stderr))
	}
}

// Issue 13, item 10: when the peer is gone, every send is refused at once;
// request stops on the first refusal with a clear error instead of
// spinning through -count failures.
func TestRequestPeerGoneStops(t *testing.T) {
	net := memory.NewNetwork()
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	port := peer.Port()
	peer.Close() // the peer exited
	requestOn(t, net)
	st, _, stderr := runCmd(t, "request", "-id", "0x704:1", "-port", fmt.Sprint(port), "-count", "1000000", "-concurrency", "4")
	if st != 1 || !strings.Contains(stderr, "the peer refuses requests") || !strings.Contains(stderr, "of 1000000 request(s)") {
		t.Fatalf("status %d, stderr %q", st, stderr)
	}
	m := summaryRE.FindStringSubmatch(stderr)
	if m == nil || m[4] == "0" {
		t.Fatalf("summary: %q", stderr)
	}
	if n, _ := strconv.Atoi(m[4]); n > 4 {
		t.Errorf("%d failures before stopping, want at most one per worker (4)", n)
	}
}

// Issue 13, item 10: interrupted, request reports what it started, not
// the requests it never sent as unanswered.
func TestRequestInterrupted(t *testing.T) {
	memRequest(t, transport.CbID{Idx: 0x705, Val: 1})
	wrapped := newRequestConnector
	var client atomic.Pointer[cnactor.Connector]
	newRequestConnector = func() (*cnactor.Connector, error) {
		c, err := wrapped()
		client.Store(c)
		return c, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var o, e syncBuffer
	done := make(chan int, 1)
	// Nobody answers 0x706:1: both workers wait until interrupted.
	go func() {
		done <- run(ctx, []string{"request", "-id", "0x706:1", "-port", "1000", "-count", "1000", "-concurrency", "2", "-timeout", "1h"},
			&env{stdin: strings.NewReader(""), stdout: &o, stderr: &e})
	}()
	testutil.WaitFor(t, "two requests in flight", func() bool {
		c := client.Load()
		return c != nil && c.Stats().Requester.Requests == 2
	})
	cancel()
	if st := <-done; st != 1 {
		t.Fatalf("status %d: %s", st, e.String())
	}
	if want := "interrupted: 2 of 1000 request(s) started, 0 answered, 2 cut short"; !strings.Contains(e.String(), want) {
		t.Errorf("stderr %q, want %q", e.String(), want)
	}
	if strings.Contains(e.String(), "got no reply") {
		t.Errorf("never-sent requests reported as unanswered: %q", e.String())
	}
}
