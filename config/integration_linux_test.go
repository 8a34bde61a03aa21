//go:build linux

package config_test

import (
	"context"
	"testing"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
)

// TestIntegrationReloadNeedsRestart: with the kernel socket, a reload that
// changes the receive buffer says it needs a restart instead of ignoring it.
func TestIntegrationReloadNeedsRestart(t *testing.T) {
	testutil.KernelConnector(t)
	cfg := mustParse(t, "connector:\n  receive_buffer: 1048576\ncallbacks:\n  - {id: \"103:1\", handler: echo}\n")
	c, err := cnactor.New(cfg.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	a, ch, err := config.Apply(c, cfg, handlers.Env{})
	if err != nil || ch.String() != "added 103:1" {
		t.Fatalf("apply: %v, %v", ch, err)
	}
	ch, err = a.Reload(mustParse(t, "connector:\n  receive_buffer: 2097152\ncallbacks:\n  - {id: \"103:1\", handler: echo}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "needs restart: connector.receive_buffer: running 1048576, configured 2097152"; ch.String() != want {
		t.Errorf("reload: %s\nwant %s", ch, want)
	}
	// Without the setting, the default is what the file asks for.
	ch, _ = a.Reload(mustParse(t, "callbacks:\n  - {id: \"103:1\", handler: echo}\n"))
	if want := "needs restart: connector.receive_buffer: running 1048576, configured 4194304"; ch.String() != want {
		t.Errorf("reload: %s\nwant %s", ch, want)
	}
}
