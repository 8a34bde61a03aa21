package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/transport"
)

// A Factory builds a handler from its settings: the handler's own part of a
// configuration (the `settings:` of a callback in a configuration file, the
// "settings" of a JSON request). A factory decodes them with
// Settings.Decode and reports a bad value with Settings.Errorf, so that the
// error names the file, the line and the field. It is called once per
// callback; it should not start anything (see Starter).
type Factory func(s Settings) (Handler, error)

// Settings are what a Factory gets: its settings and the environment the
// application lends the handlers it builds.
type Settings struct {
	// Source holds the settings; nil means none were given, and every
	// field keeps its default.
	Source SettingsSource
	Env
}

// SettingsSource is where settings come from.
type SettingsSource interface {
	// Decode stores the settings in v, a pointer to a struct whose fields
	// carry `yaml:"name"` tags. Unknown fields and values of the wrong type
	// are errors naming the file, the line and the field.
	Decode(v any) error
	// Errorf returns an error located at the setting key ("" for the
	// settings as a whole).
	Errorf(key, format string, args ...any) error
}

// Env is what an application lends the handlers its configuration builds.
// Zero fields mean the process's own.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Decode decodes the settings into v; without settings it leaves v as it is.
func (s Settings) Decode(v any) error {
	if s.Source == nil {
		return nil
	}
	return s.Source.Decode(v)
}

// Errorf returns an error located at the setting key.
func (s Settings) Errorf(key, format string, args ...any) error {
	if s.Source == nil {
		field := "settings"
		if key != "" {
			field += "." + key
		}
		return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
	}
	return s.Source.Errorf(key, format, args...)
}

// Output resolves an output name: "stdout" or "stderr" (the Env's, or the
// process's). The empty name is stdout.
func (e Env) Output(name string) (io.Writer, bool) {
	switch name {
	case "", "stdout":
		if e.Stdout != nil {
			return e.Stdout, true
		}
		return os.Stdout, true
	case "stderr":
		if e.Stderr != nil {
			return e.Stderr, true
		}
		return os.Stderr, true
	}
	return nil, false
}

// Outbox sends messages from the connector's socket outside of Receive.
type Outbox interface {
	// Send sends m to a port (0 is the kernel) or a group; a zero m.Seq
	// goes out as the connector's next sequence number (m is not modified).
	Send(ctx context.Context, to transport.Addr, m *transport.Message) error
}

// Starter is implemented by handlers that must act once their callback is
// registered, for example to subscribe with the kernel (the proc handler
// sends LISTEN). Connector.AddCallback calls Start right after the
// callback is registered, whoever built the handler (the registry, a
// configuration or the caller); a failed Start removes the callback again.
// Start is called again when a supervisor restart registers the callback
// anew after OnStop (a failure then is logged).
type Starter interface {
	Start(ctx context.Context, out Outbox) error
}

// SenderDeclarer is implemented by handlers that need a sender policy to be
// safe, such as the proc handler, whose events only the kernel may send:
// anyone else could forge process exits. The connector applies the
// declared policy when the callback is added without one of its own (no
// cnactor.WithSenderPolicy, no senders: in the configuration); an explicit
// policy wins.
type SenderDeclarer interface {
	Senders() dispatch.SenderPolicy
}

// DeclaredSenders is the policy h declares, if it declares one.
func DeclaredSenders(h Handler) (dispatch.SenderPolicy, bool) {
	if d, ok := h.(SenderDeclarer); ok {
		return d.Senders(), true
	}
	return dispatch.SenderPolicy{}, false
}

// ErrUnknownHandler is wrapped by New's error for an unregistered name.
var ErrUnknownHandler = errors.New("unknown handler")

var (
	registryMu sync.RWMutex
	registry   = map[string]Factory{}
)

// Register makes a handler factory available by name, as database/sql
// drivers do: a handler package calls it from its init. It panics if the
// name is empty, the factory nil, or the name already registered.
func Register(name string, f Factory) {
	if name == "" || strings.ContainsAny(name, " \t\n") {
		panic(fmt.Sprintf("handlers: Register: invalid handler name %q", name))
	}
	if f == nil {
		panic("handlers: Register: nil factory for handler " + name)
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("handlers: Register called twice for handler " + name)
	}
	registry[name] = f
}

// unregister is for tests.
func unregister(name string) {
	registryMu.Lock()
	defer registryMu.Unlock()
	delete(registry, name)
}

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[name]
	return f, ok
}

// Names lists the registered handler names, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New builds the handler registered under name from s. An unregistered
// name gives an error wrapping ErrUnknownHandler that lists the known ones;
// the factory's own errors are returned as they are.
func New(name string, s Settings) (Handler, error) {
	f, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownHandler, name, strings.Join(Names(), ", "))
	}
	h, err := f(s)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("handlers: factory %q returned no handler", name)
	}
	return h, nil
}
