package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"os"
	"strconv"
	"strings"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/actors/remote/wire"
	"github.com/cnactor/cnactor/handlers/proc"
	"github.com/cnactor/cnactor/transport"
)

// ProcExport exports the kernel's proc connector (proc.ID, group 1): when
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
		ID:   proc.ID,
		Name: "remote proc",
		Options: []cnactor.CallbackOption{
			cnactor.WithSenderPolicy(cnactor.AllowKernel()),
			cnactor.WithMailbox(1<<16, cnactor.DropNewest),
		},
		ReadOnly:  true,
		Start:     func(ctx context.Context, c *cnactor.Connector) error { return c.SendTo(ctx, procOp(procListen), 0) },
		Stop:      func(ctx context.Context, c *cnactor.Connector) error { return c.SendTo(ctx, procOp(procIgnore), 0) },
		annotator: func() func(*transport.Message) *wire.Process { return newProcCache(procCacheSize).annotate },
	}
}

// The proc connector's subscription operations (enum proc_cn_mcast_op).
const (
	procListen    = 1
	procIgnore    = 2
	procCacheSize = 16384
)

// procOp is a 4-byte LISTEN or IGNORE with a random even ack.
func procOp(op uint32) *transport.Message {
	var ack [4]byte
	rand.Read(ack[:])
	return &transport.Message{ID: proc.ID, Ack: binary.NativeEndian.Uint32(ack[:]) &^ 1,
		Data: binary.NativeEndian.AppendUint32(nil, op)}
}

// procCache remembers what /proc said about live processes, so that an exit
// can still say what exited and how long it ran; bounded, first in first
// out. It runs in the forwarder's actor only.
type procCache struct {
	max   int
	procs map[uint32]*wire.Process
	order []uint32
	root  string
}

func newProcCache(max int) *procCache {
	return &procCache{max: max, procs: map[uint32]*wire.Process{}, root: "/proc"}
}

// annotate returns the process information for fork (processes, not
// threads), exec and exit (of a thread group leader) events, or nil.
func (c *procCache) annotate(m *transport.Message) *wire.Process {
	ev, err := proc.Decode(m.Data, m.Seq, m.Ack)
	if err != nil {
		return nil
	}
	switch e := ev.(type) {
	case *proc.Fork:
		if e.IsThread() {
			return nil
		}
		p := &wire.Process{Tgid: e.ChildTGID, StartNs: e.TimestampNS}
		if parent, ok := c.procs[e.ParentTGID]; ok {
			p.Comm, p.Cmdline, p.Exe = parent.Comm, parent.Cmdline, parent.Exe
		} else {
			p.Comm = c.readComm(e.ChildTGID)
		}
		c.put(p)
		return p
	case *proc.Exec:
		old, ok := c.procs[e.TGID]
		p := &wire.Process{Tgid: e.TGID}
		if ok {
			p.StartNs = old.StartNs
		} else {
			p.StartNs = c.readStart(e.TGID)
		}
		p.Comm = c.readComm(e.TGID)
		p.Cmdline = c.readCmdline(e.TGID)
		p.Exe, _ = os.Readlink(c.path(e.TGID, "exe"))
		c.put(p)
		return p
	case *proc.Exit:
		if e.PID != e.TGID {
			return nil
		}
		old, ok := c.procs[e.TGID]
		if !ok {
			old = &wire.Process{Tgid: e.TGID, Comm: c.readComm(e.TGID), StartNs: c.readStart(e.TGID)}
			if old.Comm == "" && old.StartNs == 0 {
				return nil
			}
		}
		p := &wire.Process{Tgid: old.Tgid, Comm: old.Comm, Cmdline: old.Cmdline, Exe: old.Exe, StartNs: old.StartNs}
		if p.StartNs != 0 && e.TimestampNS > p.StartNs {
			p.DurationNs = int64(e.TimestampNS - p.StartNs)
		}
		delete(c.procs, e.TGID)
		return p
	}
	return nil
}

func (c *procCache) put(p *wire.Process) {
	if _, ok := c.procs[p.Tgid]; !ok {
		for len(c.procs) >= c.max && len(c.order) > 0 {
			old := c.order[0]
			c.order = c.order[1:]
			delete(c.procs, old)
		}
		c.order = append(c.order, p.Tgid)
		if len(c.order) > 2*c.max { // drop keys of processes that exited
			live := c.order[:0]
			for _, k := range c.order {
				if _, ok := c.procs[k]; ok {
					live = append(live, k)
				}
			}
			c.order = live
		}
	}
	c.procs[p.Tgid] = p
}

func (c *procCache) path(pid uint32, file string) string {
	return c.root + "/" + strconv.FormatUint(uint64(pid), 10) + "/" + file
}

func (c *procCache) readComm(pid uint32) string {
	b, _ := os.ReadFile(c.path(pid, "comm"))
	return strings.TrimSuffix(string(b), "\n")
}

func (c *procCache) readCmdline(pid uint32) string {
	b, _ := os.ReadFile(c.path(pid, "cmdline"))
	return string(bytes.TrimRight(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), " "))
}

// readStart is the process start in nanoseconds since boot, from field 22
// of /proc/PID/stat (clock ticks of 1/100 s), 0 if unknown.
func (c *procCache) readStart(pid uint32) uint64 {
	b, err := os.ReadFile(c.path(pid, "stat"))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0
	}
	return ticks * (1e9 / 100)
}
