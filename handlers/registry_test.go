package handlers

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cnactor/cnactor/internal/yamlconf"
	"github.com/cnactor/cnactor/transport"
)

// settingsAt parses YAML as the settings of callbacks[0] of file f.yaml,
// the way configuration files hand them to factories.
func settingsAt(t *testing.T, text string) SettingsSource {
	t.Helper()
	n, err := yamlconf.Parse("f.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	d := &yamlconf.Decoder{File: "f.yaml"}
	return d.At(n, "callbacks[0].settings", 1)
}

func mustPanic(t *testing.T, what, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("%s did not panic", what)
		}
		if s, _ := r.(string); !strings.Contains(s, want) {
			t.Fatalf("%s panicked with %v, want %q", what, r, want)
		}
	}()
	f()
}

func TestRegisterLookupNames(t *testing.T) {
	f := func(Settings) (Handler, error) { return Sink(), nil }
	Register("test-registry", f)
	t.Cleanup(func() { unregister("test-registry") })

	if _, ok := Lookup("test-registry"); !ok {
		t.Fatal("registered handler not found")
	}
	if _, ok := Lookup("test-nosuch"); ok {
		t.Fatal("unregistered handler found")
	}
	names := Names()
	if !slices.IsSorted(names) {
		t.Errorf("Names not sorted: %v", names)
	}
	for _, want := range []string{"count", "echo", "flaky", "log", "sink", "test-registry"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() = %v, missing %q", names, want)
		}
	}
	mustPanic(t, "duplicate Register", "Register called twice for handler test-registry", func() { Register("test-registry", f) })
	mustPanic(t, "duplicate built-in", "Register called twice for handler echo", func() { Register("echo", f) })
	mustPanic(t, "empty name", "invalid handler name", func() { Register("", f) })
	mustPanic(t, "name with a space", "invalid handler name", func() { Register("a b", f) })
	mustPanic(t, "nil factory", "nil factory", func() { Register("test-nil", nil) })
	if _, ok := Lookup("test-nil"); ok {
		t.Error("a refused registration was kept")
	}
}

func TestNewUnknown(t *testing.T) {
	_, err := New("nosuch", Settings{})
	if !errors.Is(err, ErrUnknownHandler) {
		t.Fatalf("err = %v, want ErrUnknownHandler", err)
	}
	if want := `unknown handler "nosuch" (have `; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "echo, flaky") {
		t.Fatalf("err = %q, want %q and the list of names", err, want)
	}
}

func TestNewFactoryErrorsAndNil(t *testing.T) {
	boom := errors.New("boom")
	Register("test-failing", func(Settings) (Handler, error) { return nil, boom })
	Register("test-nilhandler", func(Settings) (Handler, error) { return nil, nil })
	t.Cleanup(func() { unregister("test-failing"); unregister("test-nilhandler") })
	if _, err := New("test-failing", Settings{}); err != boom {
		t.Errorf("err = %v, want the factory's", err)
	}
	if _, err := New("test-nilhandler", Settings{}); err == nil || !strings.Contains(err.Error(), "returned no handler") {
		t.Errorf("err = %v, want no handler", err)
	}
}

func TestBuiltinFactories(t *testing.T) {
	var out, errOut bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errOut}
	for _, name := range []string{"echo", "sink", "flaky", "count", "log"} {
		h, err := New(name, Settings{Env: env})
		if err != nil || h == nil {
			t.Fatalf("New(%q) without settings = %v, %v", name, h, err)
		}
	}
	h, err := New("count", Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.(StatsReporter); !ok {
		t.Error("count does not report stats")
	}

	// log: format and output.
	m := &transport.Message{ID: transport.CbID{Idx: 7, Val: 1}, Data: []byte("hi")}
	for _, c := range []struct {
		settings string
		w        *bytes.Buffer
		want     string
	}{
		{"{}", &out, `from=5 group=0 id=7:1 seq=0 ack=0 flags=0 len=2 data=6869 text="hi"`},
		{"format: json", &out, `{"from":5,"group":0,"idx":7,"val":1,"seq":0,"ack":0,"flags":0,"len":2,"data":"6869"}`},
		{"{format: text, output: stderr}", &errOut, `from=5 group=0 id=7:1`},
	} {
		out.Reset()
		errOut.Reset()
		h, err := New("log", Settings{Source: settingsAt(t, c.settings), Env: env})
		if err != nil {
			t.Fatalf("%s: %v", c.settings, err)
		}
		if err := h.Receive(&fakeContext{from: 5}, m); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(c.w.String(), c.want) {
			t.Errorf("%s: printed %q, want %q", c.settings, c.w.String(), c.want)
		}
	}
}

func TestBuiltinSettingsErrors(t *testing.T) {
	for _, c := range []struct{ handler, settings, want string }{
		{"log", "format: xml", `f.yaml:1: callbacks[0].settings.format: unknown format "xml" (want text or json)`},
		{"log", "format: json\noutput: printer", `f.yaml:2: callbacks[0].settings.output: unknown output "printer" (want stdout or stderr)`},
		{"log", "format: json\ncolour: red", `f.yaml:2: callbacks[0].settings.colour: unknown field (want format, output)`},
		{"log", "format: [a, b]", `f.yaml:1: callbacks[0].settings.format: want a single value, got a list`},
		{"echo", "\n\nreply: upper", `f.yaml:3: callbacks[0].settings.reply: unknown field (this takes no fields)`},
		{"count", "x: 1", `f.yaml:1: callbacks[0].settings.x: unknown field (this takes no fields)`},
	} {
		_, err := New(c.handler, Settings{Source: settingsAt(t, c.settings)})
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %q:\n got %v\nwant %s", c.handler, c.settings, err, c.want)
		}
	}
	// Without a source, errors still name the field.
	if err := (Settings{}).Errorf("format", "bad %d", 1); err.Error() != "settings.format: bad 1" {
		t.Errorf("Errorf without source = %q", err)
	}
}

func TestEnvOutput(t *testing.T) {
	var b bytes.Buffer
	e := Env{Stdout: &b}
	if w, ok := e.Output(""); !ok || w != &b {
		t.Error("empty output is not the env's stdout")
	}
	if w, ok := e.Output("stderr"); !ok || w == nil {
		t.Error("stderr without an env writer is not the process's")
	}
	if _, ok := e.Output("file"); ok {
		t.Error("unknown output accepted")
	}
}
