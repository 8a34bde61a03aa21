package main

import (
	"fmt"
	"os/user"
	"strconv"

	"github.com/cnactor/cnactor/proc"
)

// textOpts are cnctl proc's optional text columns.
type textOpts struct {
	form                     proc.NameForm
	extra, glyphs, container bool
}

// textHeader is the header of cnctl proc's text columns.
func textHeader(extra, container bool) string {
	h := "Time            Event        PID Info                     Duration "
	if extra {
		h += "User       TTY     "
	}
	if container {
		h += "Container    "
	}
	return h + "Process\n"
}

// glyphs mark event kinds in ASCII (forkstat -g uses Unicode symbols).
var glyphs = map[string]string{"fork": "+", "clone": "&", "exec": ">", "exit": "-", "comm": "=", "uid": "u",
	"gid": "g", "sid": "s", "ptrace": "p", "coredump": "!", "LOST": "?"}

// appendProcText is proc.AppendTextAs with cnctl's optional columns.
func appendProcText(b []byte, ev proc.Event, clock proc.BootClock, o textOpts, users *userNames) []byte {
	if !o.extra && !o.glyphs && !o.container {
		return proc.AppendTextAs(b, ev, clock, o.form)
	}
	name := proc.EventName(ev)
	if o.glyphs {
		g := glyphs[name]
		if g == "" {
			g = " "
		}
		name = g + " " + name
	}
	p := proc.ProcessOf(ev)
	b = fmt.Appendf(b, "%-15s %-8s %7d %-22s %10s ", clock.Wall(ev.Head().TimestampNS).Format("15:04:05.000000"),
		name, proc.PID(ev), proc.Info(ev), proc.Duration(p))
	if o.extra {
		u, tty := "", ""
		if p != nil {
			u, tty = users.name(p.UID), ttyName(p.TTY)
		}
		b = fmt.Appendf(b, "%-10s %-7s ", u, tty)
	}
	if o.container {
		c := "-"
		if p != nil && p.Container != "" {
			c = p.Container[:min(12, len(p.Container))]
		}
		b = fmt.Appendf(b, "%-12s ", c)
	}
	b = append(b, proc.Name(p, o.form)...)
	if p != nil && p.Stale {
		b = append(b, " (before exec: gone before /proc was read)"...)
	}
	return append(b, '\n')
}

// ttyName decodes stat's tty_nr: "pts/3", "tty1", "ttyS0", "?" for none.
func ttyName(nr uint32) string {
	if nr == 0 {
		return "?"
	}
	major := (nr >> 8) & 0xfff
	minor := nr&0xff | (nr>>12)&0xfff00
	switch {
	case major >= 136 && major <= 143:
		return "pts/" + strconv.FormatUint(uint64(minor+(major-136)*256), 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatUint(uint64(minor), 10)
	case major == 4:
		return "ttyS" + strconv.FormatUint(uint64(minor-64), 10)
	}
	return strconv.FormatUint(uint64(major), 10) + ":" + strconv.FormatUint(uint64(minor), 10)
}

// userNames caches uid -> user name lookups, boundedly.
type userNames struct{ names map[uint32]string }

const maxUserNames = 1024

func newUserNames() *userNames { return &userNames{names: map[uint32]string{}} }

func (u *userNames) name(uid uint32) string {
	if n, ok := u.names[uid]; ok {
		return n
	}
	n := strconv.FormatUint(uint64(uid), 10)
	if usr, err := user.LookupId(n); err == nil {
		n = usr.Username
	}
	if len(u.names) < maxUserNames {
		u.names[uid] = n
	}
	return n
}

// lookupUID takes a uid or a user name.
func lookupUID(s string) (uint32, error) {
	if v, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(v), nil
	}
	usr, err := user.Lookup(s)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(usr.Uid, 10, 32)
	return uint32(v), err
}
