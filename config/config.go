package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/yamlconf"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"gopkg.in/yaml.v3"
)

// Config is a connector and its callbacks as a configuration file
// describes them (see Load for the format). It is checked when
// parsed; the handlers' own settings are checked by their factories when
// the configuration is applied.
type Config struct {
	// File is the name errors are reported under.
	File string

	// Connector-level settings, fixed once the connector runs: a reload
	// that changes them reports that a restart is needed (zero: default).
	ReceiveBuffer int
	BatchSize     int
	MaxCallbacks  int
	TopPolicy     cnactor.TopPolicy
	Root          supervisor.Spec // the root supervisor; zero fields take the defaults

	// Defaults of the callbacks that do not choose their own.
	Mailbox      int
	Overflow     cnactor.Overflow
	StallTimeout time.Duration
	Senders      dispatch.SenderPolicy
	sendersSet   bool // connector.senders was given

	Supervisors []Supervisor
	Callbacks   []Callback
}

// Supervisor is a named supervisor (see AddSupervisor).
type Supervisor struct {
	Name   string
	Parent string // "" for the root
	Spec   supervisor.Spec
	Child  supervisor.ChildSpec // how the parent treats it
}

// Callback is one callback described by data: an entry of a
// configuration file's callbacks, or a request of a management API.
type Callback struct {
	ID      transport.CbID
	Name    string
	Handler string // a name registered with handlers.Register
	// Settings are the handler's own (nil: none).
	Settings handlers.SettingsSource

	Supervisor      string // "" for the root
	Restart         supervisor.RestartType
	ShutdownTimeout time.Duration // 0: supervisor.DefaultShutdownTimeout
	// Mailbox, Overflow and StallTimeout: with all zero, the connector's
	// default.
	Mailbox      int
	Overflow     cnactor.Overflow
	StallTimeout time.Duration
	// Senders is who may reach the callback. The zero policy, when the
	// configuration names none (neither here nor connector.senders), lets
	// the handler's declared policy apply (handlers.SenderDeclarer), else
	// anyone.
	Senders dispatch.SenderPolicy

	sendersSet bool   // senders came from the file (this entry or connector.senders)
	settings   string // canonical text of the settings, to tell changes
	parsed     bool   // Settings came from text: settings describes them
}

// Options are the callback options the configuration asks for.
func (cb *Callback) Options() []cnactor.CallbackOption {
	opts := []cnactor.CallbackOption{cnactor.WithRestart(cb.Restart)}
	// A policy set in code (not parsed) counts as given unless it is the
	// zero one, which leaves the handler's declared policy in force.
	if cb.sendersSet || cb.Senders.String() != dispatch.AllowAnyone().String() {
		opts = append(opts, cnactor.WithSenderPolicy(cb.Senders))
	}
	if cb.Supervisor != "" {
		opts = append(opts, cnactor.WithSupervisor(cb.Supervisor))
	}
	if cb.ShutdownTimeout > 0 {
		opts = append(opts, cnactor.WithShutdownTimeout(cb.ShutdownTimeout))
	}
	if cb.Mailbox != 0 || cb.Overflow != cnactor.Backpressure {
		opts = append(opts, cnactor.WithMailbox(cb.Mailbox, cb.Overflow))
	}
	if cb.StallTimeout > 0 {
		opts = append(opts, cnactor.WithStallTimeout(cb.StallTimeout))
	}
	return opts
}

// key is equal for two callbacks that would run the same way.
func (cb *Callback) key() string {
	return fmt.Sprintf("%s|%s|%s|%s|%s|%d|%d|%s|%d|%s|%v|%s", cb.ID, cb.Name, cb.Handler, cb.Supervisor, cb.Restart,
		cb.ShutdownTimeout, cb.Mailbox, cb.Overflow, cb.StallTimeout, cb.Senders, cb.sendersSet, cb.settingsKey())
}

func (cb *Callback) settingsKey() string {
	if cb.parsed || cb.Settings == nil {
		return cb.settings
	}
	return fmt.Sprintf("%p", cb.Settings) // built in code: equal only to itself
}

// Options are the connector options the configuration sets.
func (cfg *Config) Options() []cnactor.Option {
	opts := []cnactor.Option{cnactor.WithTopPolicy(cfg.TopPolicy), cnactor.WithRootSupervisor(cfg.Root)}
	if cfg.ReceiveBuffer > 0 {
		opts = append(opts, cnactor.WithReadBuffer(cfg.ReceiveBuffer))
	}
	if cfg.BatchSize > 0 {
		opts = append(opts, cnactor.WithBatchSize(cfg.BatchSize))
	}
	if cfg.MaxCallbacks > 0 {
		opts = append(opts, cnactor.WithMaxCallbacks(cfg.MaxCallbacks))
	}
	if cfg.Mailbox != 0 || cfg.Overflow != cnactor.Backpressure {
		opts = append(opts, cnactor.WithDefaultMailbox(cfg.Mailbox, cfg.Overflow))
	}
	if cfg.StallTimeout > 0 {
		opts = append(opts, cnactor.WithDefaultStallTimeout(cfg.StallTimeout))
	}
	return opts
}

// Load reads and checks a configuration file:
//
//	connector:                    # all optional
//	  receive_buffer: 4194304     # bytes, at most cnactor.MaxReadBuffer (needs a restart to change)
//	  batch_size: 64              # datagrams per receive, at most 1024 (needs a restart)
//	  max_callbacks: 65536        # callbacks at most (needs a restart)
//	  top_policy: keep-running    # or fail-connector (needs a restart)
//	  root: {strategy: one-for-one, intensity: {max_restarts: 100, period: 10s}}
//	  mailbox: {size: 1024, overflow: backpressure, stall_timeout: 100ms} # callbacks' default
//	  senders: anyone             # callbacks' default: anyone | kernel | {ports: [..]} | {uids: [..]}
//	supervisors:
//	  - name: workers
//	    parent: root              # or a supervisor listed before
//	    strategy: one-for-all     # one-for-one | one-for-all | rest-for-one
//	    intensity: {max_restarts: 10, period: 10s}
//	    backoff: {min: 1ms, max: 1s, jitter: 0.2, reset_after: 1s}   # or none
//	    restart: permanent        # how the parent treats it
//	    shutdown_timeout: 5s
//	callbacks:
//	  - id: "7:1"                 # IDX:VAL, decimal or 0x hex
//	    name: upper               # default: the handler's name
//	    handler: echo             # a registered handler (handlers.Names)
//	    settings: {}              # the handler's own
//	    supervisor: workers       # default root
//	    restart: permanent        # permanent | transient | temporary
//	    shutdown_timeout: 5s
//	    mailbox: {size: 128, overflow: drop-oldest}
//	    senders: {ports: [0]}     # default connector.senders, else the handler's own
//	                              # (proc: kernel), else anyone
//
// Every error names the file, the line and the field, as
// "config.yaml:12: callbacks[1].mailbox.overflow: unknown policy ...".
// Unknown fields are errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses and checks a configuration (see Load); file
// names it in errors.
func Parse(file string, data []byte) (*Config, error) {
	n, err := yamlconf.Parse(file, data)
	if err != nil {
		return nil, err
	}
	if err := oneDocument(file, data); err != nil {
		return nil, err
	}
	d := &yamlconf.Decoder{File: file}
	var fc fileConfig
	if err := d.Decode(n, "", &fc); err != nil {
		return nil, err
	}
	return fc.resolve(d, file)
}

// oneDocument refuses a second YAML document: the parser reads only the
// first, and a file whose callbacks sit after a "---" would otherwise run
// without them, silently.
func oneDocument(file string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first, second yaml.Node
	if err := dec.Decode(&first); err != nil {
		return nil // empty, or an error yamlconf.Parse has reported
	}
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return &yamlconf.Error{File: file, Err: fmt.Errorf("a second YAML document: %v", err)}
	}
	if len(second.Content) == 0 || second.Content[0].ShortTag() == "!!null" {
		return nil // a trailing "---" adds nothing
	}
	return &yamlconf.Error{File: file, Line: second.Content[0].Line, Err: errors.New("a second YAML document starts here: a configuration is one document")}
}

// ParseCallback parses one callback, as a callbacks entry of a
// configuration file (YAML or JSON, such as the body of a request:
// {"id": "7:1", "handler": "echo"}). origin names it in errors ("" for
// none: errors then only name the field). Defaults are the connector's.
func ParseCallback(origin string, data []byte) (*Callback, error) {
	n, err := yamlconf.Parse(origin, data)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, &yamlconf.Error{File: origin, Err: errors.New("empty callback: want at least id and handler")}
	}
	if err := oneDocument(origin, data); err != nil {
		return nil, err
	}
	d := &yamlconf.Decoder{File: origin}
	var fcb fileCallback
	if err := d.Decode(n, "", &fcb); err != nil {
		return nil, err
	}
	cb, err := fcb.resolve(&Config{}, nil)
	if err != nil {
		return nil, err
	}
	return &cb, nil
}

// ParseSettings makes a handler's settings from YAML or JSON text (origin
// names it in errors, "" for none), for handlers.New.
func ParseSettings(origin string, data []byte) (handlers.SettingsSource, error) {
	n, err := yamlconf.Parse(origin, data)
	if err != nil {
		return nil, err
	}
	d := &yamlconf.Decoder{File: origin}
	p := d.At(n, "settings", 1)
	if n != nil && n.Kind != yaml.MappingNode {
		return nil, p.Errorf("", "want a mapping")
	}
	return p, nil
}

// The file's layout. Fields are exported for the decoder only.
