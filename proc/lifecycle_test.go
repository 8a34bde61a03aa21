package proc_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/conntest"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// memMonitor is a monitor on an in-memory network whose kernel endpoint
// the test drives: the lifecycle does not depend on the real kernel.
func memMonitor(t *testing.T, ctx context.Context, copts ...cnactor.Option) (*proc.Monitor, *cnactor.Connector, *memory.Network) {
	t.Helper()
	c, net := conntest.New(t, copts...)
	m, err := proc.Listen(ctx, proc.WithConnector(c), proc.WithEnrichment(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, c, net
}

// kernelEvent sends a proc event from the network's kernel to group 1.
func kernelEvent(t testing.TB, net *memory.Network, seq uint32, what proc.What, words ...uint32) {
	t.Helper()
	b := binary.NativeEndian.AppendUint32(nil, uint32(what))
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint64(b, uint64(seq)*1000)
	for _, w := range words {
		b = binary.NativeEndian.AppendUint32(b, w)
	}
	b = append(b, make([]byte, proc.EventLen-len(b))...)
	if err := net.Kernel().Send(context.Background(), transport.Addr{Group: 1}, &transport.Message{ID: proc.ID(), Seq: seq, Data: b}); err != nil {
		t.Fatal(err)
	}
}

// drain reads Events until it closes and returns what it read.
func drain(t *testing.T, m *proc.Monitor) []proc.Event {
	t.Helper()
	var got []proc.Event
	timeout := time.After(testutil.WaitTimeout)
	for {
		select {
		case ev, ok := <-m.Events():
			if !ok {
				return got
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatal("Events did not close")
		}
	}
}

func TestEventsCloseWhenContextDone(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	m, _, net := memMonitor(t, ctx)
	kernelEvent(t, net, 1, proc.WhatExec, 42, 42)
	// The event arrives before the cancellation: the stream is live.
	if ev := <-m.Events(); proc.PID(ev) != 42 {
		t.Fatalf("got %+v", ev)
	}
	if m.Err() != nil {
		t.Fatalf("Err while open: %v", m.Err())
	}
	cancel()
	drain(t, m)
	if !errors.Is(m.Err(), context.Canceled) {
		t.Fatalf("Err = %v, want context.Canceled", m.Err())
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close after the ctx: %v", err)
	}
	if !errors.Is(m.Err(), context.Canceled) {
		t.Fatalf("Close changed Err to %v", m.Err())
	}
}

func TestEventsCloseOnClose(t *testing.T) {
	t.Parallel()
	m, _, _ := memMonitor(t, context.Background())
	m.Close()
	drain(t, m)
	if !errors.Is(m.Err(), cnactor.ErrClosed) {
		t.Fatalf("Err = %v, want ErrClosed", m.Err())
	}
}

func TestEventsCloseWhenCallbackRemoved(t *testing.T) {
	t.Parallel()
	m, c, _ := memMonitor(t, context.Background())
	if err := c.DelCallback(proc.ID()); err != nil {
		t.Fatal(err)
	}
	drain(t, m)
	if !errors.Is(m.Err(), proc.ErrCallbackRemoved) || c.Err() != nil {
		t.Fatalf("Err = %v, want ErrCallbackRemoved", m.Err())
	}
}

// panicker fails the connector: its panic escalates past a root
// supervisor that allows no restart.
type panicker struct{}

func (panicker) Receive(handlers.Context, *transport.Message) error { panic("boom") }

func TestEventsCloseWhenConnectorFails(t *testing.T) {
	t.Parallel()
	m, c, net := memMonitor(t, context.Background(), cnactor.WithTopPolicy(cnactor.FailConnector),
		cnactor.WithRootSupervisor(supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 0, Period: time.Minute}}))
	id := transport.CbID{Idx: 0x7777, Val: 1}
	if err := c.AddCallback(id, "panicker", panicker{}); err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if err := peer.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	drain(t, m)
	// The callback goes first, then the connector reports its failure.
	testutil.WaitFor(t, "the connector's failure", func() bool { return c.Err() != nil })
	if !errors.Is(m.Err(), proc.ErrConnectorFailed) || c.Err() == nil || !errors.Is(m.Err(), c.Err()) {
		t.Fatalf("Err = %v, want ErrConnectorFailed wrapping %v", m.Err(), c.Err())
	}
}
