package dispatch

import "github.com/cnactor/cnactor/transport"

// GroupRefs returns how many registered callbacks hold group g, for the
// external tests; the connector never needs it.
func GroupRefs(t *Table, g uint32) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if transport.CheckGroup(g) != nil {
		return 0
	}
	return t.refs[g]
}
