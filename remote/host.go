package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	paremote "github.com/asynkron/protoactor-go/remote"
	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/internal/protolog"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// DefaultPort is the port a node listens on unless configured.
const DefaultPort = 7390

// DefaultListen is where a node listens unless configured: loopback only.
const DefaultListen = "127.0.0.1:7390" // DefaultPort on loopback

// DefaultSubscriberListen is where a subscriber listens unless configured:
// loopback, on a port the kernel picks. protoactor remote connections carry
// messages one way, so a node dials its subscribers back: subscribers of
// nodes on other hosts must listen (and advertise) an address those nodes
// can reach.
const DefaultSubscriberListen = "127.0.0.1:0"

// TLS is the mutual TLS configuration of a node or subscriber. Both dial
// and accept connections (protoactor's remote connections are one-way), so
// both halves are needed on both sides.
type TLS struct {
	// Server is used to accept connections; for mutual TLS it has
	// ClientAuth: tls.RequireAndVerifyClientCert and ClientCAs.
	Server *tls.Config
	// Client is used to dial; it presents Certificates and verifies the
	// peer with RootCAs. The peer is verified by the host of the address
	// dialed, so certificates must name it (an IP SAN for an IP address)
	// unless ServerName is set.
	Client *tls.Config
}

// MutualTLS builds a TLS configuration that presents cert on both sides,
// requires and verifies the peer's certificate against the CAs in ca, and
// uses TLS 1.3.
func MutualTLS(cert tls.Certificate, ca *x509.CertPool) *TLS {
	return &TLS{
		Server: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca,
			MinVersion:   tls.VersionTLS13,
		},
		Client: &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      ca,
			MinVersion:   tls.VersionTLS13,
		},
	}
}

// LoadMutualTLS is MutualTLS with a PEM certificate, key and CA bundle
// read from files.
func LoadMutualTLS(certFile, keyFile, caFile string) (*TLS, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("remote: TLS certificate: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("remote: TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("remote: TLS CA %s: no PEM certificate in it", caFile)
	}
	return MutualTLS(cert, pool), nil
}

// Tuning of the gRPC connections under protoactor.
const (
	// maxRecvMsg bounds one gRPC message: a protoactor batch of envelopes.
	maxRecvMsg = 64 << 20
	// writerBatch is how many envelopes protoactor puts in one gRPC
	// message; with deliveries bounded by maxBatchBytes it stays under
	// maxRecvMsg.
	writerBatch = 64
	// keepaliveTime and keepaliveTimeout make gRPC notice a peer that
	// vanished without closing its connection.
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
	// deadLetterWindow keeps protoactor's dead-letter throttle goroutines
	// short-lived (see the Connector).
	deadLetterWindow = 10 * time.Millisecond
)

// HostConfig configures a Host.
type HostConfig struct {
	// Listen is the address to accept connections on (host:port; port 0
	// lets the kernel pick). Listening on all interfaces needs Advertise.
	Listen string
	// Advertise is the host:port peers dial, when it is not Listen.
	Advertise string
	// TLS, when set, makes the host accept and dial only TLS connections.
	TLS *TLS
	// Logger receives protoactor's logs (default: none).
	Logger *zap.Logger
}

// Host is one actor system with protoactor's remote listening: the network
// endpoint a Node and a Subscriber run on. NewNode and NewSubscriber start
// one of their own unless given one; a process that is both a node and a
// subscriber can share one (protoactor-go sets gRPC's global logger each
// time a remote starts, which the race detector reports once a process has
// started two). A Host runs at most one Node and one Subscriber at a time.
type Host struct {
	system *actor.ActorSystem
	rem    *paremote.Remote
	log    *zap.Logger
	tls    *TLS

	// events brackets protoactor's own handling of endpoint events (see
	// NewHost and Close).
	events sync.RWMutex
	// handlers counts the gRPC stream handlers running (protoactor's
	// endpoint readers), so that Close can wait for them.
	handlers sync.WaitGroup

	mu           sync.Mutex
	claimed      [hostRoles]bool
	closeStarted bool
}

// NewHost starts an actor system with protoactor's remote listening on
// cfg.Listen.
func NewHost(cfg HostConfig) (*Host, error) {
	listen, advertise, t := cfg.Listen, cfg.Advertise, cfg.TLS
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("remote: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("remote: listen address %q: bad port", listen)
	}
	ip := net.ParseIP(host)
	if advertise == "" && (host == "" || ip != nil && ip.IsUnspecified()) {
		return nil, fmt.Errorf("remote: listening on all interfaces (%q) needs an advertised address that peers can dial", listen)
	}
	if advertise != "" {
		if _, p, err := net.SplitHostPort(advertise); err != nil || p == "0" {
			return nil, fmt.Errorf("remote: advertised address %q: want host:port with a fixed port", advertise)
		}
		if port == 0 {
			return nil, fmt.Errorf("remote: an advertised address needs a fixed listen port, not %q", listen)
		}
	}
	if t != nil && (t.Server == nil || t.Client == nil) {
		return nil, errors.New("remote: TLS needs both a server and a client configuration")
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return protolog.Logger(log)
		}),
		actor.WithDeadLetterThrottleInterval(deadLetterWindow))
	serverCreds, dialCreds := insecure.NewCredentials(), insecure.NewCredentials()
	if t != nil {
		serverCreds, dialCreds = credentials.NewTLS(t.Server), credentials.NewTLS(t.Client)
	}
	rcfg := paremote.Configure(host, port,
		paremote.WithServerOptions(
			grpc.Creds(serverCreds),
			grpc.MaxRecvMsgSize(maxRecvMsg),
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2, PermitWithoutStream: true}),
			grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		),
		paremote.WithDialOptions(
			grpc.WithTransportCredentials(dialCreds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsg)),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		),
		paremote.WithEndpointWriterBatchSize(writerBatch),
		paremote.WithAdvertisedHost(advertise),
	)
	// One connection attempt per endpoint: protoactor sleeps 2s after every
	// failed one. Subscribers probe a node before sending to it, and
	// retry on their own schedule.
	rcfg.MaxRetryCount = 1
	h := &Host{system: system, log: log, tls: t}
	rcfg.ServerOptions = append(rcfg.ServerOptions, grpc.StreamInterceptor(
		func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			h.handlers.Add(1)
			defer h.handlers.Done()
			return handler(srv, ss)
		}))
	// protoactor's endpoint manager handles endpoint events in the
	// goroutine that publishes them (a connection's reader) and its
	// Shutdown then rewrites the state they read, with nothing ordering the
	// two. Handlers subscribed just before and just after its own take a
	// read lock around it, so that Close can wait for the handling in
	// progress.
	isEndpointEvent := func(ev any) bool {
		switch ev.(type) {
		case *paremote.EndpointTerminatedEvent, *paremote.EndpointConnectedEvent:
			return true
		}
		return false
	}
	system.EventStream.SubscribeWithPredicate(func(any) { h.events.RLock() }, isEndpointEvent)
	h.rem = paremote.NewRemote(system, rcfg)
	if err := startRemote(h.rem); err != nil {
		system.Shutdown()
		return nil, err
	}
	system.EventStream.SubscribeWithPredicate(func(any) { h.events.RUnlock() }, isEndpointEvent)
	return h, nil
}

// startRemote starts protoactor's remote, which panics when it cannot
// listen.
func startRemote(r *paremote.Remote) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("remote: %v", p)
		}
	}()
	r.Start()
	return nil
}

// Addr is the address peers reach this host at.
func (h *Host) Addr() string { return h.system.Address() }

// claim reserves the host for a node or a subscriber.
func (h *Host) claim(role hostRole) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closeStarted:
		return fmt.Errorf("remote: host closed: %w", cnactor.ErrClosed)
	case h.claimed[role]:
		return fmt.Errorf("remote: the host already runs a %s", role)
	}
	h.claimed[role] = true
	return nil
}

func (h *Host) release(role hostRole) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claimed[role] = false
}

// Close stops protoactor's remote (telling connected peers that this host
// leaves) and the actor system, within ctx. Close the Node and Subscriber
// running on it first.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closeStarted {
		h.mu.Unlock()
		return nil
	}
	h.closeStarted = true
	h.mu.Unlock()
	// protoactor's graceful Shutdown writes state that the connections'
	// readers and the endpoints read, with nothing ordering them (the race
	// detector reports it), and a reader that gets a message once the
	// endpoints are stopped panics. So, in order: stop the gRPC server
	// (the peers' connections close: they see this host's address
	// terminated) and wait for its stream handlers, the readers; stop the
	// endpoints (their supervisor) and the activator; wait for the
	// endpoint events being handled.
	h.rem.Shutdown(false)
	waited := make(chan struct{})
	go func() {
		h.handlers.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		h.log.Warn("remote: connection readers still running; shutting down anyway")
	}
	root := h.system.Root
	root.StopFuture(h.system.NewLocalPID("EndpointSupervisor")).Wait()
	root.StopFuture(h.system.NewLocalPID("activator")).Wait()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		if h.events.TryLock() {
			h.events.Unlock()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			h.log.Warn("remote: an endpoint event is still being handled; shutting down anyway")
			break
		}
	}
	h.system.Shutdown()
	return nil
}

// probeTimeout bounds one probe of a node.
const probeTimeout = 2 * time.Second

// probe checks that the node at addr accepts this side's connections before
// protoactor is asked to connect (it sleeps 2s after a failed attempt, and
// its errors are only logged): a TCP connection, then, with TLS, a
// handshake and the node's first record, which under TLS 1.3 is where a
// refused client certificate shows (the server checks it after the client
// considers the handshake done). Without TLS, a gRPC server's first bytes
// are an HTTP/2 SETTINGS frame; a TLS server says nothing until it gets a
// ClientHello.
func probe(ctx context.Context, addr string, t *TLS) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if t == nil {
		var hdr [9]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%w: %s said nothing to a plaintext connection (does it require TLS?)", ErrUnauthenticated, addr)
			}
			return fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
		}
		if hdr[3] != 0x4 { // HTTP/2 frame type SETTINGS
			return fmt.Errorf("%w: %s does not speak gRPC", ErrUnreachable, addr)
		}
		return nil
	}
	cfg := t.Client.Clone()
	cfg.NextProtos = []string{"h2"}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return tlsError(addr, err)
	}
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		return tlsError(addr, err)
	}
	return nil
}

// tlsError classifies a TLS failure: an alert from the node is the node
// refusing us; anything else is our side failing.
func tlsError(addr string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return fmt.Errorf("%w: %s: %w", ErrUnauthenticated, addr, err)
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s closed the connection during TLS: %w", ErrUnauthenticated, addr, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrTLS, addr, err)
}
