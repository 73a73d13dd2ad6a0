package p2p

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/sec"
	basichost "github.com/libp2p/go-libp2p/p2p/host/basic"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	quicgo "github.com/quic-go/quic-go"
)

// hostConfig is what newHost assembles a host from.
type hostConfig struct {
	key         crypto.PrivKey
	peerstore   peerstore.Peerstore
	rcmgr       network.ResourceManager
	connmgr     connmgr.ConnManager
	gater       connmgr.ConnectionGater
	listen      []ma.Multiaddr
	dialTimeout time.Duration
}

// newHost assembles medvault's libp2p host from its parts: a swarm with the
// TCP and QUIC transports, TLS and Noise, yamux, identify, and nothing else
// (no relay, hole punching, AutoNAT, NAT port mapping, ping or metrics).
//
// It does the wiring that libp2p.New does with go.uber.org/fx, by hand and
// for these parts only. The root go-libp2p package links every transport
// libp2p has (WebRTC, WebSocket, WebTransport) and fx's reflection, and their
// package initialisers ran in every medvault command, --help included: 2.1 of
// its 12.6 ms. TestStartupImports (cmd/medvault) fails if the binary links
// them again. libp2p.New also started an AutoNAT client, which asked peers
// offering AutoNAT to dial the node's public addresses back; medvault has no
// use for the answer.
//
// The host owns cfg's peerstore, resource manager and connection manager
// from the call on: it closes them with itself, and newHost closes them when
// it fails.
func newHost(cfg hostConfig) (host.Host, error) {
	var closers []io.Closer // what to close if newHost fails, in order
	fail := func(err error) (host.Host, error) {
		for _, c := range append(closers, cfg.connmgr, cfg.rcmgr, cfg.peerstore) {
			_ = c.Close()
		}
		return nil, err
	}
	if pnet.ForcePrivateNetwork {
		// LIBP2P_FORCE_PNET=1 asks every libp2p program to join only a
		// private network, which medvault does not support: refuse to start
		// (as libp2p.New does) rather than leave QUIC, which the upgrader's
		// check does not cover, talking to the open network.
		return fail(pnet.ErrNotInPrivateNetwork)
	}
	id, err := peer.IDFromPrivateKey(cfg.key)
	if err != nil {
		return fail(err)
	}
	// Identify signs the host's peer record with the key it finds here.
	if err := cfg.peerstore.AddPrivKey(id, cfg.key); err != nil {
		return fail(err)
	}
	if err := cfg.peerstore.AddPubKey(id, cfg.key.GetPublic()); err != nil {
		return fail(err)
	}

	muxers := []upgrader.StreamMuxer{{ID: yamux.ID, Muxer: yamux.DefaultTransport}}
	// TLS first: on TCP it moved 0.96 GB/s against Noise's 0.74 here.
	tlsT, err := libp2ptls.New(libp2ptls.ID, cfg.key, muxers)
	if err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	noiseT, err := noise.New(noise.ID, cfg.key, muxers)
	if err != nil {
		return fail(fmt.Errorf("noise: %w", err))
	}
	upg, err := upgrader.New([]sec.SecureTransport{tlsT, noiseT}, muxers, nil, cfg.rcmgr, cfg.gater)
	if err != nil {
		return fail(fmt.Errorf("upgrader: %w", err))
	}
	qcm, err := newQUICConnManager(cfg.key, cfg.rcmgr)
	if err != nil {
		return fail(fmt.Errorf("quic: %w", err))
	}
	closers = append(closers, qcm)

	bus := eventbus.NewBus()
	sw, err := swarm.NewSwarm(id, cfg.peerstore, bus,
		swarm.WithConnectionGater(cfg.gater),
		swarm.WithResourceManager(cfg.rcmgr),
		swarm.WithDialTimeout(cfg.dialTimeout))
	if err != nil {
		return fail(fmt.Errorf("swarm: %w", err))
	}
	// The swarm closes before the QUIC connection manager its listeners use.
	closers = append([]io.Closer{sw}, closers...)
	// Without SO_REUSEPORT: with it, a second node (another vault's serve)
	// could listen on a port this one holds, and the kernel would split this
	// node's incoming connections between the two. medvault does no hole
	// punching, which is what dialling from the listening port is for.
	tcpT, err := tcp.NewTCPTransport(upg, cfg.rcmgr, nil, tcp.DisableReuseport())
	if err != nil {
		return fail(fmt.Errorf("tcp: %w", err))
	}
	quicT, err := quic.NewTransport(cfg.key, qcm, nil, cfg.gater, cfg.rcmgr)
	if err != nil {
		return fail(fmt.Errorf("quic: %w", err))
	}
	if err := sw.AddTransport(tcpT); err != nil {
		return fail(err)
	}
	if err := sw.AddTransport(quicT); err != nil {
		return fail(err)
	}

	h, err := basichost.NewHost(sw, &basichost.HostOpts{
		EventBus:    bus,
		ConnManager: cfg.connmgr,
		UserAgent:   userAgent,
	})
	if err != nil {
		return fail(fmt.Errorf("host: %w", err))
	}
	hq := &quicHost{BasicHost: h, quic: qcm}
	if len(cfg.listen) > 0 {
		// Like libp2p.New: this succeeds if any one address could be
		// listened on. medvault's addresses come from one flag, and a busy
		// port fails them all.
		if err := sw.Listen(cfg.listen...); err != nil {
			_ = hq.Close()
			return nil, err
		}
	}
	h.Start()
	return hq, nil
}

// quicHost is the basic host with the QUIC connection manager, which the
// swarm does not own: it is closed after the swarm (and so after every QUIC
// listener and connection).
type quicHost struct {
	*basichost.BasicHost
	quic      *quicreuse.ConnManager
	closeOnce sync.Once
	closeErr  error
}

// Close closes the host, then the QUIC connection manager. Calls after the
// first return the first's result (the manager's own Close panics when
// called twice).
func (h *quicHost) Close() error {
	h.closeOnce.Do(func() {
		err := h.BasicHost.Close()
		h.closeErr = errors.Join(err, h.quic.Close())
	})
	return h.closeErr
}

// newQUICConnManager makes the connection manager QUIC listeners and dials
// share, with the keys and the admission checks libp2p.New gives it: inbound
// QUIC connections are counted by the resource manager before their
// handshake, as TCP ones are by the upgrader.
func newQUICConnManager(key crypto.PrivKey, rm network.ResourceManager) (*quicreuse.ConnManager, error) {
	raw, err := key.Raw()
	if err != nil {
		return nil, err
	}
	// The same derivations as libp2p's (go-libp2p config/quic.go), so a
	// restarted node's stateless resets and tokens stay valid.
	var reset quicgo.StatelessResetKey
	var token quicgo.TokenGeneratorKey
	r, err := hkdf.Key(sha256.New, raw, nil, "libp2p quic stateless reset key", len(reset))
	if err != nil {
		return nil, err
	}
	t, err := hkdf.Key(sha256.New, raw, nil, "libp2p quic token generator key", len(token))
	if err != nil {
		return nil, err
	}
	copy(reset[:], r)
	copy(token[:], t)
	return quicreuse.NewConnManager(reset, token,
		quicreuse.ConnContext(func(ctx context.Context, ci *quicgo.ClientInfo) (context.Context, error) {
			// Without a multiaddr the resource manager still decides.
			addr, err := quicreuse.ToQuicMultiaddr(ci.RemoteAddr, quicgo.Version1)
			if err != nil {
				addr = nil
			}
			scope, err := rm.OpenConnection(network.DirInbound, false, addr)
			if err != nil {
				return ctx, err
			}
			ctx = network.WithConnManagementScope(ctx, scope)
			context.AfterFunc(ctx, scope.Done)
			return ctx, nil
		}),
		quicreuse.VerifySourceAddress(func(addr net.Addr) bool { return rm.VerifySourceAddress(addr) }),
	)
}
