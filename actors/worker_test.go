package actors

import (
	"testing"

	"go.uber.org/goleak"
)

// A worker ends after the fn during which its done is closed (a handler's
// Stopped), or after release when done was closed while it was idle (a
// spawn that failed); a Schedule after it ended neither runs nor blocks.
// Not parallel: goleak sees every goroutine.
func TestWorkerEnds(t *testing.T) {
	t.Run("closed by its fn", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		done := make(chan struct{})
		w := startWorker(done)
		ran := make(chan struct{})
		w.Schedule(func() { close(done); close(ran) })
		<-ran
		goleak.VerifyNone(t, before)
		w.Schedule(func() { t.Error("ran after the worker ended") })
		w.Schedule(func() { t.Error("ran after the worker ended") }) // the buffer is full: must not block
	})
	t.Run("closed while idle", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		done := make(chan struct{})
		w := startWorker(done)
		ran := make(chan struct{})
		w.Schedule(func() { close(ran) })
		<-ran
		close(done)
		w.release()
		goleak.VerifyNone(t, before)
	})
}
