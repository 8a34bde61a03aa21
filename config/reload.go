package config

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/cnactor/cnactor"
	"strings"
	"sync"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
)

// AddTo adds the callback cb describes (see ParseCallback) to c, its
// handler built by the registry (handlers.New) with env.
func (cb *Callback) AddTo(c *cnactor.Connector, env handlers.Env) error {
	h, err := handlers.New(cb.Handler, handlers.Settings{Source: cb.Settings, Env: env})
	if err != nil {
		return err
	}
	return c.AddCallback(cb.ID, cb.Name, h, cb.Options()...)
}

// Applied is a configuration running on a connector: Reload moves it to
// another one by difference. Its methods are safe for concurrent use.
type Applied struct {
	c   *cnactor.Connector
	env handlers.Env

	mu      sync.Mutex
	cfg     *Config
	running map[transport.CbID]Callback // callbacks this configuration added
	sups    map[string]Supervisor       // supervisors it added
}

// Changes is what applying a configuration did.
type Changes struct {
	Added, Removed, Changed []transport.CbID // callbacks; changed ones were removed and added again
	Supervisors             []string         // supervisors added
	// NeedsRestart lists the differences that cannot be applied to a
	// running connector (connector-level settings, changed or removed
	// supervisors); the running values stay in force.
	NeedsRestart []string
}

// Empty reports whether nothing changed and nothing needs a restart.
func (ch *Changes) Empty() bool {
	return len(ch.Added)+len(ch.Removed)+len(ch.Changed)+len(ch.Supervisors)+len(ch.NeedsRestart) == 0
}

func (ch *Changes) String() string {
	if ch.Empty() {
		return "no changes"
	}
	ids := func(v []transport.CbID) string {
		s := make([]string, len(v))
		for i, id := range v {
			s[i] = id.String()
		}
		return strings.Join(s, ",")
	}
	var parts []string
	for _, p := range []struct {
		what string
		list string
	}{
		{"added", ids(ch.Added)}, {"removed", ids(ch.Removed)}, {"changed", ids(ch.Changed)},
		{"supervisors added", strings.Join(ch.Supervisors, ",")},
	} {
		if p.list != "" {
			parts = append(parts, p.what+" "+p.list)
		}
	}
	if len(ch.NeedsRestart) > 0 {
		parts = append(parts, "needs restart: "+strings.Join(ch.NeedsRestart, "; "))
	}
	return strings.Join(parts, "; ")
}

// Apply adds cfg's supervisors and callbacks to c, with handlers built by
// the registry with env. Every handler is built before anything is added,
// so that a bad setting changes nothing. Connector-level settings must be
// given to New (cfg.Options()); Apply lists those that differ from the
// connector's in Changes.NeedsRestart.
func Apply(c *cnactor.Connector, cfg *Config, env handlers.Env) (*Applied, *Changes, error) {
	a := &Applied{c: c, env: env, cfg: &Config{}, running: map[transport.CbID]Callback{}, sups: map[string]Supervisor{}}
	ch, err := a.Reload(cfg)
	if ch == nil {
		return nil, nil, err
	}
	return a, ch, err
}

// Config is the configuration last applied.
func (a *Applied) Config() *Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Handler is the handler name of a callback this configuration runs.
func (a *Applied) Handler(id transport.CbID) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cb, ok := a.running[id]
	return cb.Handler, ok
}

// Reload moves the connector to next by difference: callbacks only in the
// running configuration are removed (DelCallback), callbacks only in next
// are added, and callbacks whose description changed are removed and
// added again, so watchers and subscribers are notified as for
// AddCallback and DelCallback. New supervisors are added; changed or
// removed ones, and changed connector-level settings, are reported in
// NeedsRestart.
//
// If a handler of next cannot be built (its settings are wrong), Reload
// changes nothing and returns the error with nil Changes. Errors while
// applying (an id taken meanwhile by a callback added otherwise) do not
// stop the others: Changes tells what was done and the error what was not.
func (a *Applied) Reload(next *Config) (*Changes, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := &Changes{NeedsRestart: restartNeeded(a.c.Settings(), next)}

	// Supervisors: only additions can be applied.
	var addSups []Supervisor
	inNext := map[string]bool{}
	for _, s := range next.Supervisors {
		inNext[s.Name] = true
		old, ok := a.sups[s.Name]
		switch {
		case !ok:
			addSups = append(addSups, s)
		case !sameSupervisor(old, s):
			ch.NeedsRestart = append(ch.NeedsRestart, fmt.Sprintf("supervisor %q changed", s.Name))
		}
	}
	for _, s := range a.cfg.Supervisors {
		if !inNext[s.Name] && a.sups[s.Name].Name != "" {
			ch.NeedsRestart = append(ch.NeedsRestart, fmt.Sprintf("supervisor %q removed (it keeps running)", s.Name))
		}
	}

	// Callbacks: build every new handler first.
	type pending struct {
		cb Callback
		h  handlers.Handler
	}
	var adds []pending
	nextIDs := map[transport.CbID]bool{}
	for _, cb := range next.Callbacks {
		nextIDs[cb.ID] = true
		old, ok := a.running[cb.ID]
		if ok && old.key() == cb.key() {
			continue
		}
		h, err := handlers.New(cb.Handler, handlers.Settings{Source: cb.Settings, Env: a.env})
		if err != nil {
			return nil, err
		}
		adds = append(adds, pending{cb, h})
		if ok {
			ch.Changed = append(ch.Changed, cb.ID)
		} else {
			ch.Added = append(ch.Added, cb.ID)
		}
	}
	var removes []transport.CbID
	for _, cb := range a.cfg.Callbacks {
		if _, ok := a.running[cb.ID]; ok && !nextIDs[cb.ID] {
			removes = append(removes, cb.ID)
			ch.Removed = append(ch.Removed, cb.ID)
		}
	}
	removes = append(removes, ch.Changed...)

	var errs []error
	for _, id := range removes {
		delete(a.running, id)
		if err := a.c.DelCallback(id); err != nil && !errors.Is(err, cnactor.ErrNotFound) {
			errs = append(errs, fmt.Errorf("remove %s: %w", id, err))
		}
	}
	for _, s := range addSups {
		if err := a.c.AddSupervisor(s.Name, s.Parent, s.Spec, s.Child); err != nil {
			errs = append(errs, fmt.Errorf("add supervisor %q: %w", s.Name, err))
			continue
		}
		a.sups[s.Name] = s
		ch.Supervisors = append(ch.Supervisors, s.Name)
	}
	failed := map[transport.CbID]bool{}
	for _, p := range adds {
		if err := a.c.AddCallback(p.cb.ID, p.cb.Name, p.h, p.cb.Options()...); err != nil {
			errs = append(errs, fmt.Errorf("add %s: %w", p.cb.ID, err))
			failed[p.cb.ID] = true
			continue
		}
		a.running[p.cb.ID] = p.cb
	}
	if len(failed) > 0 {
		ch.Added = dropIDs(ch.Added, failed)
		ch.Changed = dropIDs(ch.Changed, failed)
	}
	a.cfg = next
	return ch, errors.Join(errs...)
}

func dropIDs(v []transport.CbID, drop map[transport.CbID]bool) []transport.CbID {
	out := v[:0]
	for _, id := range v {
		if !drop[id] {
			out = append(out, id)
		}
	}
	return out
}

func sameSupervisor(a, b Supervisor) bool {
	return a.Name == b.Name && a.Parent == b.Parent && a.Child == b.Child && sameSpec(a.Spec, b.Spec)
}

func sameSpec(a, b supervisor.Spec) bool {
	return a.Strategy == b.Strategy && a.Intensity == b.Intensity && a.Backoff == b.Backoff
}

// restartNeeded lists the connector-level settings of cfg that differ
// from the running connector's.
func restartNeeded(running cnactor.Settings, cfg *Config) []string {
	var out []string
	diff := func(field string, running, want any) {
		out = append(out, fmt.Sprintf("connector.%s: running %v, configured %v", field, running, want))
	}
	rb := cfg.ReceiveBuffer
	if rb == 0 {
		rb = cnactor.DefaultReadBuffer
	}
	if running.ReadBuffer != 0 && rb != running.ReadBuffer {
		diff("receive_buffer", running.ReadBuffer, rb)
	}
	if bs := cmp.Or(cfg.BatchSize, transport.DefaultBatchSize); bs != running.BatchSize {
		diff("batch_size", running.BatchSize, bs)
	}
	if mc := cmp.Or(cfg.MaxCallbacks, cnactor.DefaultMaxCallbacks); mc != running.MaxCallbacks {
		diff("max_callbacks", running.MaxCallbacks, mc)
	}
	if cfg.TopPolicy != running.TopPolicy {
		diff("top_policy", running.TopPolicy, cfg.TopPolicy)
	}
	if !sameSpec(running.Root, cfg.Root) {
		diff("root", describeSpec(running.Root), describeSpec(cfg.Root))
	}
	return out
}

func describeSpec(s supervisor.Spec) string {
	return fmt.Sprintf("{%s %d/%v backoff %v..%v}", s.Strategy, s.Intensity.MaxRestarts, s.Intensity.Period, s.Backoff.Min, s.Backoff.Max)
}
