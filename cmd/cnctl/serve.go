package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// builtins are the handlers `cnctl serve` knows by name.
var builtins = map[string]func(e *env, jsonOut bool) handlers.Handler{
	"echo":  func(*env, bool) handlers.Handler { return handlers.Echo() },
	"log":   func(e *env, j bool) handlers.Handler { return handlers.Log(e.stdout, j) },
	"count": func(*env, bool) handlers.Handler { return new(handlers.Counter) },
	"sink":  func(*env, bool) handlers.Handler { return handlers.Sink() },
	"flaky": func(*env, bool) handlers.Handler { return handlers.Flaky() },
}

func builtinNames() string {
	return "count, echo, flaky, log, sink"
}

func runServe(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("serve", e.stderr)
	jsonOut := fs.Bool("json", false, "log handlers print one JSON object per message")
	verbose := fs.Bool("v", false, "log the connector's own events on stderr")
	rcvbuf := fs.Int("rcvbuf", cnactor.DefaultReadBuffer, "socket receive buffer in bytes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	level := zapcore.WarnLevel
	if *verbose {
		level = zapcore.DebugLevel
	}
	logger := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.AddSync(e.stderr), level))
	c, err := cnactor.New(cnactor.WithLogger(logger), cnactor.WithReadBuffer(*rcvbuf))
	if err != nil {
		return err
	}
	s := &server{c: c, e: e, json: *jsonOut, handlerOf: map[transport.CbID]string{}}
	fmt.Fprintf(e.stderr, "serving port=%d\n", c.Port())
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(e.stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	stdinOpen := true
	for stdinOpen {
		select {
		case <-ctx.Done():
			stdinOpen = false
		case line, ok := <-lines:
			if !ok {
				// End of commands: keep serving until interrupted.
				<-ctx.Done()
				stdinOpen = false
				break
			}
			s.command(line)
		}
	}
	return c.Close(context.Background())
}

type server struct {
	c         *cnactor.Connector
	e         *env
	json      bool
	handlerOf map[transport.CbID]string
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

func (s *server) dispatch(f []string) error {
	switch f[0] {
	case "add":
		if len(f) < 3 || len(f) > 4 {
			return fmt.Errorf("usage: add IDX:VAL HANDLER [NAME]")
		}
		id, err := transport.ParseCbID(f[1])
		if err != nil {
			return err
		}
		mk, ok := builtins[f[2]]
		if !ok {
			return fmt.Errorf("unknown handler %q (have %s)", f[2], builtinNames())
		}
		name := f[2]
		if len(f) == 4 {
			name = f[3]
		}
		if err := s.c.AddCallback(id, name, mk(s.e, s.json)); err != nil {
			return err
		}
		s.handlerOf[id] = f[2]
		fmt.Fprintf(s.e.stdout, "ok added %s %s\n", id, name)
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
	case "help":
		fmt.Fprintf(s.e.stdout, "commands: add IDX:VAL HANDLER [NAME] | del IDX:VAL | list | help; handlers: %s\n", builtinNames())
	default:
		return fmt.Errorf("unknown command %q (try help)", f[0])
	}
	return nil
}

func (s *server) list(w io.Writer) {
	st := s.c.Stats()
	for _, cb := range st.Callbacks {
		handler := s.handlerOf[cb.ID]
		if handler == "" {
			handler = "core"
		}
		counters := map[string]uint64{
			"received": cb.Received, "handled": cb.Handled, "failed": cb.Failed,
			"dropped": cb.Dropped, "queued": cb.Queued, "rejected": cb.Rejected,
			"restarts": cb.Restarts,
		}
		for k, v := range cb.Handler {
			counters[k] = v
		}
		fmt.Fprintf(w, "%s name=%s handler=%s group=%d %s state=%s backoff=%s\n", cb.ID, cb.Name, handler, cb.Group,
			handlers.FormatStats(counters), cb.State, cb.Backoff)
	}
	r := st.Reader
	fmt.Fprintf(w, "reader datagrams=%d messages=%d malformed=%d kernel_drops=%d unknown=%d rejected=%d\n",
		r.Datagrams, r.Messages, r.Malformed, r.KernelDrops, r.Unknown, r.Rejected)
}
