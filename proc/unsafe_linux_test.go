//go:build linux

package proc_test

import "unsafe"

// unsafePtr returns a pointer to a NUL-terminated copy of s for prctl.
func unsafePtr(s string) unsafe.Pointer {
	b := append([]byte(s), 0)
	return unsafe.Pointer(&b[0])
}
