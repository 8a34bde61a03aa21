//go:build !linux

package benchmarks

import "context"

// Run needs Linux: elsewhere it validates cfg and returns ErrNotSupported.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

// RSS is Linux-only; it returns 0 here.
func RSS() uint64 { return 0 }

// ReserveGroups is Linux-only.
func ReserveGroups(n int) ([]uint32, func(), error) { return nil, nil, ErrNotSupported }

// MaybeServeSender returns at once: the sender process is Linux-only.
func MaybeServeSender() {}
