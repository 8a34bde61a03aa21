package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/remote"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// tlsFlags are the mutual TLS files of a node or a subscriber.
type tlsFlags struct {
	cert, key, ca string
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.cert, "tls-cert", "", "mutual TLS: this side's certificate `FILE` (PEM), presented to both ends of every connection")
	fs.StringVar(&t.key, "tls-key", "", "mutual TLS: the certificate's key `FILE` (PEM)")
	fs.StringVar(&t.ca, "tls-ca", "", "mutual TLS: CA bundle `FILE` (PEM) the other side's certificate must chain to")
}

// load returns the TLS configuration, nil without -tls-cert.
func (t *tlsFlags) load() (*remote.TLS, error) {
	if t.cert == "" && t.key == "" && t.ca == "" {
		return nil, nil
	}
	if t.cert == "" || t.key == "" || t.ca == "" {
		return nil, errors.New("mutual TLS needs -tls-cert, -tls-key and -tls-ca")
	}
	return remote.LoadMutualTLS(t.cert, t.key, t.ca)
}

// nodeFlags are `cnctl serve`'s flags for exporting callbacks to remote
// subscribers.
type nodeFlags struct {
	export    string
	listen    string
	advertise string
	name      string
	tls       tlsFlags
}

func addNodeFlags(fs *flag.FlagSet) *nodeFlags {
	f := &nodeFlags{}
	fs.StringVar(&f.export, "export", "", "run a node exporting these callback ids (`IDX:VAL,...`) to remote subscribers; 1:1 is the proc connector (cnctl proc -remote)")
	fs.StringVar(&f.listen, "listen", remote.DefaultListen, "with -export: the `HOST:PORT` remote subscribers connect to (loopback unless told otherwise)")
	fs.StringVar(&f.advertise, "advertise", "", "with -export: the `HOST:PORT` subscribers dial, when it is not -listen (required to listen on all interfaces)")
	fs.StringVar(&f.name, "name", "", "with -export: the node's `NAME` in its subscribers' events (default: the host name)")
	f.tls.register(fs)
	return f
}

// parseExports parses -export.
func parseExports(list string) ([]remote.Export, error) {
	var exports []remote.Export
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		id, err := transport.ParseCbID(f)
		if err != nil {
			return nil, fmt.Errorf("-export: %w", err)
		}
		if id == proc.ID() {
			exports = append(exports, remote.ProcExport())
		} else {
			exports = append(exports, remote.Export{ID: id})
		}
	}
	if len(exports) == 0 {
		return nil, errors.New("-export: no callback id")
	}
	return exports, nil
}

// start runs the node on c when -export was given; stop closes it (and may
// be called more than once). It reports the node's address and its
// subscribers on stderr.
func (f *nodeFlags) start(c *cnactor.Connector, log *zap.Logger, stderr io.Writer) (stop func(), err error) {
	if f.export == "" {
		return func() {}, nil
	}
	exports, err := parseExports(f.export)
	if err != nil {
		return nil, err
	}
	t, err := f.tls.load()
	if err != nil {
		return nil, err
	}
	n, err := remote.NewNode(c, remote.NodeConfig{
		Listen: f.listen, Advertise: f.advertise, Exports: exports, TLS: t, Name: f.name, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	n.Watch(func(ev remote.NodeEvent) {
		why := ""
		if ev.Reason != nil {
			why = " reason=" + strconv.Quote(ev.Reason.Error())
		}
		fmt.Fprintf(stderr, "remote %s id=%s subscriber=%s subscription=%x offered=%d sent=%d dropped=%d%s\n",
			ev.Kind, ev.ID, ev.Subscriber, ev.Subscription, ev.Offered, ev.Sent, ev.Dropped, why)
	})
	ids := make([]string, 0, len(exports))
	for _, id := range n.Exports() {
		ids = append(ids, id.String())
	}
	fmt.Fprintf(stderr, "node listening addr=%s name=%s exports=%s tls=%v\n", n.Addr(), n.Name(), strings.Join(ids, ","), t != nil)
	closed := false
	return func() {
		if closed {
			return
		}
		closed = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Close(ctx)
	}, nil
}

// procRemoteFlags are `cnctl proc`'s flags for a fleet stream.
type procRemoteFlags struct {
	remote    string
	listen    string
	advertise string
	tls       tlsFlags
}

func addProcRemoteFlags(fs *flag.FlagSet) *procRemoteFlags {
	f := &procRemoteFlags{}
	fs.StringVar(&f.remote, "remote", "", "watch these nodes (`[HOST=]HOST:PORT,...`, each a cnctl serve -export 1:1) instead of this kernel; each event is labelled with its host")
	fs.StringVar(&f.listen, "remote-listen", remote.DefaultSubscriberListen, "with -remote: the `HOST:PORT` the nodes connect back to (must be reachable from them)")
	fs.StringVar(&f.advertise, "remote-advertise", "", "with -remote: the `HOST:PORT` the nodes dial, when it is not -remote-listen")
	f.tls.register(fs)
	return f
}

// runProcRemote is `cnctl proc -remote`: the proc streams of several nodes
// as one, each event labelled with its host (a Host column; a "host" key in
// JSON). Status changes and the final counts go to stderr.
func runProcRemote(ctx context.Context, e *env, f *procRemoteFlags, mask proc.What, events string, pid u32Flag, jsonOut bool) error {
	nodes, err := remote.ParseProcNodes(f.remote)
	if err != nil {
		return err
	}
	if err := reachable(f.listen, f.advertise, nodes); err != nil {
		return err
	}
	t, err := f.tls.load()
	if err != nil {
		return err
	}
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.AddSync(e.stderr), zapcore.ErrorLevel))
	s, err := remote.NewSubscriber(remote.SubscriberConfig{Listen: f.listen, Advertise: f.advertise, TLS: t, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(cctx)
	}()
	ps, err := remote.ListenProc(ctx, s, nodes, remote.WithProcEvents(mask))
	if err != nil {
		return err
	}
	defer ps.Close()
	width := len("Host")
	hosts := make([]string, len(nodes))
	for i, n := range nodes {
		width = max(width, len(n.Host))
		hosts[i] = n.Host + "=" + n.Addr
	}
	fmt.Fprintf(e.stderr, "listening to process events of %d hosts: %s events=%s\n", len(nodes), strings.Join(hosts, " "), events)
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	if !jsonOut {
		fmt.Fprintf(out, "%-*s %-15s %-8s %7s %-22s %10s %s\n", width, "Host", "Time", "Event", "PID", "Info", "Duration", "Process")
	}
	var line []byte
	for {
		select {
		case <-ctx.Done():
			for _, st := range ps.Stats() {
				fmt.Fprintf(e.stderr, "host=%s events=%d lost=%d subscriptions=%d outages=%d\n",
					st.Host, st.Events, st.Lost, st.Remote.Subscriptions, st.Remote.Outages)
			}
			return nil
		case ev, ok := <-ps.Events():
			if !ok {
				return nil
			}
			if ev.Event == nil {
				fmt.Fprintf(e.stderr, "host %s: %s\n", ev.Host, ev.Status)
				continue
			}
			if _, isAck := ev.Event.(*proc.Ack); isAck && !jsonOut {
				continue
			}
			if pid.set && !proc.Involves(ev.Event, pid.v) {
				continue
			}
			if jsonOut {
				line = appendHostJSON(line[:0], ev)
			} else {
				line = appendHostText(line[:0], width, ev)
			}
			out.Write(line)
			if len(ps.Events()) == 0 {
				if err := out.Flush(); err != nil {
					return err
				}
			}
		}
	}
}

// appendHostJSON is proc.AppendJSON with a "host" key first.
func appendHostJSON(b []byte, ev remote.ProcEvent) []byte {
	b = append(b, `{"host":`...)
	b = strconv.AppendQuote(b, ev.Host)
	b = append(b, ',')
	start := len(b)
	b = proc.AppendJSON(b, ev.Event)
	b = append(b[:start], b[start+1:]...) // its opening brace
	return append(b, '\n')
}

// appendHostText is cnctl proc's line with a host column, the time taken
// from the node's clock.
func appendHostText(b []byte, width int, ev remote.ProcEvent) []byte {
	name := ev.Event.Head().What.String()
	if _, ok := ev.Event.(*proc.Lost); ok {
		name = "LOST"
	}
	process := ""
	if p := proc.ProcessOf(ev.Event); p != nil {
		process = p.Cmdline
		if process == "" && p.Comm != "" {
			process = "[" + p.Comm + "]"
		}
	}
	return fmt.Appendf(b, "%-*s %-15s %-8s %7d %-22s %10s %s\n", width, ev.Host, ev.Wall.Format("15:04:05.000000"),
		name, proc.PID(ev.Event), proc.Info(ev.Event), proc.Duration(proc.ProcessOf(ev.Event)), strings.TrimSpace(process))
}

// reachable refuses a loopback -remote-listen when a node is elsewhere:
// the nodes dial their subscribers back.
func reachable(listen, advertise string, nodes []remote.ProcNode) error {
	if advertise != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-remote-listen: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil
	}
	for _, n := range nodes {
		h, _, _ := net.SplitHostPort(n.Addr)
		if ip := net.ParseIP(h); (ip == nil && h != "localhost") || ip != nil && !ip.IsLoopback() {
			return fmt.Errorf("node %s is not on this host: give -remote-listen an address of this host it can reach (it connects back)", n.Addr)
		}
	}
	return nil
}
