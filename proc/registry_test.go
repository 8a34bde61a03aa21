package proc_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/proc"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRegisteredSettingsErrors(t *testing.T) {
	for text, want := range map[string]string{
		"events: exec,spawn":     `p.yaml:5: callbacks[0].settings.events: unknown event "spawn" (want fork, exec, uid, gid, sid, ptrace, comm, coredump, exit, nonzero_exit or all)`,
		"mode: magic":            `p.yaml:5: callbacks[0].settings.mode: unknown mode "magic" (want auto, all, kernel-filter or userspace-filter)`,
		"format: xml":            `p.yaml:5: callbacks[0].settings.format: unknown format "xml" (want text or json)`,
		"output: printer":        `p.yaml:5: callbacks[0].settings.output: unknown output "printer" (want stdout, stderr or none)`,
		"enrich: maybe":          `p.yaml:5: callbacks[0].settings.enrich: want true or false, got "maybe"`,
		"pid: 1":                 `p.yaml:5: callbacks[0].settings.pid: unknown field (want enrich, events, format, mode, output)`,
		"{events: exec, pid: 1}": `p.yaml:5: callbacks[0].settings.pid: unknown field (want enrich, events, format, mode, output)`,
	} {
		cfg, err := config.Parse("p.yaml", []byte("callbacks:\n  - id: \"1:1\"\n    handler: proc\n    settings:\n      "+text+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := handlers.New("proc", handlers.Settings{Source: cfg.Callbacks[0].Settings}); err == nil || err.Error() != want {
			t.Errorf("%s:\n got %v\nwant %s", text, err, want)
		}
	}
	for _, ok := range []string{"{}", "events: exec,exit", "{mode: all, enrich: false, format: json, output: none}"} {
		s, err := config.ParseSettings("", []byte(ok))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := handlers.New("proc", handlers.Settings{Source: s}); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// TestIntegrationProcRegistered: the "proc" handler built by name (as a
// configuration does) subscribes when its callback is added and prints the
// events, here of a process this test runs.
func TestIntegrationProcRegistered(t *testing.T) {
	testutil.KernelConnector(t)
	c, err := cnactor.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	out := &lockedBuffer{}
	cfg, err := config.Parse("proc.yaml", []byte(`
callbacks:
  - id: "1:1"
    handler: proc
    senders: kernel
    settings: {events: "exec,exit", format: json}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(c, cfg, handlers.Env{Stdout: out}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "exit 3")
	cmd.Run()
	pid := cmd.Process.Pid
	want := `{"event":"exit",`
	wantPID := fmt.Sprintf(`"pid":%d,"tgid":%d,"exit_code":768,`, pid, pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		found := false
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, want) && strings.Contains(line, wantPID) {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exit event of %d in:\n%s", pid, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ci, ok := c.Callback(proc.ID())
	if !ok || ci.Handler["events"] == 0 || ci.Policy != "kernel" {
		t.Errorf("callback = %+v", ci)
	}
}
