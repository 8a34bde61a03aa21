package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// syncBuffer collects what handlers print.
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

type api struct {
	t      *testing.T
	base   string
	client *http.Client
}

func (a *api) do(method, path, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (a *api) list() listJSON {
	a.t.Helper()
	code, body := a.do("GET", "/callbacks", "")
	if code != 200 {
		a.t.Fatalf("GET /callbacks = %d %s", code, body)
	}
	var l listJSON
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		a.t.Fatalf("GET /callbacks: %v in %s", err, body)
	}
	return l
}

func (l listJSON) find(id string) (callbackJSON, bool) {
	for _, cb := range l.Callbacks {
		if cb.ID == id {
			return cb, true
		}
	}
	return callbackJSON{}, false
}

// TestIntegrationEmbed drives the service with a real HTTP client against
// the real kernel: callbacks added and removed by name at runtime, their
// traffic visible in the listing and in /metrics, and a clean shutdown.
func TestIntegrationEmbed(t *testing.T) {
	testutil.Privileged(t)
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type where struct {
		api  net.Addr
		port uint32
	}
	readyc := make(chan where, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, "127.0.0.1:0", handlers.Env{Stdout: out, Stderr: out}, func(a net.Addr, p uint32) { readyc <- where{a, p} })
	}()
	var w where
	select {
	case w = <-readyc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the service did not start")
	}
	a := &api{t: t, base: "http://" + w.api.String(), client: &http.Client{Timeout: 5 * time.Second}}

	if code, body := a.do("GET", "/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{`{"id":"102:1","name":"x","handler":"echo"}`, 201, `{"handler":"echo","id":"102:1","name":"x"}`},
		{`{"id":"102:2","name":"printer","handler":"log","settings":{"format":"json"},"mailbox":{"size":64}}`, 201, `"id":"102:2"`},
		{`{"id":"102:1","handler":"sink"}`, 409, `already registered`},
		{`{"id":"102:3","handler":"log","settings":{"format":"xml"}}`, 400, `{"error":"settings.format: unknown format \"xml\" (want text or json)"}`},
		{`{"id":"102:3","handler":"nosuch"}`, 400, `{"error":"handler: unknown handler \"nosuch\" (have count, echo, flaky, log, sink)"}`},
		{`{"id":"102:3","handler":"echo","colour":"red"}`, 400, `colour: unknown field`},
		{`{"id":"102:3","handler":"echo","supervisor":"nobody"}`, 400, `no such supervisor`},
		{`{"id":"102","handler":"echo"}`, 400, `id: invalid id \"102\"`},
		{`not json at all {`, 400, `"error"`},
	} {
		code, body := a.do("POST", "/callbacks", c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("POST %s = %d %s, want %d %s", c.body, code, body, c.code, c.want)
		}
	}

	l := a.list()
	// The two added; the connector core's own callback is not listed.
	if l.Port != w.port || len(l.Callbacks) != 2 {
		t.Fatalf("list = %+v", l)
	}

	// Traffic from a raw socket: echoed, and printed as JSON.
	raw, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	echo := transport.CbID{Idx: 102, Val: 1}
	for i := range 3 {
		if err := raw.Send(sctx, transport.Addr{Port: w.port}, &transport.Message{ID: echo, Seq: uint32(i + 1), Data: []byte("ping")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Send(sctx, transport.Addr{Port: w.port}, &transport.Message{ID: transport.CbID{Idx: 102, Val: 2}, Seq: 9, Data: []byte("log me")}); err != nil {
		t.Fatal(err)
	}
	b := transport.NewBatch(0)
	for replies := 0; replies < 3; {
		if err := raw.ReceiveBatch(sctx, b); err != nil {
			t.Fatalf("%d echoes: %v", replies, err)
		}
		for _, m := range b.Messages {
			if m.From == w.port && m.ID == echo && string(m.Data) == "ping" {
				replies++
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), `"idx":102,"val":2,"seq":9,`) {
		if time.Now().After(deadline) {
			t.Fatalf("the log handler printed %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A reply leaves inside Receive; the handler counts it when Receive
	// returns, which may be just after the reply arrived here.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cb, _ := a.list().find("102:1"); cb.Handled == 3 {
			break
		}
	}
	if cb, _ := a.list().find("102:1"); cb.Received != 3 || cb.Handled != 3 || cb.Handler != "echo" || cb.Name != "x" || cb.State != "running" {
		t.Errorf("102:1 = %+v", cb)
	}
	if cb, _ := a.list().find("102:2"); cb.Handled != 1 || cb.Handler != "log" {
		t.Errorf("102:2 = %+v", cb)
	}
	_, metrics := a.do("GET", "/metrics", "")
	for _, want := range []string{
		`cnactor_callback_handled_total{id="102:1",name="x"} 3`,
		`cnactor_callback_handled_total{id="102:2",name="printer"} 1`,
		`cnactor_callback_mailbox_capacity{id="102:2",name="printer"} 64`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	for _, c := range []struct {
		path string
		code int
	}{
		{"/callbacks/102:1", 204},
		{"/callbacks/102:1", 404},
		{"/callbacks/seven", 400},
		{"/callbacks/0xffffffff:0xffffffff", 403},
	} {
		if code, body := a.do("DELETE", c.path, ""); code != c.code {
			t.Errorf("DELETE %s = %d %s, want %d", c.path, code, body, c.code)
		}
	}
	if _, ok := a.list().find("102:1"); ok {
		t.Error("deleted callback still listed")
	}
	if code, _ := a.do("PUT", "/callbacks", ""); code != 405 {
		t.Errorf("PUT /callbacks = %d", code)
	}

	// Shutdown: run returns once the server and the connector are closed.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(shutdownTimeout + time.Second):
		t.Fatal("no clean shutdown")
	}
	if _, err := a.client.Get(a.base + "/healthz"); err == nil {
		t.Error("the API still answers after shutdown")
	}
}

func TestRunBadAddress(t *testing.T) {
	testutil.KernelConnector(t)
	if err := run(context.Background(), "256.0.0.1:bad", handlers.Env{}, nil); err == nil {
		t.Fatal("no error for a bad address")
	}
}
