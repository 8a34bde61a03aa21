package supervisor_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/supervisor"
)

// Issue 13, item 12: registering n callbacks was quadratic, partly because
// a supervisor found a child by key (StartChild's duplicate check) and
// removed one (Forget) by scanning all its children. Starting and
// forgetting a child must cost about the same beside 20,000 siblings as
// beside none (a scan of 20,000 made it some 30 times dearer).
func TestChildCostFlat(t *testing.T) {
	r := newRig(t, supervisor.Spec{})
	// Children that are PIDs only: the supervisor's own bookkeeping is
	// what is measured, not spawning actors.
	fake := func(key string) supervisor.Starter {
		return func(spawn.Parent) (spawn.Child, error) { return spawn.Child{PID: actor.NewPID("fake", key)}, nil }
	}
	noStop := func(spawn.Child, error) {}
	// cost is the best of three rounds of starting and forgetting 500
	// children: the best round is the one least disturbed by the machine.
	cost := func(prefix string) time.Duration {
		best := time.Duration(1<<63 - 1)
		for round := range 3 {
			start := time.Now()
			for i := range 500 {
				key := fmt.Sprintf("%s-%d-%d", prefix, round, i)
				if err := r.top.StartChild(key, supervisor.ChildSpec{Restart: supervisor.Temporary}, fake(key), noStop); err != nil {
					t.Fatal(err)
				}
				r.top.Forget(key)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	alone := cost("alone")
	for i := range 20000 {
		key := fmt.Sprintf("sibling-%d", i)
		if err := r.top.StartChild(key, supervisor.ChildSpec{Restart: supervisor.Temporary}, fake(key), noStop); err != nil {
			t.Fatal(err)
		}
	}
	crowded := cost("crowded")
	t.Logf("500 starts and forgets: %v alone, %v beside 20,000 siblings", alone, crowded)
	if crowded > 5*alone {
		t.Errorf("beside 20,000 siblings a child costs %.1f times as much: the supervisor scans its children", float64(crowded)/float64(alone))
	}
}
