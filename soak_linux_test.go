package cnactor_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

var (
	soakFor  = flag.Duration("soak", 0, "run TestSoak on the kernel for this long (go test -run TestSoak -soak 2m)")
	soakSkip = flag.String("soak-skip", "", "comma-separated attackers TestSoak leaves out: garbage, forged, control, deaf, reload")
)

// TestSoak runs every hostile input at once on the real kernel for -soak:
// garbage datagrams, forged senders to a kernel-only callback, a flood of
// notification subscriptions, a peer that never reads the echoes it asks
// for, and a reload storm; meanwhile a well-behaved client's requests must
// keep being answered, RSS must stay bounded and the warnings rate-limited,
// and at the end every callback's books must balance.
func TestSoak(t *testing.T) {
	if *soakFor <= 0 {
		t.Skip("the soak test runs with -soak DURATION")
	}
	testutil.Privileged(t)
	g := testutil.Group(t)
	var warnings atomic.Int64
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(discard{}), zap.WarnLevel),
		zap.Hooks(func(zapcore.Entry) error { warnings.Add(1); return nil }))

	base := fmt.Sprintf(`callbacks:
  - {id: "%d:1", handler: echo}
  - {id: "%d:2", handler: test-kernel-only}
  - {id: "%d:3", handler: sink, mailbox: {size: 64, overflow: drop-newest}}
`, g, g, g)
	extra := base + fmt.Sprintf("  - {id: \"%d:4\", handler: count}\n", g)
	cfgBase, err := config.Parse("base.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	cfgExtra, err := config.Parse("extra.yaml", []byte(extra))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cnactor.New(append(cfgBase.Options(), cnactor.WithLogger(logger))...)
	if err != nil {
		t.Fatal(err)
	}
	applied, _, err := config.Apply(c, cfgBase, handlers.Env{Stdout: discard{}, Stderr: discard{}})
	if err != nil {
		t.Fatal(err)
	}
	echo, kernelOnly := transport.CbID{Idx: g, Val: 1}, transport.CbID{Idx: g, Val: 2}
	to := transport.Addr{Port: c.Port()}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var garbage, forged, controls, unread, reloads atomic.Uint64
	loop := func(name string, fn func(rng *rand.Rand) error) {
		if strings.Contains(","+*soakSkip+",", ","+name+",") {
			return
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for ctx.Err() == nil {
				if err := fn(rng); err != nil && ctx.Err() == nil {
					t.Errorf("attacker: %v", err)
					return
				}
			}
		})
	}
	dial := func(opts ...transport.DialOption) *transport.NetlinkConn {
		conn, err := transport.Dial(opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	send := func(conn transport.Conn, m *transport.Message) error {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err := conn.Send(sctx, to, m)
		if ctx.Err() != nil || err == nil || strings.Contains(err.Error(), "timed out") || strings.Contains(err.Error(), "deadline") {
			return nil // a full queue is backpressure, not a failure
		}
		return err
	}

	// Garbage: raw datagrams too short, with lying lengths, or random.
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Usec: 100000})
	loop("garbage", func(rng *rand.Rand) error {
		b := make([]byte, 1+rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if len(b) >= 16 && rng.IntN(2) == 0 {
			binary.NativeEndian.PutUint32(b, uint32(rng.IntN(3))*8) // nlmsg_len 0, 8 or 16
		}
		if unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: c.Port()}) == nil {
			garbage.Add(1)
		}
		return nil
	})
	// Forged: a user process posing as the kernel's proc connector.
	forger := dial()
	loop("forged", func(rng *rand.Rand) error {
		forged.Add(1)
		return send(forger, &transport.Message{ID: kernelOnly, Seq: rng.Uint32(), Data: make([]byte, 40)})
	})
	// Control flood: ever new notification subscriptions, and duplicates.
	controller := dial()
	loop("control", func(rng *rand.Rand) error {
		s := dispatch.Subscription{Group: g, IdxRanges: []dispatch.Range{{First: rng.Uint32(), Count: 1}}, ValRanges: make([]dispatch.Range, 1+rng.IntN(80))}
		controls.Add(1)
		return send(controller, &transport.Message{ID: dispatch.CoreID(), Data: dispatch.AppendControl(nil, &s)})
	})
	// A peer that asks for echoes and never reads them.
	deaf := dial(transport.WithReadBuffer(4096))
	loop("deaf", func(rng *rand.Rand) error {
		unread.Add(1)
		return send(deaf, &transport.Message{ID: echo, Seq: rng.Uint32(), Data: []byte("never read")})
	})
	// Reload storm: a callback added and removed again and again.
	loop("reload", func(rng *rand.Rand) error {
		next := cfgExtra
		if reloads.Add(1)%2 == 0 {
			next = cfgBase
		}
		if _, err := applied.Reload(next); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		return nil
	})

	// The well-behaved client.
	client, err := cnactor.New()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.Background())
	var answered, unanswered atomic.Uint64
	var lastAnswer atomic.Int64
	lastAnswer.Store(time.Now().UnixNano())
	wg.Go(func() {
		for ctx.Err() == nil {
			_, err := client.Request(ctx, to, &transport.Message{ID: echo, Data: []byte("hello")}, cnactor.WithRequestTimeout(2*time.Second))
			switch {
			case err == nil:
				answered.Add(1)
				lastAnswer.Store(time.Now().UnixNano())
			case ctx.Err() == nil:
				unanswered.Add(1)
			}
		}
	})

	start := time.Now()
	baseline := rssKiB(t)
	var maxRSS int64
	var worstGap time.Duration
	for tick := time.NewTicker(time.Second); time.Since(start) < *soakFor; <-tick.C {
		maxRSS = max(maxRSS, rssKiB(t))
		worstGap = max(worstGap, time.Since(time.Unix(0, lastAnswer.Load())))
		if s := int(time.Since(start).Seconds()); s%10 == 0 {
			st := c.Stats()
			t.Logf("%3ds: answered %d unanswered %d | garbage %d (malformed %d) forged %d (rejected %d) controls %d (subscriptions %d, rejected %d) unread echoes %d reloads %d | rss %d MiB warnings %d",
				s, answered.Load(), unanswered.Load(), garbage.Load(), st.Reader.Malformed, forged.Load(), st.Reader.Rejected,
				controls.Load(), st.Control.Subscriptions, st.Control.Rejected, unread.Load(), reloads.Load(), maxRSS>>10, warnings.Load())
		}
	}
	stop()
	wg.Wait()
	elapsed := time.Since(start)

	// Legitimate traffic kept flowing.
	if worstGap > 5*time.Second || answered.Load() == 0 {
		t.Errorf("the client went %v without an answer (%d answered, %d not)", worstGap, answered.Load(), unanswered.Load())
	}
	if a, u := answered.Load(), unanswered.Load(); u*100 > a+u {
		t.Errorf("%d of %d requests unanswered (over 1%%)", u, a+u)
	}
	// Memory bounded.
	if grown := (maxRSS - baseline) >> 10; grown > 256 {
		t.Errorf("RSS grew by %d MiB (from %d MiB to %d MiB)", grown, baseline>>10, maxRSS>>10)
	}
	// Warnings rate-limited: a handful of kinds, one each per second.
	if w := warnings.Load(); w > 20*int64(elapsed/time.Second+1) {
		t.Errorf("%d warnings in %v: not rate-limited", w, elapsed)
	}
	// The books balance once everything queued is handled.
	st := c.Stats()
	if st.Reader.Malformed == 0 || st.Reader.Rejected == 0 || st.Control.Rejected == 0 {
		t.Errorf("an attack left no trace: %+v %+v", st.Reader, st.Control)
	}
	if st.Control.Subscriptions > dispatch.DefaultMaxSubscriptions {
		t.Errorf("%d subscriptions stored", st.Control.Subscriptions)
	}
	var unbalanced string
	testutil.WaitFor(t, "every queue drained and every callback's books balanced", func() bool {
		unbalanced = ""
		for _, cb := range c.Stats().Callbacks {
			if cb.Queued != 0 || cb.Received != cb.Handled+cb.Failed+cb.Dropped {
				unbalanced += fmt.Sprintf(" %s %+v;", cb.ID, cb.CallbackStats)
			}
		}
		if unbalanced != "" && testutil.WaitTimeout-time.Since(start.Add(elapsed)) < time.Second {
			t.Logf("still unbalanced:%s", unbalanced)
		}
		return unbalanced == ""
	})
	t.Logf("%v: answered %d, unanswered %d, worst gap %v, RSS %d -> %d MiB, warnings %d; reader %+v; control %+v",
		elapsed.Round(time.Second), answered.Load(), unanswered.Load(), worstGap.Round(time.Millisecond), baseline>>10, maxRSS>>10, warnings.Load(), st.Reader, st.Control)
	if err := c.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Sync() error                 { return nil }

// rssKiB is the process's resident set size.
func rssKiB(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
