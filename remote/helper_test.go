package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// helperEnv makes the test binary act as a node or subscriber process
// (see runHelper), configured by the JSON in helperConfigEnv.
const (
	helperEnv       = "CNACTOR_REMOTE_HELPER"
	helperConfigEnv = "CNACTOR_REMOTE_HELPER_CONFIG"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	code := m.Run()
	if testHost != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		testHost.Close(ctx)
		cancel()
	}
	// Everything the tests started is stopped: protoactor's and gRPC's
	// goroutines included.
	if err := goleak.Find(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

// The in-process node or subscriber of every test runs on one host, as a
// process should (see Host).
var (
	testHostOnce sync.Once
	testHost     *Host
	testHostErr  error
)

func sharedHost(t testing.TB) *Host {
	t.Helper()
	testHostOnce.Do(func() { testHost, testHostErr = NewHost(HostConfig{Listen: "127.0.0.1:0", Logger: helperLogger()}) })
	if testHostErr != nil {
		t.Fatal(testHostErr)
	}
	return testHost
}

// helperConfig configures a helper process.
type helperConfig struct {
	// node
	Listen    string   `json:"listen,omitempty"`
	Exports   []string `json:"exports,omitempty"` // "IDX:VAL" or "proc"
	ReadOnly  bool     `json:"read_only,omitempty"`
	Local     []string `json:"local,omitempty"`     // ids with a local sink callback
	Transport string   `json:"transport,omitempty"` // "kernel" (default) or "memory"
	// Generate sends a message with this id to its group every Interval
	// (memory transport), from a second connector; with Request, as a
	// request to the node's port, printing the replies.
	Generate string        `json:"generate,omitempty"`
	Interval time.Duration `json:"interval,omitempty"`
	Request  bool          `json:"request,omitempty"`
	// TLS files
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	CA   string `json:"ca,omitempty"`
	// subscriber
	Node string `json:"node,omitempty"`
	ID   string `json:"id,omitempty"`
	// NoClientCert drops the client certificate from the TLS
	// configuration; Plain subscribes without TLS.
	NoClientCert bool `json:"no_client_cert,omitempty"`
}

func runHelper(mode string) int {
	var cfg helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(helperConfigEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The parent closes stdin to ask for an orderly exit.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	var err error
	switch mode {
	case "node":
		err = helperNode(ctx, cfg)
	case "subscriber":
		err = helperSubscriber(ctx, cfg)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		fmt.Println("error", err)
		return 1
	}
	return 0
}

// helperLogger logs to stderr (shown by go test -v) when
// CNACTOR_REMOTE_DEBUG is set.
func helperLogger() *zap.Logger {
	if os.Getenv("CNACTOR_REMOTE_DEBUG") == "" {
		return nil
	}
	l, _ := zap.NewDevelopment()
	return l
}

var outMu sync.Mutex

// say prints one line for the parent.
func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func helperTLS(cfg helperConfig) (*TLS, error) {
	if cfg.Cert == "" {
		return nil, nil
	}
	return LoadMutualTLS(cfg.Cert, cfg.Key, cfg.CA)
}

func helperNode(ctx context.Context, cfg helperConfig) error {
	var opts []cnactor.Option
	var net *memory.Network
	if cfg.Transport == "memory" {
		net = memory.NewNetwork()
		conn, err := net.Dial()
		if err != nil {
			return err
		}
		opts = append(opts, cnactor.WithTransport(conn))
	}
	c, err := cnactor.New(opts...)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	c.Watch(func(ev cnactor.Event) { say("event connector %s %s", ev.Kind, ev.ID) })
	for _, s := range cfg.Local {
		id, err := transport.ParseCbID(s)
		if err != nil {
			return err
		}
		if err := c.AddCallback(id, "local", handlers.Sink()); err != nil {
			return err
		}
	}
	var exports []Export
	for _, s := range cfg.Exports {
		if s == "proc" {
			exports = append(exports, ProcExport())
			continue
		}
		id, err := transport.ParseCbID(s)
		if err != nil {
			return err
		}
		exports = append(exports, Export{ID: id, ReadOnly: cfg.ReadOnly})
	}
	t, err := helperTLS(cfg)
	if err != nil {
		return err
	}
	n, err := NewNode(c, NodeConfig{Listen: cfg.Listen, Exports: exports, TLS: t, Logger: helperLogger()})
	if err != nil {
		return err
	}
	n.Watch(func(ev NodeEvent) {
		reason := "nil"
		if ev.Reason != nil {
			reason = strings.ReplaceAll(ev.Reason.Error(), " ", "_")
		}
		say("event subscriber-%s %s offered=%d sent=%d dropped=%d reason=%s", ev.Kind, ev.ID, ev.Offered, ev.Sent, ev.Dropped, reason)
	})
	say("node addr=%s port=%d pid=%d", n.Addr(), c.Port(), os.Getpid())
	var gen sync.WaitGroup
	genCtx, genStop := context.WithCancel(ctx)
	defer genStop()
	if cfg.Generate != "" {
		id, err := transport.ParseCbID(cfg.Generate)
		if err != nil {
			return err
		}
		conn, err := net.Dial()
		if err != nil {
			return err
		}
		g, err := cnactor.New(cnactor.WithTransport(conn))
		if err != nil {
			return err
		}
		defer g.Close(context.Background())
		// The generator also listens on the id, to see sends through the
		// node to its group.
		if err := g.AddCallback(id, "generator", handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
			say("got from=%d group=%d data=%s", hc.From(), hc.Group(), m.Data)
			return nil
		})); err != nil {
			return err
		}
		say("generator port=%d", g.Port())
		gen.Go(func() {
			t := time.NewTicker(max(cfg.Interval, time.Millisecond))
			defer t.Stop()
			for seq := uint32(1); ; seq++ {
				select {
				case <-genCtx.Done():
					return
				case <-t.C:
				}
				m := &transport.Message{ID: id, Seq: seq, Ack: 2 * seq, Flags: 3, Data: fmt.Appendf(nil, "m%d", seq)}
				if !cfg.Request {
					g.Send(genCtx, transport.Addr{Group: id.Idx}, m)
					continue
				}
				rctx, cancel := context.WithTimeout(genCtx, time.Second)
				r, err := g.Request(rctx, transport.Addr{Port: c.Port()}, m)
				cancel()
				if err == nil {
					say("reply seq=%d ack=%d data=%s", r.Seq, r.Ack, r.Data)
				}
			}
		})
	}
	<-ctx.Done()
	genStop()
	gen.Wait()
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.Close(cctx)
}

func helperSubscriber(ctx context.Context, cfg helperConfig) error {
	t, err := helperTLS(cfg)
	if err != nil {
		return err
	}
	if t != nil && cfg.NoClientCert {
		t.Client.Certificates = nil
	}
	s, err := NewSubscriber(SubscriberConfig{Listen: cfg.Listen, TLS: t, Logger: helperLogger()})
	if err != nil {
		return err
	}
	id, err := transport.ParseCbID(cfg.ID)
	if err != nil {
		return err
	}
	err = s.AddCallback(ctx, cfg.Node, id, "helper", handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		say("msg seq=%d", m.Seq)
		return nil
	}))
	if err != nil {
		say("errclass %s", errClass(err))
		s.Close(context.Background())
		return err
	}
	say("subscribed addr=%s", s.Addr())
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Close(cctx)
}

// errClass names the error AddCallback returned, as errors.Is sees it.
func errClass(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{
		{ErrUnauthenticated, "unauthenticated"}, {ErrTLS, "tls"}, {ErrNotExported, "not-exported"},
		{cnactor.ErrDuplicate, "duplicate"}, {ErrUnreachable, "unreachable"}, {cnactor.ErrTimeout, "timeout"},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "other"
}

// helper is a running helper process.
type helper struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	lines []string
	moved chan struct{} // closed and replaced on every new line
	done  chan struct{} // closed when stdout ends
}

// startHelper runs the test binary as a helper process.
func startHelper(t *testing.T, mode string, cfg helperConfig) *helper {
	t.Helper()
	js, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperConfigEnv+"="+string(js))
	cmd.Stderr = &testWriter{t: t, prefix: mode + ": "}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, stdin: stdin, moved: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.mu.Lock()
			h.lines = append(h.lines, sc.Text())
			close(h.moved)
			h.moved = make(chan struct{})
			h.mu.Unlock()
		}
	}()
	t.Cleanup(h.kill)
	return h
}

// testWriter sends a helper's stderr to the test log while the test runs.
type testWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	done   bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if testing.Verbose() && !w.done {
		for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			w.t.Log(w.prefix + l)
		}
	}
	return len(p), nil
}

// wait waits for a line matching re and returns its submatches.
func (h *helper) wait(re *regexp.Regexp, timeout time.Duration) []string {
	h.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i := 0; ; {
		h.mu.Lock()
		for ; i < len(h.lines); i++ {
			if m := re.FindStringSubmatch(h.lines[i]); m != nil {
				h.mu.Unlock()
				return m
			}
			if strings.HasPrefix(h.lines[i], "error ") {
				h.mu.Unlock()
				h.t.Fatalf("helper failed: %s", h.lines[i])
			}
		}
		moved := h.moved
		h.mu.Unlock()
		select {
		case <-moved:
		case <-h.done:
			h.mu.Lock()
			n := len(h.lines)
			h.mu.Unlock()
			if i == n {
				h.t.Fatalf("helper exited before printing %q; output ends: %q", re, h.tail())
			}
		case <-deadline.C:
			h.t.Fatalf("no line matching %q within %v; output ends: %q", re, timeout, h.tail())
		}
	}
}

func (h *helper) output() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.lines...)
}

// tail is the end of the output, for failure messages.
func (h *helper) tail() []string {
	out := h.output()
	return out[max(0, len(out)-20):]
}

// count counts the lines matching re so far.
func (h *helper) count(re *regexp.Regexp) int {
	n := 0
	for _, l := range h.output() {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

// stop asks the helper to exit in order and waits for it.
func (h *helper) stop() {
	h.t.Helper()
	h.stdin.Close()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Error("helper did not exit in time")
		h.cmd.Process.Kill()
	}
	err := h.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		h.t.Error(err)
	} else if err != nil {
		h.t.Errorf("helper exited with %v", err)
	}
}

// kill kills the helper (SIGKILL: no goodbye) and waits for it.
func (h *helper) kill() {
	if h.cmd.ProcessState != nil {
		return
	}
	h.cmd.Process.Kill()
	<-h.done
	h.cmd.Wait()
}

var nodeRE = regexp.MustCompile(`^node addr=(\S+) port=(\d+) pid=(\d+)`)

// startNode starts a node helper and returns it and its address.
func startNode(t *testing.T, cfg helperConfig) (*helper, string) {
	t.Helper()
	h := startHelper(t, "node", cfg)
	m := h.wait(nodeRE, 10*time.Second)
	return h, m[1]
}

// addCallback is s.AddCallback for tests that talk to a node process: a
// first subscription that times out is tried again, twice at most. The
// first contact sets up the gRPC stream to a process that may have just
// started, which on a loaded machine can take longer than one attempt's
// 2 s (seen once with two stress-ng loads beside the race detector);
// every other outcome is returned as it is.
func addCallback(t *testing.T, s *Subscriber, ctx context.Context, node string, id transport.CbID, name string, h handlers.Handler, opts ...Option) error {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := s.AddCallback(ctx, node, id, name, h, opts...)
		if attempt == 3 || !errors.Is(err, cnactor.ErrTimeout) || ctx.Err() != nil {
			return err
		}
		t.Logf("subscribing to %s: %v; trying again", node, err)
	}
}
