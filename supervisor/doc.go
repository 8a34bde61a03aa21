// Package supervisor gives cnactor's handler actors OTP-grade supervision
// on top of protoactor-go, whose own strategies restart with no notion of
// restart types, supervisor-wide intensity or real backoff.
//
// A Supervisor is a protoactor actor that is the parent of its children:
// handler actors (one per callback) and nested supervisors, kept in start
// order. When a child fails (its handler panicked, or returned an error the
// Decider does not Resume) protoactor suspends the child's mailbox and hands
// the failure to the supervisor, which decides:
//
//	failure ─▶ Decider ─▶ Resume   the message is dropped (already counted), the child goes on
//	                   ├▶ Stop     the child is stopped and its callback unregistered
//	                   ├▶ Escalate the supervisor fails (below)
//	                   └▶ Restart  by restart type: Temporary is removed; otherwise the
//	                               intensity check, then after the backoff delay the
//	                               children the strategy names are restarted in place
//
// A restart in place re-creates the actor but keeps its mailbox, so the
// messages queued behind the failing one are handled afterwards, in order;
// while a child waits for its restart its bounded mailbox keeps accepting
// messages up to capacity and drops (and counts) the rest. A restarted
// handler that implements handlers.Restarter resets its state.
//
// When a restart would exceed the supervisor's intensity (more than
// MaxRestarts within Period), the supervisor stops all its children (their
// callbacks are unregistered, which sends removal notifications) and
// escalates: its parent treats it as a failed child and restarts it by its
// own rules, starting its children afresh. At the top, the owner's
// OnTopFailure decides (cnactor: keep running without those handlers, or
// fail the connector). Nothing escalates into protoactor's guardian, so a
// failing handler can never crash the process.
//
// # Compared with Erlang/OTP
//
//	OTP supervisor                          cnactor supervisor
//	--------------------------------------  -----------------------------------------------
//	child restart: permanent/transient/     the same three; "normal exit" is a handler
//	  temporary                               returning handlers.ErrStop
//	one_for_one, one_for_all, rest_for_one  the same, children in start order
//	intensity / period per supervisor       the same (Intensity), default 100 in 10 s
//	exceeding intensity: terminate children the same: children stopped and unregistered,
//	  and exit; parent applies its strategy   parent restarts the supervisor by its type
//	no restart delay                        exponential Backoff per child: Min doubling to
//	                                          Max, Jitter, reset after ResetAfter of stability
//	a crash loses the process's mailbox     the mailbox survives a restart; only the failing
//	                                          message is dropped (counted, dead-lettered)
//	shutdown: brutal_kill | timeout         ChildSpec.ShutdownTimeout; Go cannot kill a
//	                                          goroutine, so a handler stuck past it is
//	                                          abandoned: unregistered, its queue counted
//	                                          as dropped, its actor ends when it returns
//	errors are exits                        a Decider maps each failure to resume, restart,
//	                                          stop or escalate (default: panics restart,
//	                                          returned errors resume)
//	supervisor reports to its parent        the top supervisor reports to the connector
//
// Every step is reported as an Event (failed, backoff, restarted, stopped,
// escalated) and each child's state, restart count and current backoff are
// readable with Status.
//
// # Who calls what
//
// The cnactor Connector owns the tree: New and StartChild, with its Starter
// and StopFunc, deal in spawn values that only the cnactor module can make,
// because every child is an actor on the Connector's actor system. Users
// describe supervision with Spec and ChildSpec (Connector.AddSupervisor,
// WithRootSupervisor, WithRestart, WithShutdownTimeout) and read it back as
// Events (Connector.WatchSupervision) and ChildStatus (Connector.Stats).
package supervisor
