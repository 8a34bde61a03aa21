package main

import (
	"regexp"
	"strings"

	"github.com/cnactor/cnactor/handlers/proc"
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
