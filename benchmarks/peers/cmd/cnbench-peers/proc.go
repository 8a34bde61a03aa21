package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cnactor/cnactor/benchmarks"
	"github.com/vishvananda/netlink"
)

// runProc is the vishvananda/netlink side of `cnctl bench proc`: its
// ProcEventMonitor, used as its documentation shows, with every event
// recorded until the storm is over.
func runProc(in io.Reader, out io.Writer) error {
	ch := make(chan netlink.ProcEvent, 4096)
	done := make(chan struct{})
	errc := make(chan error, 1)
	if err := netlink.ProcEventMonitor(ch, done, errc); err != nil {
		return err
	}
	var mu sync.Mutex
	var events []benchmarks.StormEvent
	var shell uint32
	var monErr error
	last := time.Now()
	exited := make(chan struct{})
	var exitOnce sync.Once
	go func() {
		for ev := range ch {
			var se benchmarks.StormEvent
			switch m := ev.Msg.(type) {
			case *netlink.ForkProcEvent:
				se = benchmarks.StormEvent{Kind: 'f', Parent: m.ParentTgid, PID: m.ChildPid, Thread: m.ChildPid != m.ChildTgid}
			case *netlink.ExecProcEvent:
				se = benchmarks.StormEvent{Kind: 'e', PID: m.ProcessPid}
			case *netlink.ExitProcEvent:
				se = benchmarks.StormEvent{Kind: 'x', PID: m.ProcessPid}
			default:
				continue
			}
			mu.Lock()
			events = append(events, se)
			last = time.Now()
			if se.Kind == 'x' && shell != 0 && se.PID == shell {
				exitOnce.Do(func() { close(exited) })
			}
			mu.Unlock()
		}
	}()
	go func() {
		// The monitor stops at its first error (ENOBUFS when its queue
		// overflowed, or a message not from the kernel).
		err := <-errc
		mu.Lock()
		monErr = err
		mu.Unlock()
	}()
	fmt.Fprintln(out, "ready")

	stdinClosed := make(chan struct{})
	go func() {
		defer close(stdinClosed)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			pid, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 32)
			if err != nil {
				continue
			}
			mu.Lock()
			shell = uint32(pid)
			for _, ev := range events {
				if ev.Kind == 'x' && ev.PID == shell {
					exitOnce.Do(func() { close(exited) })
				}
			}
			mu.Unlock()
		}
	}()
	// Until the shell's exit arrives; after stdin closes, until nothing
	// has come for a second; at most a minute.
	deadline := time.After(time.Minute)
wait:
	for {
		select {
		case <-exited:
			break wait
		case <-deadline:
			break wait
		case <-time.After(100 * time.Millisecond):
			select {
			case <-stdinClosed:
				mu.Lock()
				idle := time.Since(last) > time.Second
				mu.Unlock()
				if idle {
					break wait
				}
			default:
			}
		}
	}
	mu.Lock()
	c := benchmarks.CountStorm(events, shell)
	r := benchmarks.PeerProcResult{Name: benchmarks.NameVishvananda, Forks: c.Forks, Execs: c.Execs, Exits: c.Exits}
	if monErr != nil { // before done: closing the socket is an error too
		r.Error = "monitor stopped: " + monErr.Error()
	}
	mu.Unlock()
	close(done)
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}
