// Package watch is the registry of callbacks behind cnactor's Watch
// methods: functions added and removed at any time, all called, in turn,
// for each value emitted.
package watch

import "sync"

// List is a set of watchers of values of type T. The zero value is ready.
type List[T any] struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(T)
}

// Add registers fn and returns the function that removes it.
func (l *List[T]) Add(fn func(T)) (stop func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fns == nil {
		l.fns = map[int]func(T){}
	}
	id := l.next
	l.next++
	l.fns[id] = fn
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.fns, id)
	}
}

// Emit calls every watcher with v. Emits are serialised, so each watcher
// sees values in the order they were emitted.
func (l *List[T]) Emit(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fn := range l.fns {
		fn(v)
	}
}
