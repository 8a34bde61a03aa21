package main

// Handler packages linked into cnctl: each registers its handlers by name
// in its init (handlers.Register), and `cnctl serve` (stdin commands and
// -config files) can then use them. Link yours in the same way.
import (
	_ "github.com/cnactor/cnactor/examples/plugin/upper" // "upper"
	_ "github.com/cnactor/cnactor/proc"                  // "proc"
)
