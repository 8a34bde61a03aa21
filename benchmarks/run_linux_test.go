//go:build linux

package benchmarks

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
)

// run runs a short scenario and checks what every run must hold: it
// completes, its books balance, and it measured something.
func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	var progress atomic.Int64
	cfg.Progress = func(Progress) { progress.Add(1) }
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%+v: %v", cfg, err)
	}
	if len(res.Accounting) == 0 {
		t.Fatal("no accounting")
	}
	for _, a := range res.Accounting {
		if !a.OK || a.Sent == 0 {
			t.Errorf("books: %+v", a)
		}
	}
	return res
}

func checkReceivers(t *testing.T, res *Result, n int) {
	t.Helper()
	if len(res.Receivers) != n {
		t.Fatalf("%d receivers, want %d", len(res.Receivers), n)
	}
	for _, r := range res.Receivers {
		if r.Messages == 0 || r.Rate <= 0 {
			t.Errorf("receiver %+v measured nothing", r)
		}
	}
	if res.Receivers[n-1].Name != NameCnactor || res.Ratios[NameCnactor+"/"+res.Receivers[0].Name] <= 0 {
		t.Errorf("receivers %+v, ratios %v", res.Receivers, res.Ratios)
	}
	for _, r := range res.Receivers {
		if r.CPUSeconds <= 0 || r.CPUNsPerMsg <= 0 {
			t.Errorf("receiver %s: no CPU time measured: %+v", r.Name, r)
		}
		if res.Config.Method == Live && r.SenderCPUSeconds <= 0 {
			t.Errorf("receiver %s: no sender CPU time measured: %+v", r.Name, r)
		}
	}
	if res.CPURatios[NameCnactor+"/"+res.Receivers[0].Name] <= 0 {
		t.Errorf("cpu ratios %v", res.CPURatios)
	}
}

// checkTargets checks that res has the named targets (met or not: short
// runs on a busy machine measure little).
func checkTargets(t *testing.T, res *Result, names ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, tg := range res.Targets {
		have[tg.Name] = true
	}
	for _, n := range names {
		if !have[n] {
			t.Errorf("no target %q in %+v", n, res.Targets)
		}
	}
}

func TestThroughputMemory(t *testing.T) {
	for _, cfg := range []Config{
		{Transport: Memory, Method: Drain, Handlers: 4, Duration: 50 * time.Millisecond, Chunk: 1000},
		{Transport: Memory, Mode: Multicast, Method: Live, Handlers: 2, Duration: 150 * time.Millisecond},
	} {
		res := run(t, cfg)
		checkReceivers(t, res, 2)
	}
}

func TestOverloadMemory(t *testing.T) {
	res := run(t, Config{Scenario: Overload, Transport: Memory, Handlers: 3, Mailbox: 64, Duration: 200 * time.Millisecond})
	o := res.Overload
	if o == nil || o.Sent == 0 || o.StalledDrops == 0 || len(o.Others) != 2 || o.RSSMax == 0 {
		t.Fatalf("overload: %+v", o)
	}
	for _, sh := range o.Others {
		if sh.Delivered > 0 && sh.QueuedFraction < sh.Fraction {
			t.Errorf("%s: fraction of what the kernel queued %v below the fraction of what was sent %v", sh.ID, sh.QueuedFraction, sh.Fraction)
		}
	}
}

func TestLatencyMemory(t *testing.T) {
	res := run(t, Config{Scenario: Latency, Transport: Memory, InFlight: 2, Duration: 100 * time.Millisecond})
	checkLatencySides(t, res, NameRawPingPong, NameRequest)
}

// checkLatencySides checks that res measured the named sides, in order,
// each with round trips, and cnactor's p50 ratio to every baseline.
func checkLatencySides(t *testing.T, res *Result, names ...string) {
	t.Helper()
	l := res.Latency
	if l == nil || len(l.Sides) != len(names) {
		t.Fatalf("latency: %+v, want sides %v", l, names)
	}
	for i, sd := range l.Sides {
		if sd.Name != names[i] || sd.Count == 0 {
			t.Errorf("side %d: %+v, want %s with round trips", i, sd, names[i])
		}
		if i < len(l.Sides)-1 && l.P50Ratios[NameCnactor+"/"+sd.Name] <= 0 {
			t.Errorf("no p50 ratio to %s: %v", sd.Name, l.P50Ratios)
		}
	}
	if l.P50Ratio != l.P50Ratios[NameCnactor+"/"+NameRawPingPong] {
		t.Errorf("P50Ratio %v is not the ratio to the raw ping-pong (%v)", l.P50Ratio, l.P50Ratios)
	}
}

func TestKernelScenarios(t *testing.T) {
	testutil.Privileged(t)
	t.Run("throughput-drain", func(t *testing.T) {
		checkReceivers(t, run(t, Config{Method: Drain, Handlers: 2, Duration: 50 * time.Millisecond, Chunk: 500}), 3)
	})
	t.Run("throughput-live-unicast", func(t *testing.T) { // the default method
		res := run(t, Config{Duration: 150 * time.Millisecond})
		checkReceivers(t, res, 3)
		if res.Config.Method != Live {
			t.Errorf("method %q, want live by default", res.Config.Method)
		}
		checkTargets(t, res, "cnactor/recvmmsg, 1 handler", "CPU per message cnactor/recvmmsg", "dropped in userspace (cnactor)")
	})
	t.Run("throughput-live-multicast", func(t *testing.T) {
		res := run(t, Config{Mode: Multicast, Method: Live, Duration: 150 * time.Millisecond})
		checkReceivers(t, res, 3)
		checkTargets(t, res, "cnactor/recvmmsg, multicast, 1 handler", "CPU per message cnactor/recvmmsg")
	})
	for _, mode := range []string{Unicast, Multicast} {
		t.Run("latency-"+mode, func(t *testing.T) {
			res := run(t, Config{Scenario: Latency, Mode: mode, Duration: 150 * time.Millisecond})
			checkLatencySides(t, res, NameRawPingPong, NameNetpoller, NameRequest)
		})
	}
	t.Run("overload", func(t *testing.T) {
		res := run(t, Config{Scenario: Overload, Handlers: 2, Mailbox: 64, Duration: 200 * time.Millisecond})
		if res.Overload.StalledDrops == 0 {
			t.Errorf("the stalled handler dropped nothing: %+v", res.Overload)
		}
		// Unicast: the kernel drops nothing, so what it queued for a
		// running handler is all that was sent to it.
		for _, sh := range res.Overload.Others {
			if res.Overload.KernelDrops == 0 && res.Accounting[0].KernelDrops == 0 && sh.QueuedFraction != sh.Fraction {
				t.Errorf("%s: fraction of what the kernel queued %v, of what was sent %v, with no kernel drop", sh.ID, sh.QueuedFraction, sh.Fraction)
			}
		}
	})
}
