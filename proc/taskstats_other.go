//go:build !linux

package proc

import (
	"errors"

	"go.uber.org/zap"
)

// taskstatsListener: taskstats is Linux's.
type taskstatsListener struct{}

func listenTaskstats(*exitNames, *zap.Logger) (*taskstatsListener, error) {
	return nil, errors.New("taskstats is Linux only")
}

func (*taskstatsListener) close() {}
