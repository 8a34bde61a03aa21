//go:build linux

package benchmarks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cnactor/cnactor/transport"
)

// The live sender runs in a process of its own, as a user's sender would.
// In the receiving process it would hold one of the Go runtime's Ps most
// of the time, and a receiver that hands messages between goroutines (as
// cnactor's reader does to its handlers) then rarely finds a P idle: the
// runtime's wake-up of an idle P on each hand-off (a futex wake, a
// spinning thread, a futex sleep), which any such receiver pays for on
// its own, would go unmeasured. It did: on 2 CPUs, cnactor against a raw
// recvmmsg loop moved from 0.8-0.9x with the sender in process to
// 0.64-0.78x with it outside.
//
// The child is this program run again with senderEnv set; MaybeServeSender
// (called first thing by cnctl and by test binaries that run benchmarks)
// turns it into the sender. It reads commands on stdin, one per line:
//
//	target PORT GROUP   where the next run sends
//	run                 send at full rate until stop
//	stop                end the run
//
// and writes "sent N" about every 50 ms while it runs, then
// "stopped N CPU_NS ERRNO PER_ID..." when a run ends. Closing its stdin
// ends it.

// senderEnv carries the child's configuration: "PAYLOAD IDX:VAL...".
const senderEnv = "CNACTOR_BENCH_SENDER"

// MaybeServeSender serves as a benchmark's sender process and exits if
// this process was started as one; otherwise it returns at once. Programs
// that run live benchmarks (cnctl, test binaries) call it before anything
// else.
func MaybeServeSender() {
	cfg, ok := os.LookupEnv(senderEnv)
	if !ok {
		return
	}
	if err := serveSender(cfg, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchmark sender:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveSender(cfg string, in io.Reader, out io.Writer) error {
	fields := strings.Fields(cfg)
	if len(fields) < 2 {
		return fmt.Errorf("%s=%q: want PAYLOAD IDX:VAL...", senderEnv, cfg)
	}
	payload, err := strconv.Atoi(fields[0])
	if err != nil {
		return err
	}
	var ids []transport.CbID
	for _, f := range fields[1:] {
		var id transport.CbID
		if _, err := fmt.Sscanf(f, "%d:%d", &id.Idx, &id.Val); err != nil {
			return fmt.Errorf("id %q: %w", f, err)
		}
		ids = append(ids, id)
	}
	s, err := newRawSender(ids, payload)
	if err != nil {
		return err
	}
	defer s.close()
	var mu sync.Mutex // out
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		mu.Unlock()
	}
	var stop atomic.Bool
	var running sync.WaitGroup
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		switch {
		case len(f) == 3 && f[0] == "target":
			port, _ := strconv.ParseUint(f[1], 10, 32)
			group, _ := strconv.ParseUint(f[2], 10, 32)
			s.target(transport.Addr{Port: uint32(port), Group: uint32(group)})
		case len(f) == 1 && f[0] == "run":
			stop.Store(false)
			running.Add(1)
			go func() {
				defer running.Done()
				ticker := time.NewTicker(50 * time.Millisecond)
				defer ticker.Stop()
				done := make(chan time.Duration)
				go func() { cpu, _ := runSender(netSender{s}, &stop, nil); done <- cpu }()
				for {
					select {
					case <-ticker.C:
						say("sent %d", s.sent.Load())
					case cpu := <-done:
						per := make([]string, len(s.ids))
						for i, n := range s.ids {
							per[i] = strconv.FormatUint(n, 10)
						}
						say("stopped %d %d %d %s", s.sent.Load(), cpu.Nanoseconds(), int(s.errno), strings.Join(per, " "))
						return
					}
				}
			}()
		case len(f) == 1 && f[0] == "stop":
			stop.Store(true)
			running.Wait()
		default:
			return fmt.Errorf("unknown command %q", lines.Text())
		}
	}
	stop.Store(true)
	running.Wait()
	return lines.Err()
}

// procSender is the parent's handle on the sender process. It implements
// sender except fill: the drain queues its chunks from a rawSender in
// process, since nothing runs alongside it.
type procSender struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	nids    int
	count   atomic.Uint64
	stopped chan string // the "stopped" lines
	exited  chan struct{}
	ids     []uint64 // per id, after the last run
	cpu     time.Duration
	last    error
}

func newProcSender(ids []transport.CbID, payload int) (*procSender, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cfg := []string{strconv.Itoa(payload)}
	for _, id := range ids {
		cfg = append(cfg, fmt.Sprintf("%d:%d", id.Idx, id.Val))
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), senderEnv+"="+strings.Join(cfg, " "))
	cmd.Stderr = os.Stderr
	// The sender must not outlive a benchmark that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("benchmarks: starting the sender process: %w", err)
	}
	s := &procSender{cmd: cmd, stdin: stdin, nids: len(ids), ids: make([]uint64, len(ids)), stopped: make(chan string, 1), exited: make(chan struct{})}
	go s.read(stdout)
	return s, nil
}

// read follows the child's reports until it exits.
func (s *procSender) read(stdout io.Reader) {
	defer close(s.exited)
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		var n uint64
		switch {
		case strings.HasPrefix(line, "sent "):
			if _, err := fmt.Sscanf(line, "sent %d", &n); err == nil {
				s.count.Store(n)
			}
		case strings.HasPrefix(line, "stopped "):
			s.stopped <- line
		}
	}
}

func (s *procSender) command(format string, args ...any) error {
	if _, err := fmt.Fprintf(s.stdin, format+"\n", args...); err != nil {
		return fmt.Errorf("benchmarks: sender process: %w", err)
	}
	return nil
}

func (s *procSender) target(to transport.Addr) {
	if err := s.command("target %d %d", to.Port, to.Group); err != nil && s.last == nil {
		s.last = err
	}
}

// fill is not supported: see procSender.
func (s *procSender) fill(int) int {
	s.last = errors.New("benchmarks: the sender process cannot fill a drain's chunk")
	return 0
}

// run starts the child sending and stops it once stop is set.
func (s *procSender) run(_ *atomic.Bool, stopped <-chan struct{}) {
	if s.last != nil {
		return
	}
	if err := s.command("run"); err != nil {
		s.last = err
		return
	}
	<-stopped
	if err := s.command("stop"); err != nil {
		s.last = err
		return
	}
	var line string
	select {
	case line = <-s.stopped:
	case <-s.exited:
		s.last = errors.New("benchmarks: the sender process exited during a run")
		return
	}
	f := strings.Fields(line)
	if len(f) != 4+s.nids {
		s.last = fmt.Errorf("benchmarks: sender process: bad report %q", line)
		return
	}
	n, _ := strconv.ParseUint(f[1], 10, 64)
	cpu, _ := strconv.ParseInt(f[2], 10, 64)
	errno, _ := strconv.Atoi(f[3])
	s.count.Store(n)
	s.cpu = time.Duration(cpu)
	for i := range s.ids {
		s.ids[i], _ = strconv.ParseUint(f[4+i], 10, 64)
	}
	if errno != 0 {
		s.last = fmt.Errorf("benchmarks: sender process: %w", syscall.Errno(errno))
	}
}

// lastCPU is the sending thread's CPU time in the last run.
func (s *procSender) lastCPU() time.Duration { return s.cpu }

func (s *procSender) sent() uint64    { return s.count.Load() }
func (s *procSender) perID() []uint64 { return s.ids }
func (s *procSender) err() error      { return s.last }
func (s *procSender) close() {
	s.stdin.Close()
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
	}
	s.cmd.Wait()
}
