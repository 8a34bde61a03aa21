package main

import (
	"regexp"
	"strings"

	"github.com/cnactor/cnactor/proc"
)

// procFilter decides which events cnctl proc shows. Losses and
// acknowledgements always pass: a filter never hides that events are
// missing.
type procFilter struct {
	pid       u32Flag
	tree      bool
	table     *proc.Table // for -tree; nil without enrichment
	comm      *regexp.Regexp
	cmdline   *regexp.Regexp
	uid       *uint32
	pgid, sid u32Flag
	cgroup    *regexp.Regexp
	container string
}

// byProcess reports whether a filter needs the event's process.
func (f *procFilter) byProcess() bool {
	return f.comm != nil || f.cmdline != nil || f.uid != nil || f.pgid.set || f.sid.set || f.cgroup != nil || f.container != ""
}

func (f *procFilter) match(ev proc.Event) bool {
	switch ev.(type) {
	case *proc.Lost, *proc.Ack:
		return true
	}
	if f.pid.set && !proc.Involves(ev, f.pid.v) {
		if !f.tree || f.table == nil || !f.table.Descends(subjectTGID(ev), f.pid.v) {
			return false
		}
	}
	if !f.byProcess() {
		return true
	}
	p := proc.ProcessOf(ev)
	if p == nil {
		return false
	}
	return (f.comm == nil || f.comm.MatchString(p.Comm)) &&
		(f.cmdline == nil || f.cmdline.MatchString(p.Cmdline)) &&
		(f.uid == nil || p.UID == *f.uid) &&
		(!f.pgid.set || p.PGID == f.pgid.v) &&
		(!f.sid.set || p.SID == f.sid.v) &&
		(f.cgroup == nil || f.cgroup.MatchString(p.Cgroup)) &&
		(f.container == "" || p.Container != "" && strings.HasPrefix(p.Container, f.container))
}

// subjectTGID is the thread group an event is about.
func subjectTGID(ev proc.Event) uint32 {
	if p := proc.ProcessOf(ev); p != nil {
		return p.TGID
	}
	switch e := ev.(type) {
	case *proc.Fork:
		return e.ChildTGID
	case *proc.Exit:
		return e.TGID
	}
	return proc.PID(ev)
}

// readable is the part of the filter decided before an exec is read from
// /proc, so that the table reads only what may be shown: the place in the
// tree, which forks always give. Owner, group, session and cgroup can
// change between a fork and an exec without an event the table sees
// (setpgid, a runtime moving the process into a container's cgroup), so
// those are checked on what the exec read. nil without -pid.
func (f *procFilter) readable() proc.ReadFilter {
	if !f.pid.set {
		return nil
	}
	return func(p *proc.Process, descends func(uint32) bool) bool {
		return p.TGID == f.pid.v || p.PPID == f.pid.v || f.tree && descends(f.pid.v)
	}
}
