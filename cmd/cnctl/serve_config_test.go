package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// httpGet returns the status and body of a GET.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metricValue finds one sample in a /metrics text, or -1.
func metricValue(body, sample string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// exchange sends n messages to id at port from a raw socket and returns the
// replies' payloads, in order.
func exchange(t *testing.T, port uint32, id transport.CbID, n int, text string) []string {
	t.Helper()
	raw, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range n {
		if err := raw.Send(ctx, transport.Addr{Port: port}, &transport.Message{ID: id, Seq: uint32(i + 1), Data: []byte(text)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	b := transport.NewBatch(0)
	for len(got) < n {
		if err := raw.ReceiveBatch(ctx, b); err != nil {
			t.Fatalf("%d replies of %d: %v", len(got), n, err)
		}
		for _, m := range b.Messages {
			if m.From == port && m.ID == id {
				got = append(got, string(m.Data))
			}
		}
	}
	return got
}

// TestIntegrationServeConfigMetrics: `cnctl serve -config
// testdata/serve.yaml -metrics ADDR` serves an echo callback's traffic,
// and /metrics shows the counters moving.
func TestIntegrationServeConfigMetrics(t *testing.T) {
	testutil.Privileged(t)
	s := startServe(t, "-config", "testdata/serve.yaml", "-metrics", "127.0.0.1:0")
	addr := waitOutput(t, s.stderr, regexp.MustCompile(`metrics on http://([\d.:]+)/metrics`))[1]
	portText := waitOutput(t, s.stderr, regexp.MustCompile(`serving port=(\d+)`))[1]
	port, _ := strconv.ParseUint(portText, 10, 32)
	waitOutput(t, s.stderr, regexp.MustCompile(`config testdata/serve.yaml: added 100:1,100:2; supervisors added workers`))

	if code, body := httpGet(t, "http://"+addr+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	const received = `cnactor_callback_received_total{id="100:1",name="echo"}`
	_, body := httpGet(t, "http://"+addr+"/metrics")
	if v := metricValue(body, received); v != 0 {
		t.Fatalf("%s = %v before traffic:\n%s", received, v, body)
	}
	if metricValue(body, "go_goroutines") <= 0 {
		t.Error("no Go runtime metrics")
	}

	echo := transport.CbID{Idx: 100, Val: 1}
	for i, r := range exchange(t, uint32(port), echo, 5, "hello") {
		if r != "hello" {
			t.Fatalf("reply %d = %q", i, r)
		}
	}
	// The handler counts a message when Receive returns, just after its
	// reply left: wait for the last one.
	const handled = `cnactor_callback_handled_total{id="100:1",name="echo"}`
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, body = httpGet(t, "http://"+addr+"/metrics"); metricValue(body, handled) == 5 || time.Now().After(deadline) {
			break
		}
	}
	for sample, want := range map[string]float64{
		received: 5,
		`cnactor_callback_handled_total{id="100:1",name="echo"}`:                       5,
		`cnactor_callback_mailbox_capacity{id="100:1",name="echo"}`:                    1024,
		`cnactor_callback_mailbox_capacity{id="100:2",name="counter"}`:                 4096,
		`cnactor_callback_received_total{id="100:2",name="counter"}`:                   0,
		`cnactor_callback_up{id="100:1",name="echo"}`:                                  1,
		`cnactor_reader_kernel_drops_total`:                                            0,
		`cnactor_requester_rtt_seconds_count`:                                          0,
		`cnactor_callback_restarts_total{id="100:1",name="echo"}`:                      0,
		`cnactor_callback_failed_total{id="100:1",name="echo"}`:                        0,
		`cnactor_callback_dropped_total{id="100:1",name="echo"}`:                       0,
		`cnactor_callback_queued{id="100:1",name="echo"}`:                              0,
		`cnactor_callback_rejected_total{id="100:1",name="echo"}`:                      0,
		`cnactor_callback_received_total{id="4294967295:4294967295",name="connector"}`: 0,
	} {
		if v := metricValue(body, sample); v != want {
			t.Errorf("%s = %v, want %v", sample, v, want)
		}
	}
	if v := metricValue(body, "cnactor_reader_messages_total"); v < 5 {
		t.Errorf("reader messages = %v, want at least 5", v)
	}
	s.send("list")
	waitOutput(t, s.stdout, regexp.MustCompile(`100:1 name=echo handler=echo group=0 .*handled=5 `))
	if code, _ := httpGet(t, "http://"+addr+"/nothing"); code != 404 {
		t.Errorf("/nothing = %d", code)
	}
}

const reloadV1 = `
callbacks:
  - {id: "101:1", handler: echo, name: one}
  - {id: "101:2", handler: count, name: two}
`

const reloadV2 = `
callbacks:
  - {id: "101:2", handler: count, name: two}
  - {id: "101:3", handler: log, name: three, settings: {format: json, output: stderr}}
`

const reloadBad = `
callbacks:
  - {id: "101:2", handler: count, name: two}
  - id: "101:4"
    handler: sink
    mailbox:
      overflow: drop-random
`

const reloadBadSettings = `
callbacks:
  - {id: "101:3", handler: log, settings: {format: yaml}}
`

// TestIntegrationServeReload: the reload command and SIGHUP apply the
// difference; a bad file keeps the running configuration and says why.
func TestIntegrationServeReload(t *testing.T) {
	testutil.Privileged(t)
	file := filepath.Join(t.TempDir(), "serve.yaml")
	write := func(text string) {
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadV1)
	s := startServe(t, "-config", file)
	port, _ := strconv.ParseUint(waitOutput(t, s.stderr, regexp.MustCompile(`serving port=(\d+)`))[1], 10, 32)
	if r := exchange(t, uint32(port), transport.CbID{Idx: 101, Val: 1}, 1, "x"); r[0] != "x" {
		t.Fatalf("echo = %q", r)
	}

	write(reloadV2)
	s.send("reload")
	waitOutput(t, s.stdout, regexp.MustCompile(`ok reloaded: added 101:3; removed 101:1\n`))
	// 101:3's settings took effect: it logs JSON on stderr.
	raw, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := raw.Send(ctx, transport.Addr{Port: uint32(port)}, &transport.Message{ID: transport.CbID{Idx: 101, Val: 3}, Data: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, s.stderr, regexp.MustCompile(`\{"from":\d+,"group":0,"idx":101,"val":3,.*"len":3,"data":"616263"\}\n`))

	write(reloadBad)
	s.send("reload")
	waitOutput(t, s.stdout, regexp.MustCompile(regexp.QuoteMeta(
		`error: `+file+`:7: callbacks[1].mailbox.overflow: unknown policy "drop-random" (want backpressure, drop-newest or drop-oldest) (keeping the running configuration)`)))
	write(reloadBadSettings)
	s.send("reload")
	waitOutput(t, s.stdout, regexp.MustCompile(regexp.QuoteMeta(
		`error: `+file+`:3: callbacks[0].settings.format: unknown format "yaml" (want text or json) (keeping the running configuration)`)))
	s.send("list")
	waitOutput(t, s.stdout, regexp.MustCompile(`101:3 name=three handler=log `))

	// SIGHUP reloads too.
	write(reloadV1)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, s.stderr, regexp.MustCompile(`reload: added 101:1; removed 101:3\n`))
	s.send("list")
	waitOutput(t, s.stdout, regexp.MustCompile(`101:1 name=one handler=echo `))
}

func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("callbacks:\n  - id: \"7:1\"\n    handler: echo\n    colour: red\n"), 0o644)
	st, _, stderr := runCmd(t, "serve", "-config", bad)
	want := fmt.Sprintf("cnctl serve: %s:4: callbacks[0].colour: unknown field (want handler, id, mailbox, name, restart, senders, settings, shutdown_timeout, supervisor)\n", bad)
	if st != 1 || stderr != want {
		t.Errorf("status %d, stderr %q\nwant %q", st, stderr, want)
	}
	st, _, stderr = runCmd(t, "serve", "-config", filepath.Join(dir, "missing.yaml"))
	if st != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: status %d, stderr %q", st, stderr)
	}
}

func TestIntegrationServeReloadWithoutConfig(t *testing.T) {
	testutil.Privileged(t)
	s := startServe(t)
	s.send("reload")
	waitOutput(t, s.stdout, regexp.MustCompile(`error: no configuration to reload \(serve -config FILE\)`))
	s.send("help")
	waitOutput(t, s.stdout, regexp.MustCompile(`handlers: count, echo, flaky, log, proc, sink\n`))
}
