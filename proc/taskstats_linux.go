//go:build linux

package proc

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// taskstatsReadBuffer is the taskstats socket's receive buffer: each exit
// sends a record of about 1 KB (more with its socket overhead), and a
// burst of exits must not overflow it while the reader catches up.
const taskstatsReadBuffer = 16 << 20

// taskstatsListener receives the kernel's taskstats record of every
// task's exit, on every CPU, into an exitNames.
type taskstatsListener struct {
	conn   *netlink.Conn
	family uint16
	cpus   string
	names  *exitNames
	log    *zap.Logger
	done   chan struct{}
	once   sync.Once
}

// listenTaskstats registers for the exit records of all CPUs: the
// generic netlink family TASKSTATS, TASKSTATS_CMD_GET with
// TASKSTATS_CMD_ATTR_REGISTER_CPUMASK. The kernel allows it only with
// CAP_NET_ADMIN (GENL_ADMIN_PERM), in the initial user and pid
// namespaces (EINVAL otherwise), and needs CONFIG_TASKSTATS (ENOENT).
func listenTaskstats(names *exitNames, log *zap.Logger) (*taskstatsListener, error) {
	c, err := netlink.Dial(unix.NETLINK_GENERIC, nil)
	if err != nil {
		return nil, err
	}
	l := &taskstatsListener{conn: c, cpus: possibleCPUs(), names: names, log: log, done: make(chan struct{})}
	if err := l.register(); err != nil {
		c.Close()
		return nil, err
	}
	go l.read()
	return l, nil
}

// register resolves the family and registers for the records.
func (l *taskstatsListener) register() error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.CTRL_ATTR_FAMILY_NAME, unix.TASKSTATS_GENL_NAME)
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	// The socket receives nothing unasked before the registration: a
	// plain request-reply is safe.
	replies, err := l.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.GENL_ID_CTRL, Flags: netlink.Request},
		Data:   append([]byte{unix.CTRL_CMD_GETFAMILY, 1, 0, 0}, attrs...),
	})
	if err != nil {
		return fmt.Errorf("family %s: %w", unix.TASKSTATS_GENL_NAME, err)
	}
	for _, m := range replies {
		if len(m.Data) < genlHeaderLen {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[genlHeaderLen:])
		if err != nil {
			return err
		}
		for ad.Next() {
			if ad.Type() == unix.CTRL_ATTR_FAMILY_ID {
				l.family = ad.Uint16()
			}
		}
		if err := ad.Err(); err != nil {
			return err
		}
	}
	if l.family == 0 {
		return fmt.Errorf("family %s: no id in the reply", unix.TASKSTATS_GENL_NAME)
	}
	if err := l.conn.SetReadBuffer(taskstatsReadBuffer); err != nil {
		return err
	}
	// From here on records may arrive before the acknowledgement: read
	// until it comes, keeping the records, for a bounded time.
	req, err := l.conn.Send(l.command(taskstatsAttrRegister))
	if err != nil {
		return err
	}
	l.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer l.conn.SetReadDeadline(time.Time{})
	for {
		msgs, err := l.conn.Receive()
		if errors.Is(err, unix.ENOBUFS) {
			l.names.overflow() // records, already: the registration holds
			continue
		}
		if err != nil {
			return err // EPERM, EINVAL: the kernel's answer
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error && m.Header.Sequence == req.Header.Sequence {
				return nil
			}
			l.handle(m)
		}
	}
}

// command is a TASKSTATS_CMD_GET (un)registering the possible CPUs.
func (l *taskstatsListener) command(attr uint16) netlink.Message {
	ae := netlink.NewAttributeEncoder()
	ae.String(attr, l.cpus)
	attrs, _ := ae.Encode()
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(l.family), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append([]byte{taskstatsCmdGet, unix.TASKSTATS_GENL_VERSION, 0, 0}, attrs...),
	}
}

// read receives records until the socket is closed.
func (l *taskstatsListener) read() {
	defer close(l.done)
	for {
		msgs, err := l.conn.Receive()
		if errors.Is(err, unix.ENOBUFS) {
			l.names.overflow() // some records are lost: their execs go Stale
			continue
		}
		if err != nil {
			if !l.names.isClosed() {
				l.log.Warn("proc: taskstats socket failed; names of processes gone before their exec is read are stale from now on", zap.Error(err))
				l.names.close()
			}
			return
		}
		for _, m := range msgs {
			l.handle(m)
		}
	}
}

func (l *taskstatsListener) handle(m netlink.Message) {
	if m.Header.Type != netlink.HeaderType(l.family) {
		return
	}
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now) // the proc events' clock
	decodeTaskstats(m.Data, func(pid uint32, r exitRecord) {
		r.recvNS = uint64(now.Nano())
		l.names.add(pid, r)
	})
}

// close deregisters (the kernel would drop a dead listener only at its
// next failed send) and closes the socket.
func (l *taskstatsListener) close() {
	l.once.Do(func() {
		l.names.close()
		l.conn.Send(l.command(taskstatsAttrDeregister))
		l.conn.Close()
		<-l.done
	})
}

// possibleCPUs is the kernel's list of possible CPUs ("0-3"); the mask
// registered must be within it.
func possibleCPUs() string {
	if b, err := os.ReadFile("/sys/devices/system/cpu/possible"); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s
		}
	}
	return fmt.Sprintf("0-%d", runtime.NumCPU()-1)
}
