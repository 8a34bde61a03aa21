package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/cnactor/cnactor/dispatch"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The handlers `cnctl serve` knows by name are the registry's
// (handlers.Names): the built-ins, proc, and the plugins linked in
// (plugins.go).
func handlerNames() string { return strings.Join(handlers.Names(), ", ") }

// hangups delivers SIGHUP to a serve with -config; tests replace it.
var hangups = func() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

func runServe(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("serve", e.stderr)
	jsonOut := fs.Bool("json", false, "log (and proc) handlers added from stdin print one JSON object per message")
	verbose := fs.Bool("v", false, "log the connector's own events on stderr")
	rcvbuf := fs.Int("rcvbuf", cnactor.DefaultReadBuffer, "socket receive buffer of `BYTES` (overrides the configuration's)")
	configFile := fs.String("config", "", "configuration `FILE` (YAML) of the connector and its callbacks; SIGHUP or the reload command reloads it")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics and /healthz on this `HOST:PORT`")
	node := addNodeFlags(fs) // -export, -listen and the node's options (remote.go)
	if err := parseFlags(fs, args, e.stdout); err != nil {
		return err
	}
	rcvbufSet := false
	fs.Visit(func(f *flag.Flag) { rcvbufSet = rcvbufSet || f.Name == "rcvbuf" })

	level := zapcore.WarnLevel
	if *verbose {
		level = zapcore.DebugLevel
	}
	logger := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.AddSync(e.stderr), level))
	opts := []cnactor.Option{cnactor.WithLogger(logger)}
	var cfg *config.Config
	if *configFile != "" {
		var err error
		if cfg, err = config.Load(*configFile); err != nil {
			return err
		}
		opts = append(opts, cfg.Options()...)
	}
	if rcvbufSet || cfg == nil {
		opts = append(opts, cnactor.WithReadBuffer(*rcvbuf))
	}
	c, err := cnactor.New(opts...)
	if err != nil {
		return err
	}
	s := &server{c: c, e: e, json: *jsonOut, file: *configFile, handlerOf: map[transport.CbID]string{}}
	if cfg != nil {
		a, ch, err := config.Apply(c, cfg, s.env())
		if err != nil {
			c.Close(context.Background())
			return err
		}
		s.applied = a
		s.track(cfg, ch)
		fmt.Fprintf(e.stderr, "config %s: %s\n", *configFile, ch)
	}
	if *metricsAddr != "" {
		stop, err := serveMetrics(c, *metricsAddr, e.stderr, logger, defaultMetricsLimits)
		if err != nil {
			c.Close(context.Background())
			return err
		}
		defer stop()
	}
	stopNode, err := node.start(c, logger, e.stderr)
	if err != nil {
		c.Close(context.Background())
		return err
	}
	defer stopNode()
	fmt.Fprintf(e.stderr, "serving port=%d\n", c.Port())

	var hup <-chan os.Signal
	if cfg != nil {
		ch, stop := hangups()
		defer stop()
		hup = ch
	}
	lines := make(chan commandLine)
	go readCommands(ctx, e.stdin, lines)
	for {
		select {
		case <-ctx.Done():
			stopNode() // its subscribers are told before the connector closes
			err := c.Close(context.Background())
			// The final counters: what was handled, dropped or refused in
			// the whole run (Stats keeps them after Close).
			fmt.Fprintln(e.stderr, "final counts:")
			s.list(e.stderr)
			return err
		case <-hup:
			if ch, err := s.reload(); err != nil {
				fmt.Fprintf(e.stderr, "reload: %v\n", err)
			} else {
				fmt.Fprintf(e.stderr, "reload: %s\n", ch)
			}
		case cl, ok := <-lines:
			if !ok {
				lines = nil // end of commands: keep serving until interrupted
				continue
			}
			if cl.err != nil {
				fmt.Fprintf(s.e.stdout, "error: %v\n", cl.err)
				continue
			}
			s.command(cl.line)
		}
	}
}

// maxCommandLine bounds one stdin command line: commands are short, and a
// bufio.Scanner stops for good at its own limit (64 KiB), which silently
// ended the command channel.
const maxCommandLine = 4096

// commandLine is one stdin line, or why it was not taken.
type commandLine struct {
	line string
	err  error
}

// readCommands sends every stdin line to lines until end of input or ctx
// ends. A line longer than maxCommandLine is skipped to its end and
// reported as an error (counted), and reading goes on; a read error ends
// the commands, reported.
func readCommands(ctx context.Context, stdin io.Reader, lines chan<- commandLine) {
	defer close(lines)
	r := bufio.NewReaderSize(stdin, maxCommandLine+1) // the line and its newline
	put := func(cl commandLine) bool {
		select {
		case lines <- cl:
			return true
		case <-ctx.Done():
			return false
		}
	}
	tooLong := 0
	for {
		line, prefix, err := r.ReadLine()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				put(commandLine{err: fmt.Errorf("reading commands: %w (no more commands are read)", err)})
			}
			return
		}
		if !prefix {
			if !put(commandLine{line: string(line)}) {
				return
			}
			continue
		}
		for prefix && err == nil { // skip the rest of the long line
			_, prefix, err = r.ReadLine()
		}
		tooLong++
		if !put(commandLine{err: fmt.Errorf("command line over %d bytes ignored (%d so far)", maxCommandLine, tooLong)}) {
			return
		}
		if err != nil && !errors.Is(err, io.EOF) {
			put(commandLine{err: fmt.Errorf("reading commands: %w (no more commands are read)", err)})
			return
		}
	}
}

type server struct {
	c       *cnactor.Connector
	e       *env
	json    bool
	file    string
	applied *config.Applied
	// handlerOf is the handler name of every callback added from stdin or
	// the configuration; only the serve loop touches it.
	handlerOf map[transport.CbID]string
}

func (s *server) env() handlers.Env { return handlers.Env{Stdout: s.e.stdout, Stderr: s.e.stderr} }

// track records the handler names of what a configuration changed.
func (s *server) track(cfg *config.Config, ch *config.Changes) {
	for _, id := range ch.Removed {
		delete(s.handlerOf, id)
	}
	for _, cb := range cfg.Callbacks {
		if h, ok := s.applied.Handler(cb.ID); ok {
			s.handlerOf[cb.ID] = h
		}
	}
}

// reload reads the configuration file again and applies the difference;
// a file that cannot be read or applied leaves everything as it was.
func (s *server) reload() (*config.Changes, error) {
	if s.applied == nil {
		return nil, errors.New("no configuration to reload (serve -config FILE)")
	}
	cfg, err := config.Load(s.file)
	if err != nil {
		return nil, fmt.Errorf("%w (keeping the running configuration)", err)
	}
	ch, err := s.applied.Reload(cfg)
	if ch == nil {
		return nil, fmt.Errorf("%w (keeping the running configuration)", err)
	}
	s.track(cfg, ch)
	if err != nil {
		return nil, fmt.Errorf("%s; not applied: %w", ch, err)
	}
	return ch, nil
}

// command runs one stdin command; errors are reported, never fatal.
func (s *server) command(line string) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return
	}
	if err := s.dispatch(f); err != nil {
		fmt.Fprintf(s.e.stdout, "error: %v\n", err)
	}
}

// jsonSettings makes the -json flag the format of handlers that print.
var jsonSettings = map[string]bool{"log": true, "proc": true}

func (s *server) dispatch(f []string) error {
	switch f[0] {
	case "add":
		var opts []cnactor.CallbackOption
		args := f[:0:0]
		for _, a := range f {
			v, ok := strings.CutPrefix(a, "senders=")
			if !ok {
				args = append(args, a)
				continue
			}
			p, err := parseSenders(v)
			if err != nil {
				return err
			}
			opts = append(opts, cnactor.WithSenderPolicy(p))
		}
		if len(args) < 3 || len(args) > 4 || len(opts) > 1 {
			return fmt.Errorf("usage: %s", addUsage)
		}
		f = args
		id, err := transport.ParseCbID(f[1])
		if err != nil {
			return err
		}
		name := f[2]
		if len(f) == 4 {
			name = f[3]
		}
		settings := handlers.Settings{Env: s.env()}
		if s.json && jsonSettings[f[2]] {
			if settings.Source, err = config.ParseSettings("", []byte("format: json")); err != nil {
				return err
			}
		}
		h, err := handlers.New(f[2], settings)
		if err != nil {
			return err
		}
		if err := s.c.AddCallback(id, name, h, opts...); err != nil {
			return err
		}
		s.handlerOf[id] = f[2]
		info, _ := s.c.Callback(id)
		fmt.Fprintf(s.e.stdout, "ok added %s %s senders=%s\n", id, name, info.Policy)
	case "del":
		if len(f) != 2 {
			return fmt.Errorf("usage: del IDX:VAL")
		}
		id, err := transport.ParseCbID(f[1])
		if err != nil {
			return err
		}
		if err := s.c.DelCallback(id); err != nil {
			return err
		}
		delete(s.handlerOf, id)
		fmt.Fprintf(s.e.stdout, "ok deleted %s\n", id)
	case "list":
		if len(f) != 1 {
			return fmt.Errorf("usage: list")
		}
		s.list(s.e.stdout)
	case "reload":
		if len(f) != 1 {
			return fmt.Errorf("usage: reload")
		}
		ch, err := s.reload()
		if err != nil {
			return err
		}
		fmt.Fprintf(s.e.stdout, "ok reloaded: %s\n", ch)
	case "help":
		fmt.Fprintf(s.e.stdout, "commands: %s | del IDX:VAL | list | reload | help; handlers: %s\n", addUsage, handlerNames())
	default:
		return fmt.Errorf("unknown command %q (try help)", f[0])
	}
	return nil
}

// addUsage: without senders=, a callback takes its handler's declared
// policy (proc: kernel), else anyone.
const addUsage = "add IDX:VAL HANDLER [NAME] [senders=anyone|kernel|ports:P,..|uids:U,..]"

// parseSenders reads a senders= value: anyone, kernel, ports:P,.. or
// uids:U,...
func parseSenders(v string) (dispatch.SenderPolicy, error) {
	switch v {
	case "anyone":
		return dispatch.AllowAnyone(), nil
	case "kernel":
		return dispatch.AllowKernel(), nil
	}
	kind, list, _ := strings.Cut(v, ":")
	var nums []uint32
	for x := range strings.SplitSeq(list, ",") {
		n, err := strconv.ParseUint(x, 0, 32)
		if err != nil {
			return dispatch.SenderPolicy{}, fmt.Errorf("senders=%s: want anyone, kernel, ports:P,.. or uids:U,..", v)
		}
		nums = append(nums, uint32(n))
	}
	switch kind {
	case "ports":
		return dispatch.AllowPorts(nums...), nil
	case "uids":
		return dispatch.AllowUIDs(nums...), nil
	}
	return dispatch.SenderPolicy{}, fmt.Errorf("senders=%s: want anyone, kernel, ports:P,.. or uids:U,..", v)
}

func (s *server) list(w io.Writer) {
	st := s.c.Stats()
	for _, cb := range st.Callbacks {
		handler, note := s.handlerOf[cb.ID], ""
		if cb.Core {
			handler, note = "core", "  # the connector core's own callback: peers' notification subscriptions"
		}
		counters := map[string]uint64{
			"received": cb.Received, "handled": cb.Handled, "failed": cb.Failed,
			"dropped": cb.Dropped, "queued": cb.Queued, "rejected": cb.Rejected,
			"restarts": cb.Restarts, "stalls": cb.Stalls, "shed": cb.Shed,
		}
		for k, v := range cb.Handler {
			counters[k] = v
		}
		fmt.Fprintf(w, "%s name=%s handler=%s group=%d senders=%s %s stalled=%s overflow=%s state=%s backoff=%s%s\n", cb.ID, cb.Name, handler, cb.Group, cb.Policy,
			handlers.FormatStats(counters), cb.Stalled.Round(time.Microsecond), cb.Overflow, cb.State, cb.Backoff, note)
	}
	r := st.Reader
	fmt.Fprintf(w, "reader datagrams=%d messages=%d malformed=%d kernel_drops=%d unknown=%d rejected=%d",
		r.Datagrams, r.Messages, r.Malformed, r.KernelDrops, r.Unknown, r.Rejected)
	if r.RoutePanics > 0 { // a bug: shown only when it happened
		fmt.Fprintf(w, " route_panics=%d route_lost=%d", r.RoutePanics, r.RouteLost)
	}
	if r.LoopMoves > 0 { // a handler that blocks: shown only when one did
		fmt.Fprintf(w, " loop_moves=%d", r.LoopMoves)
	}
	fmt.Fprintln(w)
	ctl := st.Control
	fmt.Fprintf(w, "control applied=%d malformed=%d rejected=%d subscriptions=%d callbacks_refused=%d\n",
		ctl.Applied, ctl.Malformed, ctl.Rejected, ctl.Subscriptions, st.CallbacksRefused)
}
