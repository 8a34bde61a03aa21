package benchmarks

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/cnactor/cnactor/transport"
)

// Scenarios Run knows.
const (
	Throughput = "throughput"
	Latency    = "latency"
	Overload   = "overload"
	Proc       = "proc"
)

// Scenarios lists them in the order cnctl documents them.
var Scenarios = []string{Throughput, Latency, Overload, Proc}

// Transports, modes and throughput methods.
const (
	Netlink = "netlink"
	Memory  = "memory"

	Unicast   = "unicast"
	Multicast = "multicast"

	// Live (the default) runs the sender at full rate against one
	// receiver at a time, each for the same time, and compares delivered
	// rates: sender and receiver share the machine, as in production.
	Live = "live"
	// Drain pre-fills a receiver's socket queue (made large enough with
	// SO_RCVBUFFORCE) while it is held back, then times how long the
	// receiver takes to empty it: the receive path alone, without the
	// sender competing for the CPUs.
	Drain = "drain"
)

// Errors of Run.
var (
	// ErrAccounting: a run's messages do not add up. It is wrapped with the
	// numbers; the Result is returned with it.
	ErrAccounting = errors.New("benchmarks: ACCOUNTING MISMATCH: messages were lost or counted twice")
	// ErrUsage: the configuration is invalid.
	ErrUsage = errors.New("benchmarks: invalid configuration")
	// ErrNotSupported: the scenario needs Linux.
	ErrNotSupported = errors.New("benchmarks: this scenario needs Linux and the kernel connector")
)

// Config is what a run measures. The zero value of each field picks the
// scenario's default (see Normalize).
type Config struct {
	Scenario  string        `json:"scenario"`
	Transport string        `json:"transport"` // netlink (default) or memory
	Mode      string        `json:"mode"`      // unicast (default) or multicast
	Method    string        `json:"method,omitempty"`
	Handlers  int           `json:"handlers"`        // callback ids the traffic is spread over
	Payload   int           `json:"payload"`         // bytes per message, 16..16384
	Duration  time.Duration `json:"duration"`        // how long the run lasts (roughly, for drain)
	InFlight  int           `json:"inflight"`        // latency: requests in flight
	Mailbox   int           `json:"mailbox"`         // handler mailbox size (cnactor's default if 0)
	Batch     bool          `json:"batch,omitempty"` // cnactor's handlers take each run as a slice (handlers.BatchHandler)
	// SenderInProcess runs the live sender in this process (a locked
	// thread), as runs before 2026-12-01 did, instead of a process of its
	// own. It holds one of the Go runtime's Ps most of the time, which
	// spares a receiver that hands messages between goroutines the cost of
	// waking an idle one: a kinder setting, kept to compare with.
	SenderInProcess bool `json:"sender_in_process,omitempty"`
	Procs           int  `json:"procs,omitempty"`
	Chunk           int  `json:"chunk,omitempty"` // drain: messages queued before each timed drain
	// Peers is the path of the cnbench-peers program (benchmarks/peers),
	// run by the proc scenario for the vishvananda/netlink comparison.
	Peers string `json:"-"`
	// Groups are the multicast groups to use (three for throughput); when
	// empty, free ones are reserved (see ReserveGroups).
	Groups []uint32 `json:"-"`
	// Progress, if set, is called about four times a second while a
	// scenario runs.
	Progress func(Progress) `json:"-"`
}

// Progress is a snapshot of a running phase.
// The counts are those of the current phase (a slot of one receiver, one
// side of the latency run, the storm), since it began. Sent is what the
// sender process last reported (every 50 ms), or Received + Drops if that
// is more.
type Progress struct {
	Scenario string
	Phase    string // the receiver or side being measured
	Elapsed  time.Duration
	Sent     uint64
	Received uint64
	Drops    uint64  // kernel and mailbox drops in the phase
	Rate     float64 // received per second since the last report
	RSS      uint64  // bytes, overload only
}

// Normalize fills in defaults and validates c.
func (c *Config) Normalize() error {
	if c.Scenario == "" {
		c.Scenario = Throughput
	}
	if c.Transport == "" {
		c.Transport = Netlink
	}
	if c.Mode == "" {
		c.Mode = Unicast
	}
	if c.Method == "" && c.Scenario == Throughput {
		c.Method = Live
	}
	if c.Handlers == 0 {
		c.Handlers = 1
		if c.Scenario == Overload {
			c.Handlers = 4
		}
	}
	if c.Payload == 0 {
		c.Payload = 64
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
		if c.Scenario == Overload {
			c.Duration = 10 * time.Second
		}
	}
	if c.InFlight == 0 {
		c.InFlight = 1
	}
	if c.Procs == 0 && c.Scenario == Proc {
		c.Procs = 3000
	}
	var bad []string
	if !contains(Scenarios, c.Scenario) {
		bad = append(bad, fmt.Sprintf("scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios, ", ")))
	}
	if c.Transport != Netlink && c.Transport != Memory {
		bad = append(bad, fmt.Sprintf("transport %q (want netlink or memory)", c.Transport))
	}
	if c.Mode != Unicast && c.Mode != Multicast {
		bad = append(bad, fmt.Sprintf("mode %q (want unicast or multicast)", c.Mode))
	}
	if c.Scenario == Throughput && c.Method != Drain && c.Method != Live {
		bad = append(bad, fmt.Sprintf("method %q (want live or drain)", c.Method))
	}
	if c.Handlers < 1 || c.Handlers > 4096 {
		bad = append(bad, fmt.Sprintf("handlers %d (want 1..4096)", c.Handlers))
	}
	if c.Scenario == Overload && c.Handlers < 2 {
		bad = append(bad, "overload needs at least 2 handlers (one of them stalls)")
	}
	if c.Payload < 16 || c.Payload > transport.MaxPayload {
		bad = append(bad, fmt.Sprintf("payload %d (want 16..%d bytes)", c.Payload, transport.MaxPayload))
	}
	if c.Duration < 0 || c.InFlight < 1 || c.InFlight > 4096 || c.Mailbox < 0 || c.Procs < 0 || c.Chunk < 0 {
		bad = append(bad, "negative duration, mailbox, procs or chunk, or inflight outside 1..4096")
	}
	if c.Scenario == Proc && c.Transport == Memory {
		bad = append(bad, "proc needs the netlink transport (the kernel's proc connector)")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrUsage, strings.Join(bad, "; "))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Result is what a run measured.
type Result struct {
	Config  Config  `json:"config"`
	Machine Machine `json:"machine"`
	Start   string  `json:"start"` // RFC 3339

	// Throughput: one entry per receiver, cnactor last.
	Receivers []ReceiverResult `json:"receivers,omitempty"`
	// Ratios are cnactor's delivered rate over each baseline's.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	// CPURatios are cnactor's CPU time per delivered message over each
	// baseline's (ReceiverResult.CPUNsPerMsg), keyed like Ratios: below 1
	// means cnactor spends less CPU per message.
	CPURatios map[string]float64 `json:"cpu_ratios,omitempty"`

	Latency  *LatencyResult  `json:"latency,omitempty"`
	Overload *OverloadResult `json:"overload,omitempty"`
	Proc     *ProcResult     `json:"proc,omitempty"`

	// Accounting has one line per receiver run; all must be OK.
	Accounting []Accounting `json:"accounting"`
	Targets    []Target     `json:"targets,omitempty"`
	Notes      []string     `json:"notes,omitempty"`
}

// ReceiverResult is one receiver's throughput.
type ReceiverResult struct {
	Name     string  `json:"name"`
	Messages uint64  `json:"messages"` // delivered to the receiver's consumer
	Seconds  float64 `json:"seconds"`  // time measured (drain: receiving only)
	Rate     float64 `json:"rate"`     // messages per second
	MBps     float64 `json:"mb_per_s"` // payload megabytes (1e6) per second
	// AllocsPerMsg is the process's heap allocations per delivered message
	// while the receiver ran (runtime.MemStats.Mallocs).
	AllocsPerMsg float64 `json:"allocs_per_msg"`
	BytesPerMsg  float64 `json:"bytes_per_msg"`
	// CPUSeconds is the process's CPU time (user + system, getrusage)
	// while the receiver ran, the sender's own thread excluded, from the
	// start of each slot (drain: of each timed drain) until the receiver
	// had settled; CPUNsPerMsg divides it by the messages delivered in the
	// same windows. See cpuWindow for how the sender is taken out.
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUNsPerMsg float64 `json:"cpu_ns_per_msg"`
	// SentRate is the sender's rate (live method); SenderCPUSeconds the
	// CPU time of the sender's thread, which CPUSeconds excludes.
	SentRate         float64 `json:"sent_rate,omitempty"`
	SenderCPUSeconds float64 `json:"sender_cpu_seconds,omitempty"`
	Drops            uint64  `json:"drops"` // kernel and mailbox drops
}

// Accounting is one receiver's books: Sent must equal the sum of the rest.
type Accounting struct {
	Receiver     string `json:"receiver"`
	Sent         uint64 `json:"sent"`
	Delivered    uint64 `json:"delivered"`
	KernelDrops  uint64 `json:"kernel_drops"`  // SO_MEMINFO drop counter delta
	MailboxDrops uint64 `json:"mailbox_drops"` // callbacks' Dropped
	Rejected     uint64 `json:"rejected"`      // sender policy
	Unknown      uint64 `json:"unknown"`       // no callback for the id
	Malformed    uint64 `json:"malformed"`
	Failed       uint64 `json:"failed"`      // handler errors
	Intercepted  uint64 `json:"intercepted"` // taken by the requester
	// ReaderKernelDrops is what cnactor's reader reported (Stats), for
	// comparison with the socket's counter.
	ReaderKernelDrops uint64 `json:"reader_kernel_drops,omitempty"`
	OK                bool   `json:"ok"`
}

// Accounted is everything that is not Sent.
func (a *Accounting) Accounted() uint64 {
	return a.Delivered + a.KernelDrops + a.MailboxDrops + a.Rejected + a.Unknown + a.Malformed + a.Failed + a.Intercepted
}

// Check sets OK and returns an error naming the difference when the books
// do not balance.
func (a *Accounting) Check() error {
	acc := a.Accounted()
	a.OK = acc == a.Sent
	if a.OK {
		return nil
	}
	return fmt.Errorf("%w: %s: sent %d != %d accounted (delivered %d + kernel drops %d + mailbox drops %d + rejected %d + unknown %d + malformed %d + failed %d + intercepted %d), difference %d",
		ErrAccounting, a.Receiver, a.Sent, acc, a.Delivered, a.KernelDrops, a.MailboxDrops, a.Rejected, a.Unknown,
		a.Malformed, a.Failed, a.Intercepted, int64(a.Sent)-int64(acc))
}

// checkAll checks every line and joins the failures.
func checkAll(acc []Accounting) error {
	var errs []error
	for i := range acc {
		errs = append(errs, acc[i].Check())
	}
	return errors.Join(errs...)
}

// Target is one of the targets, measured.
type Target struct {
	Name string  `json:"name"`
	Want string  `json:"want"`
	Got  float64 `json:"got"`
	Unit string  `json:"unit,omitempty"`
	Met  bool    `json:"met"`
}

// Machine describes where a result was measured.
type Machine struct {
	CPU    string `json:"cpu"`
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// LatencyResult holds round-trip times in microseconds.
type LatencyResult struct {
	// Sides are the baselines, the raw ping-pong first, then cnactor's
	// Requests last.
	Sides []LatencySide `json:"sides"`
	// P50Ratio is cnactor's p50 over the raw ping-pong's (the target).
	P50Ratio float64 `json:"p50_ratio"`
	// P50Ratios is cnactor's p50 over each baseline's, keyed
	// "cnactor/<side name>".
	P50Ratios map[string]float64 `json:"p50_ratios,omitempty"`
}

// LatencySide is one side's round trips.
type LatencySide struct {
	Name     string  `json:"name"`
	Count    int     `json:"count"`
	P50      float64 `json:"p50_us"`
	P90      float64 `json:"p90_us"`
	P99      float64 `json:"p99_us"`
	Max      float64 `json:"max_us"`
	Rate     float64 `json:"per_s"` // completed round trips per second
	Timeouts uint64  `json:"timeouts"`
}

// OverloadResult is what a stalled handler did to the rest.
type OverloadResult struct {
	Seconds      float64 `json:"seconds"`
	Sent         uint64  `json:"sent"`
	SentRate     float64 `json:"sent_rate"`
	RSSStart     uint64  `json:"rss_start_bytes"`
	RSSMax       uint64  `json:"rss_max_bytes"`
	RSSEnd       uint64  `json:"rss_end_bytes"`
	RSSSamples   int     `json:"rss_samples"`
	StalledDrops uint64  `json:"stalled_mailbox_drops"`
	// Others is each running handler's delivery during the stall, as a
	// fraction of what was sent to its id.
	Others      []HandlerShare `json:"others"`
	KernelDrops uint64         `json:"kernel_drops"`
	OthersRate  float64        `json:"others_rate"` // delivered per second by the running handlers
	// OthersMinFraction is the lowest delivered fraction among them;
	// OthersMailboxDrops what their own mailboxes dropped (they may not
	// keep up with the reader when CPUs are few).
	OthersMinFraction  float64 `json:"others_min_fraction"`
	OthersMailboxDrops uint64  `json:"others_mailbox_drops"`
	StalledQueue       uint64  `json:"stalled_queued_at_end"`
}

// HandlerShare is one handler's delivery.
type HandlerShare struct {
	ID        string  `json:"id"`
	Sent      uint64  `json:"sent"`
	Delivered uint64  `json:"delivered"`
	Fraction  float64 `json:"fraction"`
	// QueuedFraction is Delivered over what reached the socket for this
	// id: Sent less its part of the kernel's drops, taken in proportion to
	// Sent (the kernel drops without knowing ids). A multicast sender that
	// outruns the whole receiver lowers Fraction for every id alike; this
	// one says whether the stalled handler held the others back.
	QueuedFraction float64 `json:"queued_fraction"`
}

// ProcResult compares process-event receivers over one storm.
type ProcResult struct {
	Procs     int            `json:"procs"`
	Seconds   float64        `json:"seconds"`
	Receivers []ProcReceiver `json:"receivers"` // cnactor first
	Skipped   []string       `json:"skipped,omitempty"`
}

// ProcReceiver is what one receiver captured of the storm's 3*Procs
// fork, exec and exit events of the storm's children.
type ProcReceiver struct {
	Name     string `json:"name"`
	Forks    int    `json:"forks"`
	Execs    int    `json:"execs"`
	Exits    int    `json:"exits"`
	Missing  int    `json:"missing"`  // of 3*Procs
	Reported uint64 `json:"reported"` // losses the receiver reported itself
	Error    string `json:"error,omitempty"`
}
