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

// startWorker starts the goroutine; it ends when done is closed and it is
// idle.
func startWorker(done <-chan struct{}) *worker {
	w := &worker{wake: make(chan func(), 1), done: done}
	go w.run()
	return w
}

func (w *worker) run() {
	for {
		select {
		case fn := <-w.wake:
			fn()
		case <-w.done:
			return
		}
	}
}

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
