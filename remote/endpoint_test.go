package remote

import (
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/conntest"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// A host runs one node and one subscriber at a time; closing either gives
// its role back. (One host per test process: a second one would race on
// gRPC's global logger.)
func TestEndpointHostRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()
	h := sharedHost(t)
	c, _ := conntest.New(t)

	s, err := NewSubscriber(SubscriberConfig{Host: h, Logger: helperLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSubscriber(SubscriberConfig{Host: h}); err == nil {
		t.Fatal("a second subscriber on the host was accepted")
	}
	n, err := NewNode(c, NodeConfig{Host: h, Logger: helperLogger()})
	if err != nil {
		t.Fatalf("a node beside the subscriber: %v", err)
	}
	if _, err := NewNode(c, NodeConfig{Host: h}); err == nil {
		t.Fatal("a second node on the host was accepted")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err = NewSubscriber(SubscriberConfig{Host: h, Logger: helperLogger()}); err != nil {
		t.Fatalf("a subscriber after the first one closed: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err = NewNode(c, NodeConfig{Host: h, Logger: helperLogger()}); err != nil {
		t.Fatalf("a node after the first one closed: %v", err)
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// A closing host refuses both roles with cnactor.ErrClosed.
func TestEndpointHostClosed(t *testing.T) {
	h := &Host{closeStarted: true}
	for _, role := range []hostRole{roleNode, roleSubscriber} {
		if err := h.claim(role); !errors.Is(err, cnactor.ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("%s on a closed host: %v, want cnactor.ErrClosed (net.ErrClosed)", role, err)
		}
	}
}

// A closed subscriber refuses new callbacks with cnactor.ErrClosed.
func TestSubscriberClosed(t *testing.T) {
	s, err := NewSubscriber(SubscriberConfig{Host: sharedHost(t), Logger: helperLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = s.AddCallback(context.Background(), "127.0.0.1:1", transport.CbID{Idx: 5, Val: 1}, "late", handlers.Sink())
	if !errors.Is(err, cnactor.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("AddCallback after Close: %v, want cnactor.ErrClosed (net.ErrClosed)", err)
	}
}

// A registration is listed only once its inlet exists: Close and
// DelCallback stop the inlet of whatever they find listed (found by review:
// a Close racing AddCallback stopped a nil inlet and crashed).
func TestSubscriberListsRegistrationWithInlet(t *testing.T) {
	s, err := NewSubscriber(SubscriberConfig{Host: sharedHost(t), Logger: helperLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	// A node that accepts the connection and never says anything: the
	// probe waits on it (up to its 2 s), so the registration stays listed
	// while the test looks. An unreachable address failed at once and left
	// it listed for too short a moment to be seen under load.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	added := make(chan error, 1)
	go func() {
		added <- s.AddCallback(ctx, ln.Addr().String(), transport.CbID{Idx: 5, Val: 9}, "listed", handlers.Sink())
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		var listed *registration
		for _, r := range s.regs {
			listed = r
		}
		inlet := listed != nil && listed.inlet != nil
		s.mu.Unlock()
		if listed != nil {
			if !inlet {
				t.Fatal("a registration was listed before its inlet existed")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the registration was never listed")
		}
		runtime.Gosched()
	}
	cancel()
	if err := <-added; !errors.Is(err, context.Canceled) {
		t.Errorf("AddCallback = %v, want context.Canceled", err)
	}
}
