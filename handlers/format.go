package handlers

import (
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	"github.com/cnactor/cnactor/transport"
)

// AppendJSON formats one received message as the JSON object cnctl prints
// per line: keys from, group, idx, val, seq, ack, flags, len, data (hex).
// Written by hand: the layout is fixed and this runs per message.
func AppendJSON(b []byte, m *transport.Received) []byte {
	b = append(b, `{"from":`...)
	b = strconv.AppendUint(b, uint64(m.From), 10)
	b = append(b, `,"group":`...)
	b = strconv.AppendUint(b, uint64(m.Group), 10)
	b = append(b, `,"idx":`...)
	b = strconv.AppendUint(b, uint64(m.ID.Idx), 10)
	b = append(b, `,"val":`...)
	b = strconv.AppendUint(b, uint64(m.ID.Val), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, uint64(m.Seq), 10)
	b = append(b, `,"ack":`...)
	b = strconv.AppendUint(b, uint64(m.Ack), 10)
	b = append(b, `,"flags":`...)
	b = strconv.AppendUint(b, uint64(m.Flags), 10)
	b = append(b, `,"len":`...)
	b = strconv.AppendUint(b, uint64(len(m.Data)), 10)
	b = append(b, `,"data":"`...)
	b = hex.AppendEncode(b, m.Data)
	return append(b, `"}`...)
}

// AppendText formats one received message for people: the header fields,
// the payload in hex, and the payload as text when it is printable.
func AppendText(b []byte, m *transport.Received) []byte {
	b = append(b, "from="...)
	b = strconv.AppendUint(b, uint64(m.From), 10)
	b = append(b, " group="...)
	b = strconv.AppendUint(b, uint64(m.Group), 10)
	b = append(b, " id="...)
	b = append(b, m.ID.String()...)
	b = append(b, " seq="...)
	b = strconv.AppendUint(b, uint64(m.Seq), 10)
	b = append(b, " ack="...)
	b = strconv.AppendUint(b, uint64(m.Ack), 10)
	b = append(b, " flags="...)
	b = strconv.AppendUint(b, uint64(m.Flags), 10)
	b = append(b, " len="...)
	b = strconv.AppendUint(b, uint64(len(m.Data)), 10)
	b = append(b, " data="...)
	b = hex.AppendEncode(b, m.Data)
	if printable(m.Data) {
		b = append(b, " text="...)
		b = strconv.AppendQuote(b, string(m.Data))
	}
	return b
}

func printable(p []byte) bool {
	if len(p) == 0 || !utf8.Valid(p) {
		return false
	}
	for _, r := range string(p) {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}
