// Package spawn carries protoactor values between the root package, which
// owns the actor system, and the packages that run actors on it (actors,
// supervisor). Being internal, it keeps protoactor out of their exported
// API: a user never spawns those actors, so no signature they read should
// name the actor runtime.
package spawn

import "github.com/asynkron/protoactor-go/actor"

// Parent is where an actor is spawned: the actor system's root, or the
// context of the supervisor actor that watches it.
type Parent struct{ Ctx actor.SpawnerContext }

// Root is the root context of Parent's actor system, for sending to and
// stopping actors from outside them.
func (p Parent) Root() *actor.RootContext { return p.Ctx.ActorSystem().Root }

// Child is a spawned actor as its supervisor tracks it.
type Child struct{ PID *actor.PID }

// Is reports whether c and o are the same actor: a restarted child is a
// different one.
func (c Child) Is(o Child) bool { return c.PID != nil && c.PID.Equal(o.PID) }
