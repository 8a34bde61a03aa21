package main

import (
	"context"
	"io"
	"log"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// TestIntegrationPlugin runs the example as its README says, over the
// kernel: the plugin answers a request upper-cased.
func TestIntegrationPlugin(t *testing.T) {
	testutil.Privileged(t)
	ctx, cancel := context.WithCancel(context.Background())
	ports := make(chan uint32, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-config", "config.yaml"}, log.New(io.Discard, "", 0), func(p uint32) { ports <- p })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var port uint32
	select {
	case port = <-ports:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}

	peer, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	id := transport.CbID{Idx: 100, Val: 1}
	if err := peer.Send(rctx, transport.Addr{Port: port}, &transport.Message{ID: id, Seq: 1, Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	b := transport.NewBatch(1)
	for {
		if err := peer.ReceiveBatch(rctx, b); err != nil {
			t.Fatal(err)
		}
		for _, m := range b.Messages {
			if m.From == port && m.ID == id {
				if string(m.Data) != "> HELLO" || m.Seq != 1 || m.Ack != 1 {
					t.Fatalf("reply %+v", m.Message)
				}
				return
			}
		}
	}
}

func TestBadConfig(t *testing.T) {
	if err := run(context.Background(), []string{"-config", "missing.yaml"}, log.New(io.Discard, "", 0), nil); err == nil {
		t.Fatal("a missing configuration file was accepted")
	}
}
