package p2p

import (
	"context"
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/gologshim"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"
)

// Protocol IDs of medvault. The message bodies are specified in
// share/TOKEN.md; the framing in PROTOCOL.md. A change that old peers cannot
// read gets a new ID; both may be served side by side.
const (
	// ProtocolShare is a provider requesting records from a patient's node
	// under a grant.
	ProtocolShare protocol.ID = "/medvault/share/1.4.0"
	// ProtocolPush is a patient's node delivering a grant token or a
	// revocation notice to a provider's node.
	ProtocolPush protocol.ID = "/medvault/push/1.0.0"
)

// userAgent is what identify tells connected peers about this software. It
// names the application and nothing more (no version, no OS).
const userAgent = "medvault"

// Config configures a Node.
type Config struct {
	// Key is the user's Ed25519 identity; the node's peer ID derives from it.
	// The node keeps its own copy.
	Key ed25519.PrivateKey
	// Listen lists the multiaddrs to listen on, each either
	// /ip4|ip6/ADDR/tcp/PORT or /ip4|ip6/ADDR/udp/PORT/quic-v1 (port 0 picks a
	// free port). Empty means the node only dials out, which is all a fetching
	// provider needs. 0.0.0.0 or :: exposes the node on every interface.
	Listen []string
	// Limits bounds resource use; zero fields take defaults.
	Limits Limits
	// Timeouts bounds dials and streams; zero fields take defaults.
	Timeouts Timeouts
	// Logger receives handler panics and similar events; nil discards them.
	// Nothing logged contains frame payloads.
	Logger *slog.Logger
	// DHT runs a Kademlia DHT for finding peers by ID (opt-in; see
	// PROTOCOL.md, "Finding a peer"): a node that listens answers other
	// nodes' lookups, one that does not only asks. Bootstrap implies it.
	DHT bool
	// Bootstrap lists nodes to join the DHT through, each a multiaddr
	// ending in /p2p/<peer ID>.
	Bootstrap []string
	// Known, if set, reports whether a peer is one of the node's own (for
	// medvault, a pinned contact). Inbound streams from any other peer
	// share Limits.MaxStrangerStreams and Limits.MaxStreamsPerStranger
	// until their protocol is negotiated. It is called as each inbound
	// stream opens and must be fast. Nil: every peer gets the per-peer
	// limits alone.
	Known func(peer.ID) bool
}

// Handler serves one inbound stream. ctx ends when the stream's lifetime
// (Timeouts.Stream) runs out or the node closes; the stream is then reset.
// The handler need not close the stream: it is closed when the handler
// returns, or reset if the handler panics.
type Handler func(ctx context.Context, s *Stream)

// Node is a libp2p host configured for medvault. See the package
// documentation for what it runs and what it deliberately does not.
type Node struct {
	h        host.Host
	timeouts Timeouts
	log      *slog.Logger

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	handlers sync.WaitGroup

	tagSeq atomic.Uint64

	dht       *dht.IpfsDHT // nil unless Config.DHT or Config.Bootstrap
	bootstrap []peer.AddrInfo
	gate      *strangerGate
	kad       *kadStreams // the DHT streams served (see serveKad)
}

// NewNode starts a node listening on cfg.Listen. ctx bounds only the start-up;
// the node runs until Close.
func NewNode(ctx context.Context, cfg Config) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("new node: %w", err)
	}
	sk, err := identityKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("new node: %w", err)
	}
	var listen []ma.Multiaddr
	seen := map[string]bool{}
	for _, s := range cfg.Listen {
		a, err := checkListenAddr(s)
		if err != nil {
			return nil, fmt.Errorf("new node: %w", err)
		}
		// The same address twice is one listener: go-libp2p's QUIC
		// transport panics on a second (its UDP socket is shared).
		if seen[a.String()] {
			continue
		}
		seen[a.String()] = true
		listen = append(listen, a)
	}
	boot, err := bootstrapPeers(cfg.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("new node: %w", err)
	}
	limits := cfg.Limits.withDefaults()
	timeouts := cfg.Timeouts.withDefaults()
	base, err := newResourceManager(limits)
	if err != nil {
		return nil, fmt.Errorf("new node: resource manager: %w", err)
	}
	rm := newStrangerGate(base, limits)
	if cfg.Known != nil {
		rm.known.Store(&cfg.Known)
	}
	cm, err := connmgr.NewConnManager(limits.MaxInboundConns*3/4, limits.MaxInboundConns)
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("new node: connection manager: %w", err)
	}

	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		_ = cm.Close()
		_ = rm.Close()
		return nil, fmt.Errorf("new node: peerstore: %w", err)
	}

	h, err := newHost(hostConfig{
		key:         sk,
		peerstore:   ps,
		rcmgr:       rm,
		connmgr:     cm,
		gater:       gater{},
		listen:      listen,
		dialTimeout: timeouts.Dial,
	})
	if err != nil { // newHost has closed cm, rm and ps
		return nil, fmt.Errorf("new node: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nctx, cancel := context.WithCancel(context.Background())
	n := &Node{h: h, timeouts: timeouts, log: log, ctx: nctx, cancel: cancel, bootstrap: boot, gate: rm,
		kad: newKadStreams(limits.MaxInboundStreams)}
	if cfg.DHT || len(boot) > 0 {
		if err := n.startDHT(ctx, len(listen) > 0); err != nil {
			n.Close()
			return nil, fmt.Errorf("new node: %w", err)
		}
	}
	return n, nil
}

// SetLibp2pLogHandler routes go-libp2p's own logs, which otherwise go to
// stderr at level error and above (GOLOG_LOG_LEVEL changes the level). It is
// process-wide and takes effect only for libp2p loggers that have not logged
// yet, so call it once, before the first NewNode. The CLI should use it to
// keep stderr for its own messages (for example a discarding handler unless
// --verbose).
func SetLibp2pLogHandler(h slog.Handler) { gologshim.SetDefaultHandler(h) }

// identityKey converts a stdlib Ed25519 private key for libp2p, after checking
// that its public half matches its seed (a corrupted key file must not yield
// an identity that signs as one key and connects as another).
func identityKey(k ed25519.PrivateKey) (crypto.PrivKey, error) {
	if len(k) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("identity key: length %d: %w", len(k), ErrBadKey)
	}
	want := ed25519.NewKeyFromSeed(k.Seed())
	if subtle.ConstantTimeCompare(want, k) != 1 {
		return nil, fmt.Errorf("identity key: public half does not match seed: %w", ErrBadKey)
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(want) // want is our own copy
	if err != nil {
		return nil, fmt.Errorf("identity key: %w: %w", ErrBadKey, err)
	}
	return sk, nil
}

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.h.ID() }

// Addrs returns the node's full dialable multiaddrs, each ending in
// /p2p/<peer ID>, sorted. A wildcard listen address (0.0.0.0, ::) is expanded
// to the interface addresses.
func (n *Node) Addrs() []string {
	addrs := n.h.Addrs()
	if len(addrs) == 0 {
		return nil
	}
	full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.h.ID(), Addrs: addrs})
	if err != nil { // only for an invalid ID, which a running node cannot have
		return nil
	}
	out := make([]string, 0, len(full))
	for _, a := range full {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return out
}

// WithPorts returns listen with each port 0 (any) replaced by a port to
// try first: TCP ones by tcpPort, QUIC ones by quicPort, where those are
// not 0. serve passes the ports of its last run, so a restarted node keeps
// the address that grants and cards already carry. A malformed address is
// returned as it is (NewNode reports it).
func WithPorts(listen []string, tcpPort, quicPort int) []string {
	out := make([]string, len(listen))
	for i, s := range listen {
		out[i] = s
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		var b strings.Builder
		for j, c := range m {
			v := c.Value()
			switch code := c.Protocol().Code; {
			case code == ma.P_TCP && v == "0" && tcpPort > 0:
				v = strconv.Itoa(tcpPort)
			case code == ma.P_UDP && v == "0" && quicPort > 0 && j+1 < len(m) && m[j+1].Protocol().Code == ma.P_QUIC_V1:
				v = strconv.Itoa(quicPort)
			}
			b.WriteString("/" + c.Protocol().Name)
			if v != "" {
				b.WriteString("/" + v)
			}
		}
		out[i] = b.String()
	}
	return out
}

// Ports returns the TCP and QUIC (UDP) ports the node listens on, 0 for a
// transport it does not listen on.
func (n *Node) Ports() (tcpPort, quicPort int) {
	for _, a := range n.h.Network().ListenAddresses() {
		if v, err := a.ValueForProtocol(ma.P_TCP); err == nil && tcpPort == 0 {
			tcpPort, _ = strconv.Atoi(v)
		}
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil && quicPort == 0 {
			if v, err := a.ValueForProtocol(ma.P_UDP); err == nil {
				quicPort, _ = strconv.Atoi(v)
			}
		}
	}
	return tcpPort, quicPort
}

// Handle serves proto with h, replacing any earlier handler for it. Each
// stream runs h in its own goroutine with deadlines set, its connection
// protected from the connection manager's trimming, panics recovered (the
// stream is reset and the node keeps running), and the resource manager's
// per-protocol limits applied before h is called.
func (n *Node) Handle(proto protocol.ID, h Handler) {
	n.h.SetStreamHandler(proto, func(ns network.Stream) { n.serve(proto, ns, h) })
}

// RemoveHandler stops serving proto; streams already running continue.
func (n *Node) RemoveHandler(proto protocol.ID) { n.h.RemoveStreamHandler(proto) }

func (n *Node) enter() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.handlers.Add(1)
	return true
}

func (n *Node) serve(proto protocol.ID, ns network.Stream, h Handler) {
	if !n.enter() {
		_ = ns.ResetWithError(network.StreamShutdown)
		return
	}
	defer n.handlers.Done()

	s, err := newStream(ns, n.timeouts)
	if err != nil {
		n.log.Warn("p2p: refused stream", "protocol", string(proto), "peer", ns.Conn().RemotePeer().String(), "err", err)
		_ = ns.ResetWithError(network.StreamGated)
		return
	}
	s.onClose = n.protect(s.remote)
	ctx, cancel := context.WithTimeout(n.ctx, n.timeouts.Stream)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	defer func() {
		if r := recover(); r != nil {
			// The panic value may hold record content: log its type only.
			n.log.Error("p2p: handler panic", "protocol", string(proto), "peer", s.remote.String(),
				"panic_type", fmt.Sprintf("%T", r))
			n.log.Debug("p2p: handler panic stack", "protocol", string(proto), "stack", string(debug.Stack()))
			_ = s.Reset()
			return
		}
		_ = s.Close()
	}()
	h(ctx, s)
}

// protect keeps the connection to p from being trimmed by the connection
// manager while a stream is open on it, and returns the function that lifts
// the protection.
func (n *Node) protect(p peer.ID) func() {
	tag := "medvault-stream-" + strconv.FormatUint(n.tagSeq.Add(1), 10)
	cm := n.h.ConnManager()
	cm.Protect(p, tag)
	return func() { cm.Unprotect(p, tag) }
}

// Dial connects to the peer named in addrs, which must all end in the same
// /p2p/<peer ID>, and opens a stream for proto. ctx bounds the dial together
// with Timeouts.Dial; it does not bound the stream's later life (reset the
// stream to abandon it). An existing connection to the peer is reused.
//
// Errors wrap ErrUnreachable when no connection could be made (ErrPeerMismatch
// too when an address answered with another key), ErrProtocolNotSupported when
// the peer does not serve proto, ErrBadAddress for unusable addrs,
// context.Canceled when ctx was cancelled, ErrClosed after Close.
func (n *Node) Dial(ctx context.Context, addrs []string, proto protocol.ID) (*Stream, error) {
	var id peer.ID
	var mas []ma.Multiaddr
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("dial: %w: %w", ErrBadAddress, err)
		}
		tpt, pid := peer.SplitAddr(a)
		if pid == "" {
			return nil, fmt.Errorf("dial: address %s lacks /p2p/<peer id>: %w", a, ErrBadAddress)
		}
		if id != "" && pid != id {
			return nil, fmt.Errorf("dial: addresses name peers %s and %s: %w", id, pid, ErrBadAddress)
		}
		id = pid
		if tpt != nil {
			mas = append(mas, tpt)
		}
	}
	if id == "" {
		return nil, fmt.Errorf("dial: no address: %w", ErrBadAddress)
	}
	return n.dial(ctx, id, mas, proto)
}

// DialPeer is Dial for a peer ID known apart from its addresses (a grant's
// issuer, say). addrs may omit /p2p/; where present it must name id. With no
// addrs, the node uses an existing connection or addresses it already knows.
func (n *Node) DialPeer(ctx context.Context, id peer.ID, addrs []string, proto protocol.ID) (*Stream, error) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w: %w", id, ErrBadAddress, err)
		}
		tpt, pid := peer.SplitAddr(a)
		if pid != "" && pid != id {
			return nil, fmt.Errorf("dial %s: address names peer %s: %w", id, pid, ErrBadAddress)
		}
		if tpt != nil {
			mas = append(mas, tpt)
		}
	}
	return n.dial(ctx, id, mas, proto)
}

func (n *Node) dial(ctx context.Context, id peer.ID, addrs []ma.Multiaddr, proto protocol.ID) (*Stream, error) {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("dial %s: %w", id, ErrClosed)
	}
	if !isMedvaultID(id) {
		return nil, fmt.Errorf("dial %s: %w", id, ErrBadPeerID)
	}
	if id == n.h.ID() {
		return nil, fmt.Errorf("dial %s: that is this node: %w", id, ErrBadAddress)
	}
	dctx, cancel := context.WithTimeout(ctx, n.timeouts.Dial)
	defer cancel()
	// An explicit dial ignores the swarm's backoff from earlier failures: the
	// user asked now, and the peer may be up now.
	dctx = network.WithForceDirectDial(dctx, "medvault explicit dial")
	if err := n.connect(dctx, id, addrs); err != nil {
		return nil, n.dialError(ctx, id, err)
	}
	ns, err := n.h.NewStream(dctx, id, proto)
	if err != nil {
		if errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) {
			return nil, fmt.Errorf("dial %s: %s: %w", id, proto, ErrProtocolNotSupported)
		}
		return nil, n.dialError(ctx, id, err)
	}
	s, err := newStream(ns, n.timeouts)
	if err != nil {
		_ = ns.Reset()
		return nil, fmt.Errorf("dial %s: %w", id, err)
	}
	s.onClose = n.protect(id)
	return s, nil
}

func (n *Node) dialError(ctx context.Context, id peer.ID, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("dial %s: %w", id, context.Canceled)
	}
	var mismatch sec.ErrPeerIDMismatch
	if errors.As(err, &mismatch) {
		return fmt.Errorf("dial %s: address answered as %s: %w: %w", id, mismatch.Actual, ErrPeerMismatch, ErrUnreachable)
	}
	return fmt.Errorf("dial %s: %w: %w", id, ErrUnreachable, err)
}

// Close stops listening, resets every stream and connection, cancels the
// contexts of running handlers and waits for them to return. Handlers that
// only use their stream return promptly, since every stream operation fails
// once the stream is reset.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	if n.dht != nil {
		_ = n.dht.Close()
	}
	err := n.h.Close()
	n.handlers.Wait()
	if err != nil {
		return fmt.Errorf("close node: %w", err)
	}
	return nil
}
