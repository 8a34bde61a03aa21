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
}

func TestThroughputMemory(t *testing.T) {
	for _, cfg := range []Config{
		{Transport: Memory, Handlers: 4, Duration: 50 * time.Millisecond, Chunk: 1000},
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
}

func TestLatencyMemory(t *testing.T) {
	res := run(t, Config{Scenario: Latency, Transport: Memory, InFlight: 2, Duration: 100 * time.Millisecond})
	if l := res.Latency; l == nil || len(l.Sides) != 2 || l.Sides[0].Count == 0 || l.Sides[1].Count == 0 || l.P50Ratio <= 0 {
		t.Fatalf("latency: %+v", res.Latency)
	}
}

func TestKernelScenarios(t *testing.T) {
	testutil.Privileged(t)
	t.Run("throughput-drain", func(t *testing.T) {
		checkReceivers(t, run(t, Config{Handlers: 2, Duration: 50 * time.Millisecond, Chunk: 500}), 3)
	})
	t.Run("throughput-live-multicast", func(t *testing.T) {
		checkReceivers(t, run(t, Config{Mode: Multicast, Method: Live, Duration: 150 * time.Millisecond}), 3)
	})
	t.Run("latency", func(t *testing.T) {
		run(t, Config{Scenario: Latency, Duration: 100 * time.Millisecond})
	})
	t.Run("overload", func(t *testing.T) {
		res := run(t, Config{Scenario: Overload, Handlers: 2, Mailbox: 64, Duration: 200 * time.Millisecond})
		if res.Overload.StalledDrops == 0 {
			t.Errorf("the stalled handler dropped nothing: %+v", res.Overload)
		}
	})
}
