package actors

// worker is the protoactor Dispatcher of one handler actor: its mailbox runs
// on a single long-lived goroutine instead of a new goroutine per burst of
// messages (protoactor's default). A fresh goroutine starts with a small
// stack and copies it as the handler's call depth grows, on every message
// that finds the mailbox idle; a worker grows its stack once.
type worker struct {
	wake chan func()
	done <-chan struct{}
}

// workerThroughput is how many messages a mailbox handles before it yields.
const workerThroughput = 300

// startWorker starts the goroutine; it ends after the fn during which done
// was closed (the actor's Stopped), or, if done was closed while it was
// idle, after the next fn scheduled (see release).
func startWorker(done <-chan struct{}) *worker {
	w := &worker{wake: make(chan func(), 1), done: done}
	go w.run()
	return w
}

// run waits with a plain receive, not a select with done: a select locks
// and queues on both channels and dequeues from both once woken, on the
// path of every message that finds the handler idle.
func (w *worker) run() {
	for {
		fn := <-w.wake
		fn()
		select {
		case <-w.done:
			return
		default:
		}
	}
}

// release ends a worker whose done was closed while it was idle.
func (w *worker) release() { w.Schedule(func() {}) }

// Schedule runs fn on the worker. The mailbox schedules only on its idle to
// running transition, so at most one fn waits; once the actor has stopped,
// nothing runs.
func (w *worker) Schedule(fn func()) {
	select {
	case w.wake <- fn: // the common case, without locking done as well
		return
	default:
	}
	select {
	case w.wake <- fn:
	case <-w.done:
	}
}

// Throughput implements actor.Dispatcher.
func (w *worker) Throughput() int { return workerThroughput }
