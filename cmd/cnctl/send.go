package main

import (
	"context"
	"fmt"

	"github.com/cnactor/cnactor/transport"
)

func runSend(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("send", e.stderr)
	var id idFlag
	var seq, ack, flags u32Flag
	var dest destFlags
	var payload payloadFlags
	fs.Var(&id, "id", "callback id `IDX:VAL`, each part decimal or 0x hex (required)")
	fs.Var(&seq, "seq", "sequence number `N`")
	fs.Var(&ack, "ack", "acknowledge number `N`")
	fs.Var(&flags, "flags", "cn_msg `FLAGS` (16 bits)")
	dest.register(fs)
	payload.register(fs)
	if err := parseFlags(fs, args, e.stdout); err != nil {
		return err
	}
	if !id.set {
		return usagef("-id IDX:VAL is required")
	}
	if flags.v > 0xffff {
		return usagef("-flags %d does not fit in 16 bits", flags.v)
	}
	to, err := dest.addr()
	if err != nil {
		return &usageError{err}
	}
	data, err := payload.bytes()
	if err != nil {
		return &usageError{err}
	}
	conn, err := transport.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	m := transport.Message{ID: id.id, Seq: seq.v, Ack: ack.v, Flags: uint16(flags.v), Data: data}
	if err := conn.Send(ctx, to, &m); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "sent %d byte(s) id=%s seq=%d ack=%d to %s from port=%d\n", len(data), id.id, m.Seq, m.Ack, to, conn.Port())
	return nil
}
