// Package testutil holds cnactor's test helpers: the skip rules for tests
// that need the real kernel connector, and a cross-process allocator of
// netlink groups so that parallel test binaries never share one.
package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireKernelEnv names the variable that turns kernel-test skips into
// failures; CI sets it.
const RequireKernelEnv = "CNACTOR_REQUIRE_KERNEL"

var (
	probeOnce sync.Once
	probeErr  error
)

// probe checks that a NETLINK_CONNECTOR socket can be opened.
func probe() error {
	probeOnce.Do(func() {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
		if err != nil {
			probeErr = fmt.Errorf("kernel lacks NETLINK_CONNECTOR: %w", err)
			return
		}
		unix.Close(fd)
	})
	return probeErr
}

// skip skips the test with reason, or fails it when CNACTOR_REQUIRE_KERNEL=1.
func skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireKernelEnv) == "1" {
		t.Fatalf("%s=1 but this kernel test cannot run: %s", RequireKernelEnv, reason)
	}
	t.Skip("skipping kernel test: " + reason)
}

// KernelConnector skips (or fails, see RequireKernelEnv) unless the kernel
// connector can be used at all: sends to the kernel and proc events.
func KernelConnector(t testing.TB) {
	t.Helper()
	if err := probe(); err != nil {
		skip(t, err.Error())
	}
}

// Privileged skips (or fails) unless the connector is available and the
// process may send user-to-user and multicast messages (root or
// CAP_NET_ADMIN).
func Privileged(t testing.TB) {
	t.Helper()
	KernelConnector(t)
	if !hasNetAdmin() {
		skip(t, "needs root or CAP_NET_ADMIN for user-to-user and multicast netlink sends")
	}
}

func hasNetAdmin() bool {
	if os.Geteuid() == 0 {
		return true
	}
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0
}

// Group reserves a netlink multicast group in 2..32 (1 belongs to the proc
// connector) for the whole test, across every test process on the machine,
// with an flock per group. It fails the test when all are taken.
func Group(t testing.TB) uint32 {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "cnactor-test-groups")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for g := uint32(2); g <= 32; g++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(g)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			continue
		}
		if err != nil {
			f.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() }) // closing releases the lock
		return g
	}
	t.Fatal("testutil: all netlink groups 2..32 are in use by other tests")
	return 0
}

// Exclusive holds a machine-wide lock named name for the rest of the test,
// waiting for it if another test process holds it: tests that flood the
// kernel with processes and tests that compare whole event streams take the
// same lock so that one's storm does not become the other's noise.
func Exclusive(t testing.TB, name string) {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "cnactor-test-locks")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

// ProcStorm is the Exclusive lock of tests that spawn process storms or
// need a quiet proc connector.
const ProcStorm = "proc-storm"
