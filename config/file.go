package config

// The YAML form of a configuration file, and its checked resolution into
// a Config.

import (
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/yamlconf"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"gopkg.in/yaml.v3"
)

type fileConfig struct {
	At          yamlconf.Place   `yaml:"-"`
	Connector   fileConnector    `yaml:"connector"`
	Supervisors []fileSupervisor `yaml:"supervisors"`
	Callbacks   []fileCallback   `yaml:"callbacks"`
}

type fileConnector struct {
	At            yamlconf.Place `yaml:"-"`
	ReceiveBuffer int            `yaml:"receive_buffer"`
	BatchSize     int            `yaml:"batch_size"`
	MaxCallbacks  int            `yaml:"max_callbacks"`
	TopPolicy     string         `yaml:"top_policy"`
	Root          *fileSpec      `yaml:"root"`
	Mailbox       *fileMailbox   `yaml:"mailbox"`
	Senders       *fileSenders   `yaml:"senders"`
}

type fileSpec struct {
	At        yamlconf.Place `yaml:"-"`
	Strategy  string         `yaml:"strategy"`
	Intensity *fileIntensity `yaml:"intensity"`
	Backoff   *fileBackoff   `yaml:"backoff"`
}

type fileSupervisor struct {
	At              yamlconf.Place `yaml:"-"`
	Name            string         `yaml:"name"`
	Parent          string         `yaml:"parent"`
	Strategy        string         `yaml:"strategy"`
	Intensity       *fileIntensity `yaml:"intensity"`
	Backoff         *fileBackoff   `yaml:"backoff"`
	Restart         string         `yaml:"restart"`
	ShutdownTimeout time.Duration  `yaml:"shutdown_timeout"`
}

type fileIntensity struct {
	At          yamlconf.Place `yaml:"-"`
	MaxRestarts *int           `yaml:"max_restarts"`
	Period      *time.Duration `yaml:"period"`
}

type fileBackoff struct {
	None   bool
	Fields fileBackoffFields
}

type fileBackoffFields struct {
	At         yamlconf.Place `yaml:"-"`
	Min        *time.Duration `yaml:"min"`
	Max        *time.Duration `yaml:"max"`
	Jitter     *float64       `yaml:"jitter"`
	ResetAfter *time.Duration `yaml:"reset_after"`
}

// UnmarshalYAMLNode takes "none" or the fields.
func (b *fileBackoff) UnmarshalYAMLNode(d *yamlconf.Decoder, n *yaml.Node, field string) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value != "none" {
			return d.Errorf(n, field, "want none or a mapping with fields %s", strings.Join(yamlconf.FieldNames(reflect.TypeFor[fileBackoffFields]()), ", "))
		}
		b.None = true
		return nil
	}
	return d.Decode(n, field, &b.Fields)
}

type fileMailbox struct {
	At           yamlconf.Place `yaml:"-"`
	Size         int            `yaml:"size"`
	Overflow     string         `yaml:"overflow"`
	StallTimeout time.Duration  `yaml:"stall_timeout"`
}

type fileSenders struct {
	policy dispatch.SenderPolicy
}

const sendersWant = "want anyone, kernel, {ports: [...]} or {uids: [...]}"

// UnmarshalYAMLNode takes anyone, kernel, {ports: [...]} or {uids: [...]}.
func (s *fileSenders) UnmarshalYAMLNode(d *yamlconf.Decoder, n *yaml.Node, field string) error {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case "anyone":
			s.policy = dispatch.AllowAnyone()
		case "kernel":
			s.policy = dispatch.AllowKernel()
		default:
			return d.Errorf(n, field, "unknown policy %q (%s)", n.Value, sendersWant)
		}
		return nil
	case yaml.MappingNode:
		var m struct {
			Ports *[]uint32 `yaml:"ports"`
			UIDs  *[]uint32 `yaml:"uids"`
		}
		if err := d.Decode(n, field, &m); err != nil {
			return err
		}
		switch {
		case m.Ports != nil && m.UIDs != nil:
			return d.Errorf(n, field, "give ports or uids, not both")
		case m.Ports != nil:
			s.policy = dispatch.AllowPorts(*m.Ports...)
		case m.UIDs != nil:
			s.policy = dispatch.AllowUIDs(*m.UIDs...)
		default:
			return d.Errorf(n, field, "empty policy (%s)", sendersWant)
		}
		return nil
	}
	return d.Errorf(n, field, "%s", sendersWant)
}

type fileCallback struct {
	At              yamlconf.Place `yaml:"-"`
	ID              string         `yaml:"id"`
	Name            string         `yaml:"name"`
	Handler         string         `yaml:"handler"`
	Settings        any            `yaml:"settings"`
	Supervisor      string         `yaml:"supervisor"`
	Restart         string         `yaml:"restart"`
	ShutdownTimeout time.Duration  `yaml:"shutdown_timeout"`
	Mailbox         *fileMailbox   `yaml:"mailbox"`
	Senders         *fileSenders   `yaml:"senders"`
}

var (
	restartNames  = []string{"permanent", "transient", "temporary"}
	strategyNames = []string{"one-for-one", "one-for-all", "rest-for-one"}
	overflowNames = map[string]cnactor.Overflow{"backpressure": cnactor.Backpressure, "drop-newest": cnactor.DropNewest, "drop-oldest": cnactor.DropOldest}
	topNames      = map[string]cnactor.TopPolicy{"keep-running": cnactor.KeepRunning, "fail-connector": cnactor.FailConnector}
)

func parseRestart(p yamlconf.Place, key, s string) (supervisor.RestartType, error) {
	if s == "" {
		return supervisor.Permanent, nil
	}
	i := slices.Index(restartNames, s)
	if i < 0 {
		return 0, p.Errorf(key, "unknown restart type %q (want permanent, transient or temporary)", s)
	}
	return supervisor.RestartType(i), nil
}

func (m *fileMailbox) resolve(size int, overflow cnactor.Overflow, stall time.Duration) (int, cnactor.Overflow, time.Duration, error) {
	if m == nil {
		return size, overflow, stall, nil
	}
	if m.Size < 0 || m.Size > cnactor.MaxMailboxSize {
		return 0, 0, 0, m.At.Errorf("size", "%d: want 0 (the default) to %d", m.Size, cnactor.MaxMailboxSize)
	}
	if m.At.Has("size") {
		size = m.Size
	}
	if m.Overflow != "" {
		o, ok := overflowNames[m.Overflow]
		if !ok {
			return 0, 0, 0, m.At.Errorf("overflow", "unknown policy %q (want backpressure, drop-newest or drop-oldest)", m.Overflow)
		}
		overflow = o
	}
	if m.StallTimeout < 0 {
		return 0, 0, 0, m.At.Errorf("stall_timeout", "must not be negative")
	}
	if m.At.Has("stall_timeout") {
		stall = m.StallTimeout
	}
	return size, overflow, stall, nil
}

func (fs *fileSpec) resolve() (supervisor.Spec, error) {
	spec := supervisor.Spec{}
	if fs == nil {
		return spec, nil
	}
	return resolveSpec(fs.At, fs.Strategy, fs.Intensity, fs.Backoff)
}

func resolveSpec(p yamlconf.Place, strategy string, in *fileIntensity, bo *fileBackoff) (supervisor.Spec, error) {
	var spec supervisor.Spec
	if strategy != "" {
		i := slices.Index(strategyNames, strategy)
		if i < 0 {
			return spec, p.Errorf("strategy", "unknown strategy %q (want one-for-one, one-for-all or rest-for-one)", strategy)
		}
		spec.Strategy = supervisor.Strategy(i)
	}
	if in != nil {
		spec.Intensity = supervisor.DefaultIntensity()
		if in.MaxRestarts != nil {
			if *in.MaxRestarts < 1 {
				return spec, in.At.Errorf("max_restarts", "must be at least 1")
			}
			spec.Intensity.MaxRestarts = *in.MaxRestarts
		}
		if in.Period != nil {
			if *in.Period <= 0 {
				return spec, in.At.Errorf("period", "must be positive")
			}
			spec.Intensity.Period = *in.Period
		}
	}
	if bo != nil {
		if bo.None {
			spec.Backoff = supervisor.NoBackoff()
		} else {
			f := bo.Fields
			b := supervisor.DefaultBackoff()
			for _, x := range []struct {
				key string
				v   *time.Duration
				to  *time.Duration
			}{{"min", f.Min, &b.Min}, {"max", f.Max, &b.Max}, {"reset_after", f.ResetAfter, &b.ResetAfter}} {
				if x.v != nil {
					*x.to = *x.v
				}
			}
			if f.Jitter != nil {
				if *f.Jitter < 0 || *f.Jitter > 1 {
					return spec, f.At.Errorf("jitter", "must be between 0 and 1, got %g", *f.Jitter)
				}
				b.Jitter = *f.Jitter
			}
			if b.Min <= 0 {
				return spec, f.At.Errorf("min", "must be positive (use backoff: none for no delay)")
			}
			if b.Max < b.Min {
				return spec, f.At.Errorf("max", "%v is below min %v", b.Max, b.Min)
			}
			spec.Backoff = b
		}
	}
	return spec, nil
}

func (fc *fileConfig) resolve(d *yamlconf.Decoder, file string) (*Config, error) {
	cfg := &Config{File: file}
	cn := &fc.Connector
	if cn.ReceiveBuffer < 0 || cn.ReceiveBuffer > cnactor.MaxReadBuffer {
		return nil, cn.At.Errorf("receive_buffer", "%d bytes: want 0..%d (the most the kernel takes)", cn.ReceiveBuffer, cnactor.MaxReadBuffer)
	}
	if cn.BatchSize < 0 || cn.BatchSize > cnactor.MaxBatchSize {
		return nil, cn.At.Errorf("batch_size", "%d: want 0..%d (recvmmsg takes no more per call)", cn.BatchSize, cnactor.MaxBatchSize)
	}
	if cn.MaxCallbacks < 0 || (cn.At.Has("max_callbacks") && cn.MaxCallbacks == 0) {
		return nil, cn.At.Errorf("max_callbacks", "%d: want at least 1", cn.MaxCallbacks)
	}
	cfg.ReceiveBuffer, cfg.BatchSize, cfg.MaxCallbacks = cn.ReceiveBuffer, cn.BatchSize, cn.MaxCallbacks
	if cn.TopPolicy != "" {
		tp, ok := topNames[cn.TopPolicy]
		if !ok {
			return nil, cn.At.Errorf("top_policy", "unknown policy %q (want keep-running or fail-connector)", cn.TopPolicy)
		}
		cfg.TopPolicy = tp
	}
	var err error
	if cfg.Root, err = cn.Root.resolve(); err != nil {
		return nil, err
	}
	if cfg.Mailbox, cfg.Overflow, cfg.StallTimeout, err = cn.Mailbox.resolve(0, cnactor.Backpressure, 0); err != nil {
		return nil, err
	}
	if cn.Senders != nil {
		cfg.Senders, cfg.sendersSet = cn.Senders.policy, true
	}

	sups := map[string]int{cnactor.RootSupervisor: -1}
	for i := range fc.Supervisors {
		fs := &fc.Supervisors[i]
		switch prev, dup := sups[fs.Name]; {
		case fs.Name == "":
			return nil, fs.At.Errorf("name", "missing: every supervisor needs a name")
		case dup && prev < 0:
			return nil, fs.At.Errorf("name", "%q is the connector's own supervisor (configure it under connector.root)", fs.Name)
		case dup:
			return nil, fs.At.Errorf("name", "%q is already used by supervisors[%d]", fs.Name, prev)
		}
		if _, ok := sups[fs.Parent]; !ok && fs.Parent != "" {
			return nil, fs.At.Errorf("parent", "unknown supervisor %q (want root or one listed before)", fs.Parent)
		}
		sc := Supervisor{Name: fs.Name, Parent: fs.Parent}
		if sc.Spec, err = resolveSpec(fs.At, fs.Strategy, fs.Intensity, fs.Backoff); err != nil {
			return nil, err
		}
		if sc.Child.Restart, err = parseRestart(fs.At, "restart", fs.Restart); err != nil {
			return nil, err
		}
		sc.Child.ShutdownTimeout = fs.ShutdownTimeout
		sups[fs.Name] = i
		cfg.Supervisors = append(cfg.Supervisors, sc)
	}

	ids := map[transport.CbID]int{}
	for i := range fc.Callbacks {
		fcb := &fc.Callbacks[i]
		cb, err := fcb.resolve(cfg, sups)
		if err != nil {
			return nil, err
		}
		if prev, dup := ids[cb.ID]; dup {
			return nil, fcb.At.Errorf("id", "%s is already used by callbacks[%d]", cb.ID, prev)
		}
		ids[cb.ID] = i
		cfg.Callbacks = append(cfg.Callbacks, cb)
	}
	return cfg, nil
}

// resolve checks a callback entry and applies cfg's defaults; sups, when
// not nil, are the supervisors it may name.
func (f *fileCallback) resolve(cfg *Config, sups map[string]int) (Callback, error) {
	cb := Callback{Name: f.Name, Handler: f.Handler, Supervisor: f.Supervisor, ShutdownTimeout: f.ShutdownTimeout}
	if f.ID == "" {
		return cb, f.At.Errorf("id", "missing: want IDX:VAL")
	}
	id, err := transport.ParseCbID(f.ID)
	if err != nil {
		return cb, f.At.Errorf("id", "invalid id %q: want IDX:VAL, each a decimal or 0x hex number below 2^32", f.ID)
	}
	if id == dispatch.CoreID() {
		return cb, f.At.Errorf("id", "%s is the connector core's own id", id)
	}
	cb.ID = id
	if f.Handler == "" {
		return cb, f.At.Errorf("handler", "missing: want one of %s", strings.Join(handlers.Names(), ", "))
	}
	if _, ok := handlers.Lookup(f.Handler); !ok {
		return cb, f.At.Errorf("handler", "unknown handler %q (have %s)", f.Handler, strings.Join(handlers.Names(), ", "))
	}
	if cb.Name == "" {
		cb.Name = f.Handler
	}
	settings := f.At.Child("settings")
	if settings.Node != nil && settings.Node.Kind != yaml.MappingNode && settings.Node.ShortTag() != "!!null" {
		return cb, settings.Errorf("", "want a mapping of the handler's settings")
	}
	cb.Settings, cb.settings, cb.parsed = settings, settings.Canonical(), true
	if sups != nil && cb.Supervisor != "" {
		if _, ok := sups[cb.Supervisor]; !ok {
			return cb, f.At.Errorf("supervisor", "unknown supervisor %q (want root or one in supervisors)", cb.Supervisor)
		}
	}
	if cb.Restart, err = parseRestart(f.At, "restart", f.Restart); err != nil {
		return cb, err
	}
	if cb.Mailbox, cb.Overflow, cb.StallTimeout, err = f.Mailbox.resolve(cfg.Mailbox, cfg.Overflow, cfg.StallTimeout); err != nil {
		return cb, err
	}
	cb.Senders, cb.sendersSet = cfg.Senders, cfg.sendersSet
	if f.Senders != nil {
		cb.Senders, cb.sendersSet = f.Senders.policy, true
	}
	return cb, nil
}
