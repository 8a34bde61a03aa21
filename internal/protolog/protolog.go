// Package protolog routes protoactor-go's log/slog output into a zap
// logger at levels that say what happened. protoactor logs a peer's
// ordinary disconnect (a node or subscriber going away) at ERROR, which
// zapslog would print with a stack trace of the logging goroutine; here
// such routine messages are demoted, and no stack trace is added (the
// stack of protoactor's logging goroutine tells the reader nothing).
package protolog

import (
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// routine are protoactor messages logged above their meaning, and the
// level they deserve. The remote layer reports lost peers itself.
var routine = map[string]zapcore.Level{
	"EndpointWriter lost connection":                      zapcore.InfoLevel,
	"EndpointReader failed to send disconnection message": zapcore.InfoLevel,
	"EndpointWriter error when closing the stream":        zapcore.DebugLevel,
	"EndpointWriter error when closing the client conn":   zapcore.DebugLevel,
	"EndpointWriter failed to connect":                    zapcore.WarnLevel,
}

// Logger returns the slog logger to give protoactor (actor.WithLoggerFactory),
// writing to log under the name "protoactor".
func Logger(log *zap.Logger) *slog.Logger {
	return slog.New(zapslog.NewHandler(demote{log.Core()}, zapslog.WithName("protoactor"),
		zapslog.AddStacktraceAt(slog.Level(127))))
}

// demote lowers the level of routine messages before the wrapped core
// decides whether to write them.
type demote struct{ zapcore.Core }

func (d demote) With(fields []zapcore.Field) zapcore.Core { return demote{d.Core.With(fields)} }

func (d demote) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if lvl, ok := routine[e.Message]; ok && e.Level > lvl {
		e.Level = lvl
	}
	return d.Core.Check(e, ce)
}
