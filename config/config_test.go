package config_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/cnactor/cnactor/internal/conntest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

const fullConfig = `# every field
connector:
  receive_buffer: 8388608
  batch_size: 32
  top_policy: fail-connector
  root: {strategy: one-for-all, intensity: {max_restarts: 5}}
  mailbox: {size: 256, overflow: drop-oldest}
  senders: {uids: [0, 1000]}
supervisors:
  - name: workers
    strategy: rest-for-one
    intensity: {max_restarts: 10, period: 2s}
    backoff: {min: 2ms, max: 100ms, jitter: 0.5, reset_after: 3s}
    restart: transient
    shutdown_timeout: 1s
  - name: inner
    parent: workers
    backoff: none
callbacks:
  - id: "7:1"
    handler: echo
  - id: 0x10:0x2
    name: printer
    handler: log
    settings: {format: json}
    supervisor: inner
    restart: temporary
    shutdown_timeout: 250ms
    mailbox: {size: 8}
    senders: kernel
  - id: "7:3"
    handler: count
    mailbox: {overflow: drop-newest}
    senders: {ports: [0, 4242]}
`

func TestParseConfig(t *testing.T) {
	cfg, err := config.Parse("full.yaml", []byte(fullConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "full.yaml" || cfg.ReceiveBuffer != 8<<20 || cfg.BatchSize != 32 || cfg.TopPolicy != cnactor.FailConnector {
		t.Errorf("connector = %+v", cfg)
	}
	if cfg.Root.Strategy != supervisor.OneForAll || cfg.Root.Intensity != (supervisor.Intensity{MaxRestarts: 5, Period: 10 * time.Second}) {
		t.Errorf("root = %+v", cfg.Root)
	}
	if cfg.Mailbox != 256 || cfg.Overflow != cnactor.DropOldest || cfg.Senders.String() != "uids=0,1000" {
		t.Errorf("defaults = %d %v %v", cfg.Mailbox, cfg.Overflow, cfg.Senders)
	}
	if len(cfg.Supervisors) != 2 {
		t.Fatalf("supervisors = %+v", cfg.Supervisors)
	}
	w := cfg.Supervisors[0]
	wantBackoff := supervisor.Backoff{Min: 2 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.5, ResetAfter: 3 * time.Second}
	if w.Name != "workers" || w.Parent != "" || w.Spec.Strategy != supervisor.RestForOne ||
		w.Spec.Intensity != (supervisor.Intensity{MaxRestarts: 10, Period: 2 * time.Second}) || w.Spec.Backoff != wantBackoff ||
		w.Child != (supervisor.ChildSpec{Restart: supervisor.Transient, ShutdownTimeout: time.Second}) {
		t.Errorf("workers = %+v", w)
	}
	if in := cfg.Supervisors[1]; in.Parent != "workers" || in.Spec.Backoff != supervisor.NoBackoff() || in.Spec.Intensity != (supervisor.Intensity{}) {
		t.Errorf("inner = %+v", in)
	}
	if len(cfg.Callbacks) != 3 {
		t.Fatalf("callbacks = %+v", cfg.Callbacks)
	}
	for i, want := range []string{
		"7:1 echo echo sup= permanent 0s mailbox=256/drop-oldest senders=uids=0,1000",
		"16:2 printer log sup=inner temporary 250ms mailbox=8/drop-oldest senders=kernel",
		"7:3 count count sup= permanent 0s mailbox=256/drop-newest senders=ports=0,4242",
	} {
		cb := cfg.Callbacks[i]
		got := fmt.Sprintf("%s %s %s sup=%s %s %v mailbox=%d/%s senders=%s", cb.ID, cb.Name, cb.Handler, cb.Supervisor,
			cb.Restart, cb.ShutdownTimeout, cb.Mailbox, cb.Overflow, cb.Senders)
		if got != want {
			t.Errorf("callbacks[%d] = %s, want %s", i, got, want)
		}
	}
	var ls handlers.LogSettings
	if err := cfg.Callbacks[1].Settings.Decode(&ls); err != nil || ls.Format != "json" {
		t.Errorf("printer settings = %+v, %v", ls, err)
	}
	if len(cfg.Options()) == 0 || len(cfg.Callbacks[1].Options()) == 0 {
		t.Error("no options")
	}
}

func TestParseConfigEmpty(t *testing.T) {
	for _, text := range []string{"", "# nothing\n", "callbacks: []\n", "callbacks: []\n---\n", "---\ncallbacks: []\n...\n"} {
		cfg, err := config.Parse("e.yaml", []byte(text))
		if err != nil || len(cfg.Callbacks) != 0 {
			t.Errorf("%q: %+v, %v", text, cfg, err)
		}
	}
}

// TestParseConfigErrors: every error names the file, the line and the field.
func TestParseConfigErrors(t *testing.T) {
	cb := func(lines ...string) string {
		return "callbacks:\n  - id: \"7:1\"\n    handler: echo\n" + strings.Join(lines, "\n") + "\n"
	}
	for _, c := range []struct{ name, text, want string }{
		{"syntax", "callbacks:\n  - id: [\n", `c.yaml:2: did not find expected node content`},
		{"top-level unknown", "connector: {}\ncalbacks: []\n", `c.yaml:2: calbacks: unknown field (want callbacks, connector, supervisors)`},
		{"not a mapping", "- a\n- b\n", `c.yaml:1: want a mapping with fields callbacks, connector, supervisors, got a list`},
		{"receive buffer type", "connector:\n  receive_buffer: lots\n", `c.yaml:2: connector.receive_buffer: want an integer of 64 bits, got "lots"`},
		{"receive buffer negative", "connector:\n  receive_buffer: -1\n", `c.yaml:2: connector.receive_buffer: -1 bytes: want 0..1073741823 (the most the kernel takes)`},
		// Issue 13, items 5 and 6: over the maximum is an error, not an
		// out-of-memory death (batch) or a 2,304-byte buffer (receive).
		{"receive buffer over 2^31", "connector:\n  receive_buffer: 2147483648\n", `c.yaml:2: connector.receive_buffer: 2147483648 bytes: want 0..1073741823 (the most the kernel takes)`},
		// Found by FuzzParse: an empty list entry had no place.
		{"empty supervisor entry", "supervisors:\n-", `c.yaml:2: supervisors[0].name: missing: every supervisor needs a name`},
		{"empty callback entry", "callbacks:\n  -\n", `c.yaml:2: callbacks[0].id: missing: want IDX:VAL`},
		{"max callbacks zero", "connector:\n  max_callbacks: 0\n", `c.yaml:2: connector.max_callbacks: 0: want at least 1`},
		{"batch size negative", "connector:\n  batch_size: -1\n", `c.yaml:2: connector.batch_size: -1: want 0..1024 (recvmmsg takes no more per call)`},
		{"batch size over 1024", "connector:\n  top_policy: keep-running\n  batch_size: 1000000\n", `c.yaml:3: connector.batch_size: 1000000: want 0..1024 (recvmmsg takes no more per call)`},
		// Issue 13, item 12: a second document is not silently ignored.
		{"second document", "connector: {}\n---\ncallbacks:\n  - id: \"7:1\"\n    handler: echo\n", `c.yaml:3: a second YAML document starts here: a configuration is one document`},
		{"second document, empty first", "---\n---\nconnector: {}\n", `c.yaml:3: a second YAML document starts here: a configuration is one document`},
		{"top policy", "connector:\n  top_policy: crash\n", `c.yaml:2: connector.top_policy: unknown policy "crash" (want keep-running or fail-connector)`},
		{"default overflow", "connector:\n  mailbox:\n    overflow: drop-all\n", `c.yaml:3: connector.mailbox.overflow: unknown policy "drop-all" (want backpressure, drop-newest or drop-oldest)`},
		{"default senders", "connector:\n  senders: everyone\n", `c.yaml:2: connector.senders: unknown policy "everyone" (want anyone, kernel, {ports: [...]} or {uids: [...]})`},
		{"root strategy", "connector:\n  root:\n    strategy: all-for-one\n", `c.yaml:3: connector.root.strategy: unknown strategy "all-for-one" (want one-for-one, one-for-all or rest-for-one)`},
		{"root unknown", "connector:\n  root:\n    restart: permanent\n", `c.yaml:3: connector.root.restart: unknown field (want backoff, intensity, strategy)`},

		{"callback overflow", cb("    mailbox: {size: 4, overflow: drop-random}"),
			`c.yaml:4: callbacks[0].mailbox.overflow: unknown policy "drop-random" (want backpressure, drop-newest or drop-oldest)`},
		{"second callback overflow", cb("  - id: \"7:2\"", "    handler: sink", "    mailbox:", "      size: 4", "      overflow: drop-random"),
			`c.yaml:8: callbacks[1].mailbox.overflow: unknown policy "drop-random" (want backpressure, drop-newest or drop-oldest)`},
		{"mailbox size type", cb("    mailbox: {size: big}"), `c.yaml:4: callbacks[0].mailbox.size: want an integer of 64 bits, got "big"`},
		{"mailbox size negative", cb("    mailbox: {size: -3}"), `c.yaml:4: callbacks[0].mailbox.size: -3: want 0 (the default) to 4194304`},
		{"mailbox size too large", cb("    mailbox: {size: 4194305}"), `c.yaml:4: callbacks[0].mailbox.size: 4194305: want 0 (the default) to 4194304`},
		{"mailbox unknown", cb("    mailbox: {depth: 3}"), `c.yaml:4: callbacks[0].mailbox.depth: unknown field (want overflow, size, stall_timeout)`},
		{"callback unknown field", cb("    handlr: echo"), `c.yaml:4: callbacks[0].handlr: unknown field (want handler, id, mailbox, name, restart, senders, settings, shutdown_timeout, supervisor)`},
		{"field twice", cb("    handler: sink"), `c.yaml:4: callbacks[0].handler: field given twice`},
		{"missing id", "callbacks:\n  - handler: echo\n", `c.yaml:2: callbacks[0].id: missing: want IDX:VAL`},
		{"bad id", "callbacks:\n  - id: seven\n    handler: echo\n", `c.yaml:2: callbacks[0].id: invalid id "seven": want IDX:VAL, each a decimal or 0x hex number below 2^32`},
		{"id too big", "callbacks:\n  - id: 4294967296:1\n    handler: echo\n", `c.yaml:2: callbacks[0].id: invalid id "4294967296:1": want IDX:VAL, each a decimal or 0x hex number below 2^32`},
		{"core id", "callbacks:\n  - id: 0xffffffff:0xffffffff\n    handler: echo\n", `c.yaml:2: callbacks[0].id: 4294967295:4294967295 is the connector core's own id`},
		{"duplicate id", cb("  - id: 0x7:1", "    handler: sink"), `c.yaml:4: callbacks[1].id: 7:1 is already used by callbacks[0]`},
		{"missing handler", "callbacks:\n  - id: \"7:1\"\n", `c.yaml:2: callbacks[0].handler: missing: want one of `},
		{"unknown handler", "callbacks:\n  - id: \"7:1\"\n    handler: uper\n", `c.yaml:3: callbacks[0].handler: unknown handler "uper" (have `},
		{"settings not a mapping", cb("    settings: [1, 2]"), `c.yaml:4: callbacks[0].settings: want a mapping of the handler's settings`},
		{"unknown supervisor", cb("    supervisor: nobody"), `c.yaml:4: callbacks[0].supervisor: unknown supervisor "nobody" (want root or one in supervisors)`},
		{"restart type", cb("    restart: sometimes"), `c.yaml:4: callbacks[0].restart: unknown restart type "sometimes" (want permanent, transient or temporary)`},
		{"shutdown timeout", cb("    shutdown_timeout: 5"), `c.yaml:4: callbacks[0].shutdown_timeout: invalid duration "5" (want a duration like 500ms or 5s)`},
		{"senders scalar", cb("    senders: root"), `c.yaml:4: callbacks[0].senders: unknown policy "root" (want anyone, kernel, {ports: [...]} or {uids: [...]})`},
		{"senders both", cb("    senders: {ports: [1], uids: [0]}"), `c.yaml:4: callbacks[0].senders: give ports or uids, not both`},
		{"senders empty", cb("    senders: {}"), `c.yaml:4: callbacks[0].senders: empty policy (want anyone, kernel, {ports: [...]} or {uids: [...]})`},
		{"senders port type", cb("    senders:", "      ports: [1, -2]"), `c.yaml:5: callbacks[0].senders.ports[1]: want a non-negative integer of 32 bits, got "-2"`},
		{"senders unknown key", cb("    senders: {pids: [1]}"), `c.yaml:4: callbacks[0].senders.pids: unknown field (want ports, uids)`},
		{"callbacks not a list", "callbacks:\n  id: 7:1\n", `c.yaml:2: callbacks: want a list, got a mapping`},

		{"supervisor name missing", "supervisors:\n  - strategy: one-for-one\n", `c.yaml:2: supervisors[0].name: missing: every supervisor needs a name`},
		{"supervisor root", "supervisors:\n  - name: root\n", `c.yaml:2: supervisors[0].name: "root" is the connector's own supervisor (configure it under connector.root)`},
		{"supervisor twice", "supervisors:\n  - name: a\n  - name: a\n", `c.yaml:3: supervisors[1].name: "a" is already used by supervisors[0]`},
		{"supervisor parent", "supervisors:\n  - name: a\n    parent: b\n  - name: b\n", `c.yaml:3: supervisors[0].parent: unknown supervisor "b" (want root or one listed before)`},
		{"supervisor intensity", "supervisors:\n  - name: a\n    intensity:\n      max_restarts: 0\n", `c.yaml:4: supervisors[0].intensity.max_restarts: must be at least 1`},
		{"supervisor period", "supervisors:\n  - name: a\n    intensity: {period: 0s}\n", `c.yaml:3: supervisors[0].intensity.period: must be positive`},
		{"backoff scalar", "supervisors:\n  - name: a\n    backoff: fast\n", `c.yaml:3: supervisors[0].backoff: want none or a mapping with fields jitter, max, min, reset_after`},
		{"backoff jitter", "supervisors:\n  - name: a\n    backoff:\n      jitter: 2\n", `c.yaml:4: supervisors[0].backoff.jitter: must be between 0 and 1, got 2`},
		{"backoff max", "supervisors:\n  - name: a\n    backoff: {min: 1s, max: 10ms}\n", `c.yaml:3: supervisors[0].backoff.max: 10ms is below min 1s`},
		{"backoff duration", "supervisors:\n  - name: a\n    backoff:\n      min: soon\n", `c.yaml:4: supervisors[0].backoff.min: invalid duration "soon" (want a duration like 500ms or 5s)`},
		{"supervisor restart", "supervisors:\n  - name: a\n    restart: always\n", `c.yaml:3: supervisors[0].restart: unknown restart type "always" (want permanent, transient or temporary)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("c.yaml", []byte(c.text))
			if err == nil {
				t.Fatalf("no error, want %s", c.want)
			}
			if !strings.HasPrefix(err.Error(), c.want) || strings.HasSuffix(c.want, ")") && err.Error() != c.want {
				t.Fatalf("\n got %s\nwant %s", err, c.want)
			}
		})
	}
}

func TestParseCallbackJSON(t *testing.T) {
	cb, err := config.ParseCallback("", []byte(`{"id":"7:1","name":"x","handler":"log","settings":{"format":"json"},"mailbox":{"size":4}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cb.ID != (transport.CbID{Idx: 7, Val: 1}) || cb.Name != "x" || cb.Handler != "log" || cb.Mailbox != 4 {
		t.Errorf("cb = %+v", cb)
	}
	for _, c := range []struct{ body, want string }{
		{`{"id":"7:1","handler":"echo","colour":1}`, `colour: unknown field (want handler, id, mailbox, name, restart, senders, settings, shutdown_timeout, supervisor)`},
		{`{"id":"7:1","handler":"nosuch"}`, `handler: unknown handler "nosuch" (have `},
		{`{"handler":"echo"}`, `id: missing: want IDX:VAL`},
		{`{"id":"7:1","handler":"echo"`, `did not find expected ',' or '}'`},
		{``, `empty callback: want at least id and handler`},
		{"{\"id\":\"7:1\",\"handler\":\"echo\"}\n---\n{\"id\":\"7:2\",\"handler\":\"echo\"}", `a second YAML document starts here`},
	} {
		_, err := config.ParseCallback("", []byte(c.body))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %s", c.body, err, c.want)
		}
	}
	// The handler's own errors, when the callback is added.
	c, _ := conntest.New(t)
	cb, err = config.ParseCallback("", []byte(`{"id":"7:1","handler":"log","settings":{"format":"xml"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.AddTo(c, handlers.Env{}); err == nil || err.Error() != `settings.format: unknown format "xml" (want text or json)` {
		t.Errorf("AddTo = %v", err)
	}
	if _, ok := c.Callback(cb.ID); ok {
		t.Error("callback added despite its bad settings")
	}
}

func TestParseSettings(t *testing.T) {
	s, err := config.ParseSettings("", []byte(`{"format": "json"}`))
	if err != nil {
		t.Fatal(err)
	}
	var ls handlers.LogSettings
	if err := s.Decode(&ls); err != nil || ls.Format != "json" {
		t.Errorf("decoded %+v, %v", ls, err)
	}
	if _, err := config.ParseSettings("", []byte(`[1]`)); err == nil || err.Error() != "settings: want a mapping" {
		t.Errorf("list settings: %v", err)
	}
}

// events records Watch events as "+7:1 name" and "-7:1 name".
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) watch(c *cnactor.Connector) {
	c.Watch(func(ev cnactor.Event) {
		sign := "+"
		if ev.Kind == dispatch.EventRemoved {
			sign = "-"
		}
		e.mu.Lock()
		e.got = append(e.got, sign+ev.ID.String()+" "+ev.Name)
		e.mu.Unlock()
	})
}

func (e *events) take() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := strings.Join(e.got, ", ")
	e.got = nil
	return s
}

func mustParse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("r.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestReloadByDifference: a reload removes, adds and changes (removes and
// adds again) exactly what differs, with the notifications of DelCallback
// and AddCallback, and leaves the rest running with its counters.
func TestReloadByDifference(t *testing.T) {
	c, net := conntest.New(t)
	var ev events
	ev.watch(c)
	v1 := mustParse(t, `
callbacks:
  - {id: "7:1", handler: echo, name: keep}
  - {id: "7:2", handler: sink, name: gone}
  - {id: "7:3", handler: log, name: changing, settings: {output: stderr}}
  - {id: "7:4", handler: count, name: mailbox, mailbox: {size: 4}}
`)
	a, ch, err := config.Apply(c, v1, handlers.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ch.String(); got != "added 7:1,7:2,7:3,7:4" {
		t.Errorf("first apply: %s", got)
	}
	if got := ev.take(); got != "+7:1 keep, +7:2 gone, +7:3 changing, +7:4 mailbox" {
		t.Errorf("events: %s", got)
	}
	peer := conntest.DialPeer(t, net)
	keep := transport.CbID{Idx: 7, Val: 1}
	conntest.SendTo(t, peer, c, keep, 1, "before")
	conntest.RecvFrom(t, peer, c.Port())

	// The same configuration again, with comments and another layout: nothing.
	same := mustParse(t, `
callbacks:
  - id: "7:1"   # same
    name: keep
    handler: echo
  - {id: "7:2", handler: sink, name: gone}
  - {id: "7:3", handler: log, name: changing, settings: {output: "stderr"}}
  - {id: "7:4", handler: count, name: mailbox, mailbox: {size: 4}}
`)
	if ch, err := a.Reload(same); err != nil || !ch.Empty() {
		t.Errorf("identical reload: %v, %v", ch, err)
	}
	if got := ev.take(); got != "" {
		t.Errorf("identical reload notified %s", got)
	}

	v2 := mustParse(t, `
supervisors:
  - name: extra
callbacks:
  - {id: "7:1", handler: echo, name: keep}
  - {id: "7:3", handler: log, name: changing, settings: {output: stdout}}
  - {id: "7:4", handler: count, name: mailbox, mailbox: {size: 8}}
  - {id: "7:5", handler: echo, name: new, supervisor: extra}
`)
	ch, err = a.Reload(v2)
	if err != nil {
		t.Fatal(err)
	}
	if got := ch.String(); got != "added 7:5; removed 7:2; changed 7:3,7:4; supervisors added extra" {
		t.Errorf("reload: %s", got)
	}
	if got := ev.take(); got != "-7:2 gone, -7:3 changing, -7:4 mailbox, +7:3 changing, +7:4 mailbox, +7:5 new" {
		t.Errorf("events: %s", got)
	}
	if conntest.Info(t, c, keep).Handled != 1 {
		t.Error("the unchanged callback was restarted (its counters reset)")
	}
	if ci := conntest.Info(t, c, transport.CbID{Idx: 7, Val: 4}); ci.Mailbox != 8 {
		t.Errorf("changed mailbox = %d, want 8", ci.Mailbox)
	}
	if ci := conntest.Info(t, c, transport.CbID{Idx: 7, Val: 5}); ci.Supervisor != "extra" {
		t.Errorf("new callback under %q", ci.Supervisor)
	}
	if _, ok := c.Callback(transport.CbID{Idx: 7, Val: 2}); ok {
		t.Error("removed callback still registered")
	}
	if h, ok := a.Handler(transport.CbID{Idx: 7, Val: 5}); !ok || h != "echo" {
		t.Errorf("Handler(7:5) = %q, %v", h, ok)
	}
	conntest.SendTo(t, peer, c, transport.CbID{Idx: 7, Val: 5}, 2, "new")
	if r := conntest.RecvFrom(t, peer, c.Port()); string(r.Data) != "new" {
		t.Errorf("new callback replied %q", r.Data)
	}

	// A handler whose settings are wrong: nothing changes at all.
	bad := mustParse(t, `
callbacks:
  - {id: "7:9", handler: echo}
  - id: "7:3"
    handler: log
    settings:
      format: yaml
`)
	ch, err = a.Reload(bad)
	if ch != nil || err == nil || err.Error() != `r.yaml:7: callbacks[1].settings.format: unknown format "yaml" (want text or json)` {
		t.Fatalf("bad reload = %v, %v", ch, err)
	}
	if got := ev.take(); got != "" {
		t.Errorf("bad reload notified %s", got)
	}
	if a.Config() != v2 {
		t.Error("bad reload replaced the running configuration")
	}
	if len(c.Stats().Callbacks) != 5 { // 4 configured + the core
		t.Errorf("callbacks after a bad reload: %+v", c.Stats().Callbacks)
	}

	// Supervisors cannot be changed or removed at runtime, nor
	// connector-level settings: they are reported.
	v3 := mustParse(t, `
connector:
  batch_size: 16
  top_policy: fail-connector
supervisors:
  - {name: extra, strategy: one-for-all}
callbacks:
  - {id: "7:1", handler: echo, name: keep}
`)
	ch, err = a.Reload(v3)
	if err != nil {
		t.Fatal(err)
	}
	want := `removed 7:3,7:4,7:5; needs restart: connector.batch_size: running 64, configured 16; ` +
		`connector.top_policy: running keep-running, configured fail-connector; supervisor "extra" changed`
	if got := ch.String(); got != want {
		t.Errorf("reload:\n got %s\nwant %s", got, want)
	}
	// Emptying the file removes everything it added.
	ch, err = a.Reload(mustParse(t, ""))
	if err != nil || ch.String() != `removed 7:1; needs restart: supervisor "extra" removed (it keeps running)` {
		t.Errorf("empty reload: %v, %v", ch, err)
	}
	if got := ev.take(); got != "-7:3 changing, -7:4 mailbox, -7:5 new, -7:1 keep" {
		t.Errorf("events: %s", got)
	}
}

// TestReloadPartialFailure: an id taken meanwhile by a callback added
// otherwise fails that callback only; a callback removed otherwise is
// removed quietly.
func TestReloadPartialFailure(t *testing.T) {
	c, _ := conntest.New(t)
	a, _, err := config.Apply(c, mustParse(t, "callbacks:\n  - {id: \"7:1\", handler: echo}\n"), handlers.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DelCallback(transport.CbID{Idx: 7, Val: 1}); err != nil {
		t.Fatal(err)
	}
	if err := conntest.AddByName(c, transport.CbID{Idx: 7, Val: 2}, "mine", "sink", handlers.Settings{}); err != nil {
		t.Fatal(err)
	}
	ch, err := a.Reload(mustParse(t, "callbacks:\n  - {id: \"7:2\", handler: echo}\n  - {id: \"7:3\", handler: echo}\n"))
	if !errors.Is(err, cnactor.ErrDuplicate) {
		t.Fatalf("err = %v, want ErrDuplicate", err)
	}
	if got := ch.String(); got != "added 7:3; removed 7:1" {
		t.Errorf("changes: %s", got)
	}
	if ci := conntest.Info(t, c, transport.CbID{Idx: 7, Val: 2}); ci.Name != "mine" {
		t.Errorf("7:2 is %q", ci.Name)
	}
}

// starter is a handler that sends a message when it starts, or fails to.
type starter struct {
	handlers.Handler
	to   uint32
	fail bool
}

func (h *starter) Start(ctx context.Context, out handlers.Outbox) error {
	if h.fail {
		return errors.New("no subscription")
	}
	return out.Send(ctx, transport.Addr{Port: h.to}, &transport.Message{ID: transport.CbID{Idx: 9, Val: 9}, Data: []byte("hello")})
}

var starterPort atomic.Uint32

func init() {
	handlers.Register("test-starter", func(s handlers.Settings) (handlers.Handler, error) {
		var st struct {
			Fail bool `yaml:"fail"`
		}
		if err := s.Decode(&st); err != nil {
			return nil, err
		}
		return &starter{Handler: handlers.Sink(), to: starterPort.Load(), fail: st.Fail}, nil
	})
}

// TestAddCallbackStartsStarter: a handler built by name that is a Starter is
// started once registered, with an outbox on the connector's socket; a
// failed start removes the callback again.
func TestAddCallbackStartsStarter(t *testing.T) {
	c, net := conntest.New(t)
	peer := conntest.DialPeer(t, net)
	starterPort.Store(peer.Port())
	id := transport.CbID{Idx: 9, Val: 9}
	if err := conntest.AddByName(c, id, "s", "test-starter", handlers.Settings{}); err != nil {
		t.Fatal(err)
	}
	r := conntest.RecvFrom(t, peer, c.Port())
	if r.ID != id || string(r.Data) != "hello" || r.Seq == 0 {
		t.Errorf("start message = %+v", r)
	}
	fail, err := config.ParseSettings("", []byte("fail: true"))
	if err != nil {
		t.Fatal(err)
	}
	var ev events
	ev.watch(c)
	id2 := transport.CbID{Idx: 9, Val: 10}
	err = conntest.AddByName(c, id2, "f", "test-starter", handlers.Settings{Source: fail})
	if err == nil || err.Error() != `cnactor: start callback "f": no subscription` {
		t.Fatalf("failing start: %v", err)
	}
	if _, ok := c.Callback(id2); ok {
		t.Error("callback kept after its start failed")
	}
	if got := ev.take(); got != "+9:10 f, -9:10 f" {
		t.Errorf("events: %s", got)
	}
	if err := conntest.AddByName(c, id2, "x", "nosuch", handlers.Settings{}); !errors.Is(err, handlers.ErrUnknownHandler) {
		t.Errorf("unknown handler: %v", err)
	}
}

// Issue 13, items 5 and 6: New refuses a batch size recvmmsg cannot take
// (each slot is 16 KiB allocated up front: 1e6 of them died out of memory)
// and a receive buffer the kernel would wrap to its 2,304-byte minimum.
func TestNewRefusesUnboundedSizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  cnactor.Option
		want string
	}{
		{"batch over 1024", cnactor.WithBatchSize(cnactor.MaxBatchSize + 1), "batch size 1025: want 0..1024"},
		{"batch 1e8", cnactor.WithBatchSize(1e8), "batch size 100000000: want 0..1024"},
		{"batch negative", cnactor.WithBatchSize(-1), "batch size -1"},
		{"default mailbox negative", cnactor.WithDefaultMailbox(-9, cnactor.Backpressure), "mailbox of -9 messages: want 0 (the default, 1024) to 4194304"},
		{"default mailbox too large", cnactor.WithDefaultMailbox(cnactor.MaxMailboxSize+1, cnactor.Backpressure), "mailbox of 4194305 messages"},
		{"receive buffer 2^31", cnactor.WithReadBuffer(1 << 31), "receive buffer 2147483648 bytes: want 0..1073741823"},
		{"receive buffer max int", cnactor.WithReadBuffer(1<<63 - 1), "receive buffer 9223372036854775807 bytes"},
	} {
		net := memory.NewNetwork()
		conn, err := net.Dial()
		if err != nil {
			t.Fatal(err)
		}
		c, err := cnactor.New(cnactor.WithTransport(conn), tc.opt)
		if err == nil {
			c.Close(context.Background())
			t.Errorf("%s: New accepted it", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}
	// The bounds themselves are accepted.
	c, _ := conntest.New(t, cnactor.WithBatchSize(cnactor.MaxBatchSize), cnactor.WithReadBuffer(cnactor.MaxReadBuffer))
	if c.Port() == 0 {
		t.Error("no port")
	}
	// So is a callback's mailbox: past its bounds AddCallback refuses it
	// rather than report a size the mailbox does not have.
	id := transport.CbID{Idx: 0x7431, Val: 1}
	for _, size := range []int{-3, cnactor.MaxMailboxSize + 1} {
		if err := c.AddCallback(id, "m", handlers.Sink(), cnactor.WithMailbox(size, cnactor.DropNewest)); err == nil || !strings.Contains(err.Error(), "want 0 (the default, 1024) to 4194304") {
			t.Errorf("mailbox of %d: %v", size, err)
		}
	}
	if err := c.AddCallback(id, "m", handlers.Sink(), cnactor.WithMailbox(cnactor.MaxMailboxSize, cnactor.DropNewest)); err != nil {
		t.Errorf("mailbox at the bound: %v", err)
	}
}

// connector.max_callbacks bounds what a configuration file can add; the
// callbacks past it are refused and reported, the others run.
func TestConfigMaxCallbacks(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("c.yaml", []byte("connector: {max_callbacks: 2}\ncallbacks:\n"+
		"  - {id: \"0x7430:1\", handler: sink}\n  - {id: \"0x7430:2\", handler: sink}\n  - {id: \"0x7430:3\", handler: sink}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxCallbacks != 2 {
		t.Fatalf("MaxCallbacks = %d", cfg.MaxCallbacks)
	}
	c, _ := conntest.New(t, cfg.Options()...)
	_, ch, err := config.Apply(c, cfg, handlers.Env{})
	if !errors.Is(err, cnactor.ErrTooManyCallbacks) || len(ch.Added) != 2 {
		t.Fatalf("Apply: %v, changes %v", err, ch)
	}
	if n := c.Stats().CallbacksRefused; n != 1 {
		t.Errorf("CallbacksRefused = %d, want 1", n)
	}
}
