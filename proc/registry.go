package proc

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"strings"
	"time"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

// The "proc" handler for configurations and `cnctl serve`: it subscribes to
// process events when its callback (at ID, with the kernel as the only
// allowed sender) is registered, and prints each event, as `cnctl proc`
// does, with loss reported as LOST lines.
func init() {
	handlers.Register("proc", newRegistered)
}

// Settings are the settings of the registered "proc" handler.
type Settings struct {
	// Events is a comma-separated list of kinds (see ParseWhat); default all.
	Events string `yaml:"events"`
	// Mode is auto (the default), all, kernel-filter or userspace-filter.
	Mode string `yaml:"mode"`
	// Enrich reads command names and lines from /proc (default true).
	Enrich *bool `yaml:"enrich"`
	// Format is text (the default) or json.
	Format string `yaml:"format"`
	// Output is stdout (the default), stderr, or none to only count.
	Output string `yaml:"output"`
}

var modeNames = map[string]Mode{"auto": ModeAuto, "": ModeAuto, "all": ModeAll,
	"kernel-filter": ModeKernelFilter, "userspace-filter": ModeUserspaceFilter}

func newRegistered(s handlers.Settings) (handlers.Handler, error) {
	var ps Settings
	if err := s.Decode(&ps); err != nil {
		return nil, err
	}
	mask := WhatAll
	if ps.Events != "" {
		m, err := ParseWhat(ps.Events)
		if err != nil {
			return nil, s.Errorf("events", "%s", strings.TrimPrefix(err.Error(), "proc: "))
		}
		if m != 0 {
			mask = m
		}
	}
	mode, ok := modeNames[ps.Mode]
	if !ok {
		return nil, s.Errorf("mode", "unknown mode %q (want auto, all, kernel-filter or userspace-filter)", ps.Mode)
	}
	asJSON := false
	switch ps.Format {
	case "", "text":
	case "json":
		asJSON = true
	default:
		return nil, s.Errorf("format", "unknown format %q (want text or json)", ps.Format)
	}
	var w io.Writer
	if ps.Output != "none" {
		if w, ok = s.Output(ps.Output); !ok {
			return nil, s.Errorf("output", "unknown output %q (want stdout, stderr or none)", ps.Output)
		}
	}
	enrich := ps.Enrich == nil || *ps.Enrich
	m := &Monitor{mask: mask, mode: resolveMode(mode, mask)}
	r := &registered{w: w, json: asJSON, clock: NewBootClock()}
	r.handler = newHandler(m, config{enrich: enrich, table: []TableOption{WithTableLimit(16384)}})
	r.handler.sink = r.print
	return r, nil
}

// registered is the proc handler built by name.
type registered struct {
	*handler
	w     io.Writer
	json  bool
	clock BootClock
	line  []byte
	out   handlers.Outbox // from Start, for the IGNORE at stop
}

var (
	_ handlers.SenderDeclarer = (*registered)(nil)
	_ handlers.Starter        = (*registered)(nil)
	_ handlers.StatsReporter  = (*registered)(nil)
	_ handlers.LossObserver   = (*registered)(nil)
	_ handlers.Stopper        = (*registered)(nil)
)

// Senders is the kernel only: proc events come from the kernel, and any
// other sender could forge exits and fake loss (a forged seq).
func (r *registered) Senders() dispatch.SenderPolicy { return dispatch.AllowKernel() }

// Start subscribes: LISTEN to the kernel (port 0, no groups), in the form
// of the handler's mode. It does not wait for the acknowledgement.
func (r *registered) Start(ctx context.Context, out handlers.Outbox) error {
	r.out = out
	return out.Send(ctx, transport.Addr{}, SubscriptionMessage(OpListen, r.m.mode, r.m.mask))
}

// OnStop sends IGNORE when the callback goes for good, so that the kernel
// stops generating events for this subscriber (since 6.6 it counts
// listeners per socket). Restarts do not call it.
func (r *registered) OnStop() {
	if r.out == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r.out.Send(ctx, transport.Addr{}, SubscriptionMessage(OpIgnore, r.m.mode, r.m.mask))
}

// SubscriptionMessage is a LISTEN or IGNORE (op) for the proc connector in
// the form of mode (the 8-byte filter of kernels 6.6+ for ModeKernelFilter,
// else the 4-byte op), with a random even ack. Send it to port 0 with no
// groups.
func SubscriptionMessage(op uint32, mode Mode, mask What) *transport.Message {
	data := binary.NativeEndian.AppendUint32(nil, op)
	if mode == ModeKernelFilter {
		data = binary.NativeEndian.AppendUint32(data, uint32(mask))
	}
	var ack [4]byte
	rand.Read(ack[:])
	return &transport.Message{ID: ID(), Ack: binary.NativeEndian.Uint32(ack[:]) &^ 1, Data: data}
}

// Stats reports the handler's counters beside the runtime's.
func (r *registered) Stats() map[string]uint64 {
	return map[string]uint64{"events": r.events.Load(), "lost": r.lost.Load(), "filtered": r.filtered.Load()}
}

func (r *registered) print(ev Event) {
	if r.w == nil {
		return
	}
	if _, isAck := ev.(*Ack); isAck && !r.json {
		return
	}
	if r.json {
		r.line = append(AppendJSON(r.line[:0], ev), '\n')
	} else {
		r.line = AppendText(r.line[:0], ev, r.clock)
	}
	r.w.Write(r.line)
}
