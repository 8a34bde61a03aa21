//go:build linux

package transport

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/cnactor/cnactor/internal/testutil"
	"golang.org/x/sys/unix"
)

// dialFault is a system call Dial makes that the kernel is made to refuse
// (with seccomp), and what Dial must then report.
type dialFault struct {
	nr          uint32   // system call number
	arg0, arg1  uint32   // matched against args[0] (socket) or args[1] (level)
	arg2        []uint32 // and args[2] (any of these options), for socket options
	errno       unix.Errno
	op          string // the OpError's Op
	sentinel    error  // an error Dial's must wrap
	opts        []DialOption
	matchDomain bool // match socket(2)'s domain (args[0]) rather than level/option
	succeeds    bool // Dial must work around the refusal
}

var dialFaults = map[string]dialFault{
	"socket":   {nr: unix.SYS_SOCKET, arg0: unix.AF_NETLINK, matchDomain: true, errno: unix.EPROTONOSUPPORT, op: "dial", sentinel: ErrNotSupported},
	"passcred": {nr: unix.SYS_SETSOCKOPT, arg1: unix.SOL_SOCKET, arg2: []uint32{unix.SO_PASSCRED}, errno: unix.EPERM, op: "set-passcred"},
	// Dial falls back from SO_RCVBUFFORCE to SO_RCVBUF, whatever the
	// refusal says (an LSM need not say EPERM).
	"read-buffer-force": {nr: unix.SYS_SETSOCKOPT, arg1: unix.SOL_SOCKET, arg2: []uint32{unix.SO_RCVBUFFORCE},
		errno: unix.EACCES, opts: []DialOption{WithReadBuffer(1 << 16)}, succeeds: true},
	"read-buffer": {nr: unix.SYS_SETSOCKOPT, arg1: unix.SOL_SOCKET, arg2: []uint32{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF},
		errno: unix.ENOMEM, op: "set-read-buffer", opts: []DialOption{WithReadBuffer(1 << 20)}},
	"join": {nr: unix.SYS_SETSOCKOPT, arg1: unix.SOL_NETLINK, arg2: []uint32{unix.NETLINK_ADD_MEMBERSHIP}, errno: unix.EPERM,
		op: "join", opts: []DialOption{WithGroups(5)}},
	"meminfo": {nr: unix.SYS_GETSOCKOPT, arg1: unix.SOL_SOCKET, arg2: []uint32{unix.SO_MEMINFO}, errno: unix.EINVAL, op: "meminfo"},
}

const dialFaultEnv = "CNACTOR_TEST_DIAL_FAULT"

// Every way Dial can fail after it opened the socket closes the socket:
// each case runs in a child process (a seccomp filter cannot be removed)
// where the kernel refuses one of Dial's system calls; the child checks
// the error and that it has as many descriptors open as before.
func TestIntegrationDialFailureCleanup(t *testing.T) {
	if name := os.Getenv(dialFaultEnv); name != "" {
		dialFaultChild(t, name)
		return
	}
	testutil.KernelConnector(t)
	for name := range dialFaults {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestIntegrationDialFailureCleanup$", "-test.v")
			// The race detector sleeps a second at exit unless told not to.
			cmd.Env = append(os.Environ(), dialFaultEnv+"="+name, "GORACE=atexit_sleep_ms=0")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "dial fault ok") {
				t.Fatalf("child for %s: %v\n%s", name, err, out)
			}
		})
	}
}

func dialFaultChild(t *testing.T, name string) {
	f, ok := dialFaults[name]
	if !ok {
		t.Fatalf("no dial fault %q", name)
	}
	// One Dial before the filter: the runtime and the netlink package
	// open whatever they keep open once.
	if c, err := Dial(f.opts...); err != nil {
		t.Fatalf("dial before the filter: %v", err)
	} else {
		c.Close()
	}
	before := openFDs(t)
	if err := refuse(f); err != nil {
		t.Fatalf("seccomp: %v", err)
	}
	c, err := Dial(f.opts...)
	if f.succeeds {
		if err != nil {
			t.Fatalf("%s: Dial = %v, want it to work around the refusal", name, err)
		}
		c.Close()
		fmt.Println("dial fault ok")
		return
	}
	if err == nil {
		c.Close()
		t.Fatalf("%s: Dial succeeded", name)
	}
	var op *OpError
	if !errors.As(err, &op) || op.Op != f.op || !errors.Is(err, f.errno) || f.sentinel != nil && !errors.Is(err, f.sentinel) {
		t.Fatalf("%s: Dial = %#v (%v), want a %q OpError wrapping %v", name, err, err, f.op, f.errno)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%s: %d descriptors open after the failed Dial, %d before: the socket leaked", name, after, before)
	}
	fmt.Println("dial fault ok")
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// refuse installs, on every thread, a seccomp filter failing the system
// call f names with f.errno and allowing everything else.
func refuse(f dialFault) error {
	const (
		ldW   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		nrOff = 0
		arg   = 16 // offsetof(struct seccomp_data, args); low 32 bits first on little-endian
	)
	deny := uint32(unix.SECCOMP_RET_ERRNO) | uint32(f.errno)
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	var prog []unix.SockFilter
	if f.matchDomain {
		prog = []unix.SockFilter{
			{Code: ldW, K: nrOff},
			{Code: jeq, K: f.nr, Jf: 3},
			{Code: ldW, K: arg + 8*0},
			{Code: jeq, K: f.arg0, Jf: 1},
			{Code: ret, K: deny},
			{Code: ret, K: allow},
		}
	} else {
		// nr, then level, then any of the options: deny; else allow.
		n := uint8(len(f.arg2))
		prog = []unix.SockFilter{
			{Code: ldW, K: nrOff},
			{Code: jeq, K: f.nr, Jf: 3 + n},
			{Code: ldW, K: arg + 8*1},
			{Code: jeq, K: f.arg1, Jf: 1 + n},
			{Code: ldW, K: arg + 8*2},
		}
		for i, o := range f.arg2 {
			prog = append(prog, unix.SockFilter{Code: jeq, K: o, Jt: n - uint8(i)})
		}
		prog = append(prog, unix.SockFilter{Code: ret, K: allow}, unix.SockFilter{Code: ret, K: deny})
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	// Without CAP_SYS_ADMIN the calling thread needs no_new_privs; both
	// calls must run on that thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return errno
	}
	return nil
}
