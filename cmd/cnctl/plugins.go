package main

// Handler packages linked into cnctl besides the built-ins of package
// handlers: each registers its handlers by name in its init
// (handlers.Register), and `cnctl serve` (stdin commands and -config
// files) can then use them. Plugins such as examples/plugin/upper are
// linked by their own programs (examples/plugin), not by cnctl, which
// depends on nothing under examples/.
import (
	_ "github.com/cnactor/cnactor/proc" // "proc"
)
