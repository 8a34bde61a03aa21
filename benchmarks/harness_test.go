package benchmarks

import (
	"errors"
	"strings"
	"testing"
)

func TestAccountingCheck(t *testing.T) {
	a := Accounting{Receiver: "x", Sent: 10, Delivered: 5, KernelDrops: 2, MailboxDrops: 1, Rejected: 1, Unknown: 1}
	if err := a.Check(); err != nil || !a.OK {
		t.Fatalf("balanced books: %v", err)
	}
	a.Delivered = 4
	err := a.Check()
	if !errors.Is(err, ErrAccounting) || a.OK {
		t.Fatalf("unbalanced books: %v", err)
	}
	if !strings.Contains(err.Error(), "difference 1") {
		t.Fatalf("error does not name the difference: %v", err)
	}
	a.Delivered = 6
	if err := a.Check(); !strings.Contains(err.Error(), "difference -1") {
		t.Fatalf("counted twice: %v", err)
	}
	if err := checkAll([]Accounting{{Sent: 1, Delivered: 1}, {Sent: 2}}); !errors.Is(err, ErrAccounting) {
		t.Fatalf("checkAll: %v", err)
	}
}

func TestNormalize(t *testing.T) {
	c := Config{Scenario: Overload}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if c.Handlers != 4 || c.Payload != 64 || c.Transport != Netlink || c.Mode != Unicast || c.Duration == 0 {
		t.Fatalf("overload defaults: %+v", c)
	}
	c = Config{}
	if err := c.Normalize(); err != nil || c.Scenario != Throughput || c.Method != Live || c.Handlers != 1 {
		t.Fatalf("throughput defaults: %+v %v", c, err)
	}
	for _, bad := range []Config{
		{Scenario: "nope"}, {Payload: 15}, {Payload: 16385}, {Transport: "udp"}, {Mode: "broadcast"},
		{Method: "guess"}, {Scenario: Overload, Handlers: 1}, {Scenario: Proc, Transport: Memory}, {InFlight: -1},
	} {
		if err := bad.Normalize(); !errors.Is(err, ErrUsage) {
			t.Errorf("%+v: got %v, want ErrUsage", bad, err)
		}
	}
}

func TestCountStorm(t *testing.T) {
	const sh = 100
	evs := []StormEvent{
		{Kind: 'f', Parent: sh, PID: 101}, {Kind: 'e', PID: 101}, {Kind: 'x', PID: 101},
		{Kind: 'f', Parent: sh, PID: 102, Thread: true},         // a thread: not a process
		{Kind: 'f', Parent: 7, PID: 103}, {Kind: 'e', PID: 103}, // someone else's
		{Kind: 'f', Parent: sh, PID: 104}, {Kind: 'x', PID: 104}, // exec lost
		{Kind: 'x', PID: sh},
	}
	got := CountStorm(evs, sh)
	if want := (StormCount{Forks: 2, Execs: 1, Exits: 2, ShellExited: true}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseForkstat(t *testing.T) {
	out := `Time     Event   PID Info   Duration Process
23:34:24 fork  10579 parent          sh -c loop
23:34:24 fork  10580 child           sh -c loop
23:34:24 exec  10580                 /bin/true
23:34:24 exit  10580      0   0.001s /bin/true
23:34:24 clnt  10581 parent          something
23:34:24 exit  10579      0   0.004s sh -c loop
`
	evs := ParseForkstat(strings.NewReader(out))
	got := CountStorm(evs, 10579)
	if want := (StormCount{Forks: 1, Execs: 1, Exits: 1, ShellExited: true}); got != want {
		t.Fatalf("got %+v from %+v", got, evs)
	}
}

func TestChunkFor(t *testing.T) {
	if c := chunkFor(64); c != 20000 {
		t.Errorf("64 B: %d", c)
	}
	if c := chunkFor(16384); c < 500 || c*(32768+768) > 128<<20 {
		t.Errorf("16 KiB: %d", c)
	}
}
