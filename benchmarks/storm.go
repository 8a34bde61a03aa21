package benchmarks

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// StormEvent is a process event reduced to what counting a storm needs.
// Every receiver of the proc scenario (cnactor, the vishvananda/netlink
// peer, forkstat's output) is turned into a list of these.
type StormEvent struct {
	Kind   byte   // 'f' fork, 'e' exec, 'x' exit
	Parent uint32 // fork: the parent's tgid
	PID    uint32 // fork: the child's pid; exec, exit: the process
	Thread bool   // fork: a thread, not a process
}

// StormCount is what a receiver captured of a storm: the forks of the
// storm's shell, and the execs and exits of those children.
type StormCount struct {
	Forks, Execs, Exits int
	// ShellExited: the shell's own exit was seen (the storm is over).
	ShellExited bool
}

// CountStorm counts the events of shell's children in events.
func CountStorm(events []StormEvent, shell uint32) StormCount {
	var c StormCount
	children := map[uint32]bool{}
	for _, ev := range events {
		switch ev.Kind {
		case 'f':
			if ev.Parent == shell && !ev.Thread && !children[ev.PID] {
				children[ev.PID] = true
				c.Forks++
			}
		case 'e':
			if children[ev.PID] {
				c.Execs++
			}
		case 'x':
			if children[ev.PID] {
				c.Exits++
			}
			if ev.PID == shell {
				c.ShellExited = true
			}
		}
	}
	return c
}

// StormShell is the shell command of a storm of n short-lived processes:
// a loop of builtins, so that the shell forks only for /bin/true.
func StormShell(n int) []string {
	return []string{"/bin/sh", "-c", "i=0; while [ $i -lt " + strconv.Itoa(n) + " ]; do /bin/true; i=$((i+1)); done"}
}

// ParseForkstat reads forkstat's default output (fork lines come in
// parent/child pairs) into events.
func ParseForkstat(r io.Reader) []StormEvent {
	var evs []StormEvent
	var parent uint32
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		pid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		switch f[1] {
		case "fork":
			if len(f) < 4 {
				continue
			}
			switch f[3] {
			case "parent":
				parent = uint32(pid)
			case "child":
				evs = append(evs, StormEvent{Kind: 'f', Parent: parent, PID: uint32(pid)})
			}
		case "exec":
			evs = append(evs, StormEvent{Kind: 'e', PID: uint32(pid)})
		case "exit":
			evs = append(evs, StormEvent{Kind: 'x', PID: uint32(pid)})
		}
	}
	return evs
}
