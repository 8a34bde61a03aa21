package protolog

import (
	"errors"
	"log/slog"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestRoutineMessagesDemoted(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := Logger(zap.New(core))
	l.Error("EndpointWriter lost connection", slog.String("address", "127.0.0.1:1"), slog.Any("error", errors.New("EOF")))
	l.Error("EndpointReader failed to deserialize", slog.Any("error", errors.New("bad")))
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d entries", len(all))
	}
	if e := all[0]; e.Level != zapcore.InfoLevel || e.Stack != "" || e.LoggerName != "protoactor" || e.ContextMap()["address"] != "127.0.0.1:1" {
		t.Errorf("disconnect logged as %v (stack %q, logger %q, fields %v)", e.Level, e.Stack, e.LoggerName, e.ContextMap())
	}
	if e := all[1]; e.Level != zapcore.ErrorLevel || e.Stack != "" {
		t.Errorf("a real error logged as %v (stack %q)", e.Level, e.Stack)
	}
}

// A demoted message below the logger's level is not written at all.
func TestDemotedBelowLevelDropped(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	l := Logger(zap.New(core))
	l.Error("EndpointWriter error when closing the stream")
	l.Error("EndpointWriter lost connection")
	l.Error("EndpointWriter failed to connect")
	if logs.Len() != 1 || logs.All()[0].Level != zapcore.WarnLevel {
		t.Fatalf("entries %v", logs.All())
	}
}
