package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cnactor/cnactor/transport"
)

// errUsage means the flag package already printed what was wrong.
var errUsage = errors.New("usage")

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitStatus(err error) int {
	var ee *exitError
	switch {
	case errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, new(*usageError)):
		return 2
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

// newFlagSet is a command's flag set. Errors go to stderr; -h is
// handled by parseFlags, on stdout.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cnctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parseFlags prints the help, or the hint after an error
	return fs
}

// parseFlags parses a command's flags: -h prints its help on stdout
// (errHelp, exit 0); a wrong flag or a stray argument is reported on
// stderr with a hint (errUsage, exit 2).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	name := strings.TrimPrefix(fs.Name(), "cnctl ")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, fs)
			return errHelp
		}
		hint(fs.Output(), name) // the flag package printed what was wrong
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		hint(fs.Output(), name)
		return errUsage
	}
	return nil
}

// u32Flag is a uint32 flag that accepts decimal and 0x hex and knows
// whether it was set.
type u32Flag struct {
	v   uint32
	set bool
}

func (f *u32Flag) String() string { return strconv.FormatUint(uint64(f.v), 10) }
func (f *u32Flag) Set(s string) error {
	v, err := parseUint32(s)
	if err != nil {
		return fmt.Errorf("want a decimal or 0x hex number below 2^32")
	}
	f.v, f.set = v, true
	return nil
}

// parseUint32 parses a decimal or 0x-prefixed hexadecimal 32-bit number.
func parseUint32(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	return uint32(n), err
}

// groupsFlag collects repeated -group flags.
type groupsFlag []uint32

func (g *groupsFlag) String() string {
	s := make([]string, len(*g))
	for i, v := range *g {
		s[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(s, ",")
}

func (g *groupsFlag) Set(s string) error {
	v, err := parseUint32(s)
	if err == nil {
		err = transport.CheckGroup(v)
	}
	if err != nil {
		return fmt.Errorf("group must be 1..%d", transport.MaxGroup)
	}
	*g = append(*g, v)
	return nil
}

type idFlag struct {
	id  transport.CbID
	set bool
}

func (f *idFlag) String() string { return f.id.String() }
func (f *idFlag) Set(s string) (err error) {
	f.id, err = transport.ParseCbID(s)
	f.set = err == nil
	return err
}

// payloadFlags are -data HEX and -text STR, of which at most one is given.
type payloadFlags struct {
	hexData string
	text    string
}

func (p *payloadFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.hexData, "data", "", "payload as `HEX` bytes, e.g. 00ff (an optional 0x prefix)")
	fs.StringVar(&p.text, "text", "", "payload as `TEXT`")
}

func (p *payloadFlags) bytes() ([]byte, error) {
	if p.hexData != "" && p.text != "" {
		return nil, errors.New("-data and -text are exclusive")
	}
	if p.text != "" {
		return []byte(p.text), nil
	}
	b, err := hex.DecodeString(strings.TrimPrefix(p.hexData, "0x"))
	if err != nil {
		return nil, fmt.Errorf("-data: %w", err)
	}
	if len(b) > transport.MaxPayload {
		return nil, fmt.Errorf("payload of %d bytes exceeds %d", len(b), transport.MaxPayload)
	}
	return b, nil
}

// destFlags are -port P and -group G, of which exactly one is given.
type destFlags struct {
	port  u32Flag
	group u32Flag
}

func (d *destFlags) register(fs *flag.FlagSet) {
	fs.Var(&d.port, "port", "to the netlink `PORT` id of a socket, decimal or 0x hex (0 = the kernel)")
	fs.Var(&d.group, "group", "to multicast `GROUP` 1..32")
}

func (d *destFlags) addr() (transport.Addr, error) {
	switch {
	case d.port.set == d.group.set:
		return transport.Addr{}, errors.New("give exactly one of -port and -group")
	case d.group.set:
		if err := transport.CheckGroup(d.group.v); err != nil {
			return transport.Addr{}, fmt.Errorf("-group %d: %w", d.group.v, err)
		}
		return transport.Addr{Group: d.group.v}, nil
	}
	return transport.Addr{Port: d.port.v}, nil
}
