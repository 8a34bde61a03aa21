package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cnactor/cnactor/benchmarks"
)

func TestBenchMemoryJSON(t *testing.T) {
	status, stdout, stderr := runCmd(t, "bench", "throughput", "-transport", "memory", "-handlers", "2",
		"-method", "drain", "-duration", "50ms", "-chunk", "500", "-json")
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	var res benchmarks.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not one JSON object: %v: %q", err, stdout)
	}
	if res.Config.Scenario != "throughput" || len(res.Receivers) != 2 || len(res.Accounting) != 2 {
		t.Fatalf("result: %+v", res)
	}
	for _, a := range res.Accounting {
		if !a.OK || a.Sent == 0 {
			t.Errorf("books: %+v", a)
		}
	}
	if _, ok := res.Ratios["cnactor/memory-raw"]; !ok {
		t.Errorf("ratios: %v", res.Ratios)
	}
	if _, ok := res.CPURatios["cnactor/memory-raw"]; !ok {
		t.Errorf("cpu ratios: %v", res.CPURatios)
	}
	for _, r := range res.Receivers {
		if r.CPUNsPerMsg <= 0 {
			t.Errorf("%s: cpu_ns_per_msg %v", r.Name, r.CPUNsPerMsg)
		}
	}
}

// TestBenchLiveDefault: throughput runs the live method unless told
// otherwise, and its table shows CPU per message and the CPU ratio.
func TestBenchLiveDefault(t *testing.T) {
	status, stdout, stderr := runCmd(t, "bench", "throughput", "-transport", "memory", "-duration", "120ms")
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	for _, want := range []string{"live method", "cpu ns/msg", "cpu/msg ratio cnactor/memory-raw", "sender rate against cnactor"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

func TestBenchTable(t *testing.T) {
	status, stdout, stderr := runCmd(t, "bench", "overload", "-transport", "memory", "-handlers", "2",
		"-mailbox", "16", "-duration", "100ms")
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	for _, want := range []string{"overload: memory unicast, 2 handler(s)", "rss", "stalled handler", "accounting", "balanced", "machine:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	// Progress goes to stderr as plain lines when it is not a terminal.
	if strings.Contains(stderr, "\r") {
		t.Errorf("carriage returns on a non-terminal stderr: %q", stderr)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "nosuch"},
		{"bench", "-payload", "8"},
		{"bench", "throughput", "-transport", "carrier-pigeon"},
		{"bench", "overload", "-handlers", "1"},
		{"bench", "proc", "-transport", "memory"},
		{"bench", "throughput", "extra"},
	} {
		if status, _, stderr := runCmd(t, args...); status != 2 {
			t.Errorf("%v: status %d, want 2 (usage); stderr %q", args, status, stderr)
		}
	}
}
