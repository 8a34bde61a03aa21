//go:build linux

package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/transport"
)

// Proc receiver names.
const (
	NameForkstat    = "forkstat"
	NameVishvananda = "vishvananda"
	// PeersProgram is the nested module's program (benchmarks/peers).
	PeersProgram = "cnbench-peers"
)

// PeerProcResult is what `cnbench-peers proc` prints, one JSON line.
type PeerProcResult struct {
	Name  string `json:"name"`
	Forks int    `json:"forks"`
	Execs int    `json:"execs"`
	Exits int    `json:"exits"`
	Error string `json:"error,omitempty"`
}

// forkstatRun runs forkstat and keeps its output.
type forkstatRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
}

func startForkstat(ctx context.Context) (*forkstatRun, string) {
	path, err := exec.LookPath("forkstat")
	if err != nil {
		return nil, "forkstat: not installed (apt-get install forkstat)"
	}
	f := &forkstatRun{done: make(chan struct{})}
	f.cmd = exec.CommandContext(ctx, path, "-e", "fork,exec,exit", "-l")
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		return nil, "forkstat: " + err.Error()
	}
	if err := f.cmd.Start(); err != nil {
		return nil, "forkstat: " + err.Error()
	}
	ready := make(chan struct{})
	go func() {
		defer close(f.done)
		br := bufio.NewReader(stdout)
		once := sync.Once{}
		for {
			line, err := br.ReadBytes('\n')
			f.mu.Lock()
			f.out.Write(line)
			f.mu.Unlock()
			once.Do(func() { close(ready) }) // the header: it is listening
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(3 * time.Second):
	}
	return f, ""
}

func (f *forkstatRun) finish() ([]StormEvent, error) {
	f.cmd.Process.Signal(os.Interrupt)
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		f.cmd.Process.Kill()
		<-f.done
	}
	err := f.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = nil // stopped by the signal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return ParseForkstat(bytes.NewReader(f.out.Bytes())), err
}

// peerRun runs `cnbench-peers proc`: it subscribes with
// vishvananda/netlink's ProcEventMonitor, prints "ready", reads the storm
// shell's pid on stdin, and prints a PeerProcResult once it has seen the
// shell exit (or stdin closes and it has been idle a while).
type peerRun struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func findPeers(cfg *Config) (string, string) {
	if cfg.Peers != "" {
		return cfg.Peers, ""
	}
	if p, err := exec.LookPath(PeersProgram); err == nil {
		return p, ""
	}
	return "", "vishvananda/netlink: " + PeersProgram + " not found (cd benchmarks/peers && go build -o /usr/local/bin/ ./cmd/cnbench-peers, or -peers PATH)"
}

func startPeer(ctx context.Context, path string) (*peerRun, error) {
	p := &peerRun{cmd: exec.CommandContext(ctx, path, "proc")}
	p.cmd.Stderr = os.Stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	p.out = bufio.NewReader(stdout)
	line, err := p.readLine(5 * time.Second)
	if err != nil || line != "ready" {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		return nil, fmt.Errorf("%s proc did not get ready: %q %v", path, line, err)
	}
	return p, nil
}

func (p *peerRun) readLine(timeout time.Duration) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := p.out.ReadString('\n')
		ch <- result{string(bytes.TrimSpace([]byte(s))), err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(timeout):
		return "", errors.New("timed out")
	}
}

func (p *peerRun) finish() (PeerProcResult, error) {
	p.stdin.Close()
	var r PeerProcResult
	line, err := p.readLine(15 * time.Second)
	if err == nil {
		err = json.Unmarshal([]byte(line), &r)
	}
	if err != nil {
		p.cmd.Process.Kill()
	}
	p.cmd.Wait()
	return r, err
}

// cnProc is cnactor's side: a proc.Monitor with default settings on a
// connector whose socket we can ask for its drop counter.
type cnProc struct {
	nc     *transport.NetlinkConn
	c      *cnactor.Connector
	m      *proc.Monitor
	mu     sync.Mutex
	events []StormEvent
	lost   uint64
	shell  uint32
	exited chan struct{}
	done   chan struct{}
}

func startCnProc(ctx context.Context) (*cnProc, error) {
	p := &cnProc{exited: make(chan struct{}), done: make(chan struct{})}
	var err error
	// What proc.Listen would dial by itself, with the default buffer.
	if p.nc, err = transport.Dial(transport.WithReadBuffer(cnactor.DefaultReadBuffer)); err != nil {
		return nil, err
	}
	if p.c, err = cnactor.New(cnactor.WithTransport(p.nc)); err != nil {
		return nil, err
	}
	if p.m, err = proc.Listen(ctx, proc.WithConnector(p.c)); err != nil {
		p.c.Close(context.Background())
		return nil, err
	}
	go p.loop()
	return p, nil
}

func (p *cnProc) loop() {
	defer close(p.done)
	var once sync.Once
	for ev := range p.m.Events() {
		var se StormEvent
		switch e := ev.(type) {
		case *proc.Fork:
			se = StormEvent{Kind: 'f', Parent: e.ParentTGID, PID: e.ChildPID, Thread: e.IsThread()}
		case *proc.Exec:
			se = StormEvent{Kind: 'e', PID: e.PID}
		case *proc.Exit:
			se = StormEvent{Kind: 'x', PID: e.PID}
		case *proc.Lost:
			p.mu.Lock()
			p.lost += e.Count
			p.mu.Unlock()
			continue
		default:
			continue
		}
		p.mu.Lock()
		p.events = append(p.events, se)
		shell := p.shell
		p.mu.Unlock()
		if se.Kind == 'x' && shell != 0 && se.PID == shell {
			once.Do(func() { close(p.exited) })
		}
	}
}

func (p *cnProc) setShell(pid uint32) {
	p.mu.Lock()
	p.shell = pid
	exited := false
	for _, ev := range p.events {
		exited = exited || ev.Kind == 'x' && ev.PID == pid
	}
	p.mu.Unlock()
	if exited {
		close(p.exited)
	}
}

func runProc(ctx context.Context, cfg *Config, res *Result) error {
	pr := &ProcResult{Procs: cfg.Procs}
	res.Proc = pr
	// Start order matters: vishvananda/netlink sends its LISTEN to group 1
	// as well (a multicast every earlier listener receives from a user
	// port), and its monitor stops at the first message not from the
	// kernel. So forkstat first, then the peer, then cnactor, which sends
	// LISTEN to the kernel only.
	fs, skip := startForkstat(ctx)
	if skip != "" {
		pr.Skipped = append(pr.Skipped, skip)
	}
	var peer *peerRun
	if path, skip := findPeers(cfg); skip != "" {
		pr.Skipped = append(pr.Skipped, skip)
	} else if pp, err := startPeer(ctx, path); err != nil {
		pr.Skipped = append(pr.Skipped, "vishvananda/netlink: "+err.Error())
	} else {
		peer = pp
	}
	cn, err := startCnProc(ctx)
	if err != nil {
		if peer != nil {
			peer.cmd.Process.Kill()
			peer.cmd.Wait()
		}
		if fs != nil {
			fs.finish()
		}
		return err
	}
	drops0, _ := cn.nc.Drops()
	time.Sleep(100 * time.Millisecond) // the subscriptions settle

	rp := startReporter(cfg)
	defer rp.close()
	args := StormShell(cfg.Procs)
	sh := exec.CommandContext(ctx, args[0], args[1:]...)
	start := time.Now()
	if err := sh.Start(); err != nil {
		return err
	}
	shell := uint32(sh.Process.Pid)
	cn.setShell(shell)
	rp.set(&phase{name: "storm", r: procCounter{cn}, start: start, sent: func() uint64 { return 0 }})
	if peer != nil {
		fmt.Fprintf(peer.stdin, "%d\n", shell)
	}
	shErr := sh.Wait()
	var waitErr error
	select {
	case <-cn.exited:
	case <-time.After(30 * time.Second):
		waitErr = errors.New("benchmarks: cnactor never saw the storm shell exit")
	}
	pr.Seconds = time.Since(start).Seconds()
	rp.set(nil)

	// cnactor's books.
	st := cn.c.Stats()
	drops1, _ := cn.nc.Drops()
	cn.mu.Lock()
	count := CountStorm(cn.events, shell)
	lost := cn.lost
	cn.mu.Unlock()
	mst := cn.m.Stats()
	var mailboxDrops uint64
	for _, cb := range st.Callbacks {
		if cb.ID == proc.ID() {
			mailboxDrops = cb.Dropped
		}
	}
	want := 3 * cfg.Procs
	got := count.Forks + count.Execs + count.Exits
	cr := ProcReceiver{Name: NameCnactor, Forks: count.Forks, Execs: count.Execs, Exits: count.Exits, Missing: want - got, Reported: lost}
	pr.Receivers = append(pr.Receivers, cr)
	// The kernel does not say which events it dropped: the storm's missing
	// events are put down to the losses cnactor reported, up to their
	// number; any more would be silent loss and fail the books.
	res.Accounting = append(res.Accounting, Accounting{
		Receiver: "cnactor proc storm", Sent: uint64(want), Delivered: uint64(got),
		KernelDrops: min(uint64(max(want-got, 0)), lost), ReaderKernelDrops: st.Reader.KernelDrops,
	})
	res.Notes = append(res.Notes, fmt.Sprintf("cnactor: socket drop counter %d, reader reported %d, mailbox drops %d, Lost events reported %d (monitor: %d events, %d lost)",
		uint32(drops1-drops0), st.Reader.KernelDrops, mailboxDrops, lost, mst.Events, mst.Lost))
	cn.m.Close()
	<-cn.done
	cn.c.Close(context.Background())

	if peer != nil {
		r, err := peer.finish()
		if err != nil {
			pr.Receivers = append(pr.Receivers, ProcReceiver{Name: NameVishvananda, Missing: want, Error: err.Error()})
		} else {
			g := r.Forks + r.Execs + r.Exits
			pr.Receivers = append(pr.Receivers, ProcReceiver{Name: NameVishvananda, Forks: r.Forks, Execs: r.Execs, Exits: r.Exits, Missing: want - g, Error: r.Error})
		}
	}
	if fs != nil {
		time.Sleep(500 * time.Millisecond) // let it print what it has read
		evs, err := fs.finish()
		c := CountStorm(evs, shell)
		fr := ProcReceiver{Name: NameForkstat, Forks: c.Forks, Execs: c.Execs, Exits: c.Exits, Missing: want - c.Forks - c.Execs - c.Exits}
		if err != nil {
			fr.Error = err.Error()
		}
		pr.Receivers = append(pr.Receivers, fr)
	}
	res.Targets = append(res.Targets, Target{
		Name: "proc storm of " + strconv.Itoa(cfg.Procs) + ": events missed by cnactor", Want: "0", Got: float64(cr.Missing), Met: cr.Missing == 0 && lost == 0,
	})
	res.Notes = append(res.Notes, fmt.Sprintf("storm: %q; counted: forks of the shell, execs and exits of its children (3 per process)", args[2]))
	if shErr != nil {
		var ee *exec.ExitError
		if !errors.As(shErr, &ee) || ee.Sys().(syscall.WaitStatus).Signaled() {
			waitErr = errors.Join(waitErr, fmt.Errorf("storm shell: %w", shErr))
		}
	}
	return waitErr
}

// procCounter lets the reporter show the events captured so far.
type procCounter struct{ p *cnProc }

func (r procCounter) name() string         { return NameCnactor }
func (r procCounter) addr() transport.Addr { return transport.Addr{} }
func (r procCounter) gate() *gate          { return nil }
func (r procCounter) counter() *counter {
	c := newCounter()
	r.p.mu.Lock()
	c.n.Store(uint64(len(r.p.events)))
	r.p.mu.Unlock()
	return c
}
func (r procCounter) kernelDrops() uint64 {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.p.lost
}
func (r procCounter) otherLoss() uint64            { return 0 }
func (r procCounter) books(sent uint64) Accounting { return Accounting{} }
func (r procCounter) close() error                 { return nil }
