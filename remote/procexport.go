package remote

import (
	"context"

	"github.com/cnactor/cnactor/dispatch"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
)

// ProcExport exports the kernel's proc connector (proc.ID(), group 1): when
// the first subscriber registers, the node registers the forwarding callback
// (the kernel as its only allowed sender) and subscribes to every event
// kind, the way proc.Listen does (LISTEN to port 0, no groups, never waiting
// for the acknowledgement); when the last one leaves, it sends IGNORE. Each
// fork, exec and exit event carries what the node's /proc said about the
// process (command name and line, executable, start, duration), so that
// subscribers on other hosts can show it. Subscribers filter; the per-CPU
// sequence numbers of the unfiltered stream let them count every lost event
// (see ListenProc). The export is read-only.
func ProcExport() Export {
	return Export{
		ID:   proc.ID(),
		Name: "remote proc",
		Options: []cnactor.CallbackOption{
			cnactor.WithSenderPolicy(dispatch.AllowKernel()),
			cnactor.WithMailbox(1<<16, cnactor.DropNewest),
		},
		ReadOnly: true,
		Start: func(ctx context.Context, c *cnactor.Connector) error {
			return c.Send(ctx, transport.Kernel(), proc.SubscriptionMessage(proc.OpListen, proc.ModeAll, proc.WhatAll))
		},
		Stop: func(ctx context.Context, c *cnactor.Connector) error {
			return c.Send(ctx, transport.Kernel(), proc.SubscriptionMessage(proc.OpIgnore, proc.ModeAll, proc.WhatAll))
		},
		annotator: newProcAnnotator,
	}
}

// procCacheSize bounds how many processes the export remembers.
const procCacheSize = 16384

// newProcAnnotator returns what attaches the node's /proc information to
// fork, exec and exit events: a proc.Table of its own (not seeded: the
// first event about a process it has not seen reads it from /proc), fed
// in order by the forwarder's actor.
func newProcAnnotator() func(*transport.Message) *wire.Process {
	table := proc.NewTable(proc.WithTableLimit(procCacheSize))
	return func(m *transport.Message) *wire.Process {
		ev, err := proc.Decode(m.Data, m.Seq, m.Ack)
		if err != nil {
			return nil
		}
		table.Update(ev)
		p := proc.ProcessOf(ev)
		if p == nil {
			return nil
		}
		return &wire.Process{Tgid: p.TGID, Comm: p.Comm, Cmdline: p.Cmdline, Exe: p.Exe,
			StartNs: p.StartNS, DurationNs: int64(p.Duration)}
	}
}
