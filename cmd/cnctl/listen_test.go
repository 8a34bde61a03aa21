package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"golang.org/x/sys/unix"
)

// Issue 13, item 9: a garbage flood used to print one stderr line per
// malformed datagram (98,453 lines). Lines are limited to one per second,
// and the suppressed count is printed, at the latest on exit.
func TestIntegrationListenMalformedRateLimited(t *testing.T) {
	testutil.Privileged(t)
	stdout, stderr, done := started(t, context.Background(), "listen", "-count", "1", "-timeout", "20s")
	port := waitListening(t, stderr)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var p uint32
	fmt.Sscan(port, &p)
	const garbage = 2000
	start := time.Now()
	for range garbage { // unicast: the sender waits for room, nothing is lost
		if err := unix.Sendto(fd, []byte("short"), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: p}); err != nil {
			t.Fatal(err)
		}
	}
	// Positive control: the message after the garbage is printed, so every
	// malformed datagram before it was seen.
	if st, _, e := runCmd(t, "send", "-id", "3:3", "-port", port, "-text", "after"); st != 0 {
		t.Fatalf("send: %d %s", st, e)
	}
	if st := <-done; st != 0 {
		t.Fatalf("listen exited %d: %s", st, stderr.String())
	}
	elapsed := time.Since(start)
	if !strings.Contains(stdout.String(), `text="after"`) {
		t.Fatalf("stdout %q lacks the message sent after the garbage", stdout.String())
	}
	lines := strings.Count(stderr.String(), "malformed datagram from port")
	if lines < 1 || lines > 1+int(elapsed/time.Second) {
		t.Errorf("%d malformed-datagram lines for %d datagrams in %v; want one per second", lines, garbage, elapsed)
	}
	m := regexp.MustCompile(`malformed datagrams: (\d+) in total, (\d+) line\(s\) suppressed`).FindStringSubmatch(stderr.String())
	if m == nil || m[1] != fmt.Sprint(garbage) || m[2] != fmt.Sprint(garbage-lines) {
		t.Errorf("no summary of %d malformed, %d suppressed in %q", garbage, garbage-lines, stderr.String())
	}
}

// Issue 13, item 6: -rcvbuf over what the kernel takes is an error, not a
// 2,304-byte buffer.
func TestListenRcvbufBounded(t *testing.T) {
	for _, v := range []string{"2147483648", "9223372036854775807", "-1"} {
		st, _, stderr := runCmd(t, "listen", "-rcvbuf", v, "-timeout", "1ms")
		if st == 0 || !strings.Contains(stderr, "-rcvbuf "+v+": want 0..1073741823") {
			t.Errorf("-rcvbuf %s: status %d, stderr %q", v, st, stderr)
		}
	}
}
