package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// hostRole is what an endpoint runs as on its host: a host runs at most one
// of each.
type hostRole uint8

const (
	roleNode hostRole = iota
	roleSubscriber
	hostRoles
)

func (r hostRole) String() string { return [...]string{"node", "subscriber"}[r] }

// endpoint is what a Node and a Subscriber share: the host they run on
// (their own, or the caller's), the role they claimed on it, the actor that
// serialises their work under a well-known name, and the ticker that drives
// that actor's heartbeats and liveness checks.
type endpoint struct {
	host    *Host
	ownHost bool // started for the endpoint: closed with it
	role    hostRole
	root    *actor.RootContext
	pid     *actor.PID // the endpoint's actor

	tickStop, tickDone chan struct{}
}

// tickInterval drives heartbeats and liveness checks.
const tickInterval = 100 * time.Millisecond

// tick is what the ticker sends the endpoint's actor.
type tick struct{}

var tickMsg = &tick{}

// open claims role on shared, or on a host of its own started with own
// when shared is nil, spawns the endpoint's actor as name and starts its
// ticker. The endpoint's fields are set before the actor is spawned, so
// that the actor may use them; on failure nothing is left running.
func (e *endpoint) open(shared *Host, own HostConfig, role hostRole, name string, produce actor.Producer) error {
	h := shared
	if h == nil {
		var err error
		if h, err = NewHost(own); err != nil {
			return err
		}
	}
	e.host, e.ownHost, e.role, e.root = h, shared == nil, role, h.system.Root
	if err := h.claim(role); err != nil {
		e.closeOwnHost(context.Background())
		return err
	}
	pid, err := e.root.SpawnNamed(actor.PropsFromProducer(produce), name)
	if err != nil {
		e.release(context.Background())
		return fmt.Errorf("remote: %s actor: %w", role, err)
	}
	e.pid = pid
	e.tickStop, e.tickDone = make(chan struct{}), make(chan struct{})
	go e.tick()
	return nil
}

func (e *endpoint) tick() {
	defer close(e.tickDone)
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-e.tickStop:
			return
		case <-t.C:
			e.root.Send(e.pid, tickMsg)
		}
	}
}

// stop stops the ticker, then the actor, and waits for both.
func (e *endpoint) stop() {
	close(e.tickStop)
	<-e.tickDone
	e.root.StopFuture(e.pid).Wait()
}

// release gives the role back to the host, and closes the host, within
// ctx, if it is the endpoint's own.
func (e *endpoint) release(ctx context.Context) {
	e.host.release(e.role)
	e.closeOwnHost(ctx)
}

func (e *endpoint) closeOwnHost(ctx context.Context) {
	if e.ownHost {
		e.host.Close(ctx)
	}
}

// randomID names an endpoint's instance: it tells a restarted process from
// the one before.
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
