package p2p

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
)

// Limits bounds what a node spends on its peers. The zero value of each field
// selects the default documented on it; PROTOCOL.md explains the choices.
// The per-IP limits do not apply to loopback addresses, which are unlimited.
type Limits struct {
	// MaxMemory caps the memory the libp2p resource manager hands out in
	// total: multiplexer windows, frame buffers of every stream, handshakes.
	// Default 256 MiB.
	MaxMemory int64
	// MaxInboundConns caps concurrent inbound connections, including those
	// still in their handshake. Default 256. The connection manager starts
	// trimming idle connections above this figure.
	MaxInboundConns int
	// MaxOutboundConns caps concurrent outbound connections. Default 256.
	MaxOutboundConns int
	// MaxInboundStreams caps concurrent inbound streams per protocol, hence
	// concurrent handler goroutines per protocol. Default 128.
	MaxInboundStreams int
	// MaxStreamsPerPeer caps concurrent inbound streams of one protocol from
	// one peer. Default 8.
	MaxStreamsPerPeer int
	// MaxConnsPerIP caps concurrent connections with one IPv4 address or one
	// IPv6 /56 (four times as many per IPv6 /48). A clinic behind one NAT
	// shares one address, so this is well above libp2p's default of 8.
	// Default 64.
	MaxConnsPerIP int
	// ConnRatePerIP is the sustained rate of new connections allowed per IPv4
	// address or IPv6 /56, per second. Default 1 (libp2p's default is 0.2).
	ConnRatePerIP float64
	// ConnBurstPerIP is how many new connections one address may open at
	// once before ConnRatePerIP applies. Default 64, so 50 providers behind
	// one NAT can all connect at the same moment.
	ConnBurstPerIP int
	// MaxStrangerStreams caps the inbound streams open at once from peers
	// the node does not know (Config.Known), all together. Default 64.
	MaxStrangerStreams int
	// MaxStreamsPerStranger caps the inbound streams open at once from one
	// peer the node does not know. Default 4.
	MaxStreamsPerStranger int
}

func (l Limits) withDefaults() Limits {
	if l.MaxMemory <= 0 {
		l.MaxMemory = 256 << 20
	}
	if l.MaxInboundConns <= 0 {
		l.MaxInboundConns = 256
	}
	if l.MaxOutboundConns <= 0 {
		l.MaxOutboundConns = 256
	}
	if l.MaxInboundStreams <= 0 {
		l.MaxInboundStreams = 128
	}
	if l.MaxStreamsPerPeer <= 0 {
		l.MaxStreamsPerPeer = 8
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = 64
	}
	if l.ConnRatePerIP <= 0 {
		l.ConnRatePerIP = 1
	}
	if l.ConnBurstPerIP <= 0 {
		l.ConnBurstPerIP = 64
	}
	if l.MaxStrangerStreams <= 0 {
		l.MaxStrangerStreams = 64
	}
	if l.MaxStreamsPerStranger <= 0 {
		l.MaxStreamsPerStranger = 4
	}
	return l
}

// Timeouts bounds how long a peer can hold a stream. The zero value of each
// field selects its default.
type Timeouts struct {
	// Dial bounds connecting (all addresses), the security handshake and
	// protocol negotiation in Dial. Default 10 s.
	Dial time.Duration
	// Idle bounds how long a single read or write on a stream may make no
	// progress at all. A peer that stops reading or sending is cut after it:
	// the stream is reset and the call returns ErrTimeout. Writes are issued in
	// pieces of at most 256 KiB, each with a fresh deadline, so a slow but live
	// peer needs about 256 KiB per Idle period. Default 30 s.
	Idle time.Duration
	// Stream bounds the whole life of a stream, however busy it is: reads and
	// writes fail with ErrTimeout past it, and the handler's context ends.
	// Default 1 h (1 GiB at 300 KB/s).
	Stream time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	if t.Dial <= 0 {
		t.Dial = 10 * time.Second
	}
	if t.Idle <= 0 {
		t.Idle = 30 * time.Second
	}
	if t.Stream <= 0 {
		t.Stream = time.Hour
	}
	return t
}

// newResourceManager builds the resource manager for l (after defaults).
// Every figure is fixed from l rather than scaled from the machine's memory
// (libp2p's AutoScale), so a node behaves the same on every machine.
func newResourceManager(l Limits) (managerState, error) {
	conns := l.MaxInboundConns + l.MaxOutboundConns
	fds := conns + 64

	scaling := rcmgr.DefaultLimits
	addIdentifyLimits(&scaling)
	base := scaling.Scale(l.MaxMemory, fds)

	// A yamux stream reserves its receive window (256 KiB) from its
	// connection, hence its peer and the node, the moment it opens, before
	// its protocol is negotiated (which libp2p allows 10 s), and neither the
	// transient nor a protocol scope sees that memory. Inbound streams are
	// capped so that their windows alone take at most half the memory.
	streamsIn := int(max(l.MaxMemory/2/yamuxWindow, 1))
	lim := func(n int) rcmgr.LimitVal { return rcmgr.LimitVal(n) }
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			ConnsInbound:   lim(l.MaxInboundConns),
			ConnsOutbound:  lim(l.MaxOutboundConns),
			Conns:          lim(conns),
			StreamsInbound: lim(streamsIn),
			FD:             lim(fds),
			Memory:         rcmgr.LimitVal64(l.MaxMemory),
		},
		// Transient: connections in their handshake and streams whose protocol
		// is not negotiated yet. 50 providers connecting at once each have a
		// connection and two streams (identify, medvault) here for a moment.
		Transient: rcmgr.ResourceLimits{
			ConnsInbound:    lim(l.MaxInboundConns),
			ConnsOutbound:   lim(l.MaxOutboundConns),
			Conns:           lim(conns),
			StreamsInbound:  lim(min(4*l.MaxInboundConns, streamsIn)),
			StreamsOutbound: lim(4 * l.MaxOutboundConns),
			Streams:         lim(4 * conns),
			FD:              lim(fds),
			Memory:          rcmgr.LimitVal64(l.MaxMemory / 4),
		},
		// One peer, every protocol and streams not negotiated yet: without
		// this, libp2p's default lets one peer hold 288 inbound streams and
		// 96 MiB, and three throwaway keys took 216 MiB of 256 and kept
		// everyone else out. A peer needs at most MaxStreamsPerPeer on each
		// of a few protocols; one fetch's yamux window grows to 16 MiB.
		PeerDefault: rcmgr.ResourceLimits{
			StreamsInbound:  lim(4 * l.MaxStreamsPerPeer),
			StreamsOutbound: lim(16 * l.MaxStreamsPerPeer),
			Streams:         lim(20 * l.MaxStreamsPerPeer),
			Memory:          rcmgr.LimitVal64(min(l.MaxMemory/8, 32<<20)),
		},
		// Every protocol without libp2p's own service limits, that is every
		// medvault protocol registered with Handle.
		ProtocolDefault: rcmgr.ResourceLimits{
			StreamsInbound:  lim(l.MaxInboundStreams),
			StreamsOutbound: lim(4 * l.MaxInboundStreams),
			Streams:         lim(5 * l.MaxInboundStreams),
			Memory:          rcmgr.LimitVal64(l.MaxMemory / 2),
		},
		ProtocolPeerDefault: rcmgr.ResourceLimits{
			StreamsInbound:  lim(l.MaxStreamsPerPeer),
			StreamsOutbound: lim(4 * l.MaxStreamsPerPeer),
			Streams:         lim(5 * l.MaxStreamsPerPeer),
			Memory:          rcmgr.LimitVal64(min(l.MaxMemory/4, 64<<20)),
		},
	}
	limiter := rcmgr.NewFixedLimiter(partial.Build(base))

	loopback := []rate.PrefixLimit{
		{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Limit: rate.Limit{}}, // RPS 0: unlimited
		{Prefix: netip.MustParsePrefix("::1/128"), Limit: rate.Limit{}},
	}
	perIP := rate.Limit{RPS: l.ConnRatePerIP, Burst: l.ConnBurstPerIP}
	connRate := &rate.Limiter{
		NetworkPrefixLimits: loopback,
		// All non-loopback addresses together.
		GlobalLimit: rate.Limit{RPS: 32 * l.ConnRatePerIP, Burst: l.MaxInboundConns},
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: perIP}},
			IPv6SubnetLimits: []rate.SubnetLimit{
				{PrefixLength: 56, Limit: perIP},
				{PrefixLength: 48, Limit: rate.Limit{RPS: 4 * perIP.RPS, Burst: 4 * perIP.Burst}},
			},
			GracePeriod: time.Minute,
		},
	}
	rm, err := rcmgr.NewResourceManager(limiter,
		rcmgr.WithMetricsDisabled(),
		rcmgr.WithConnRateLimiters(connRate),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: l.MaxConnsPerIP}},
			[]rcmgr.ConnLimitPerSubnet{
				{PrefixLength: 56, ConnCount: l.MaxConnsPerIP},
				{PrefixLength: 48, ConnCount: 4 * l.MaxConnsPerIP},
			}),
		rcmgr.WithNetworkPrefixLimit(
			[]rcmgr.NetworkPrefixLimit{{Network: netip.MustParsePrefix("127.0.0.0/8"), ConnCount: l.MaxInboundConns + l.MaxOutboundConns}},
			[]rcmgr.NetworkPrefixLimit{{Network: netip.MustParsePrefix("::1/128"), ConnCount: l.MaxInboundConns + l.MaxOutboundConns}}),
	)
	if err != nil {
		return nil, err
	}
	st, ok := rm.(managerState)
	if !ok {
		_ = rm.Close()
		return nil, fmt.Errorf("libp2p's resource manager (%T) does not report its state", rm)
	}
	return st, nil
}

// yamuxWindow is the receive window a yamux stream reserves when it opens.
const yamuxWindow = 256 << 10

// gater admits only peers whose ID is a canonical Ed25519 peer ID: medvault
// identities are Ed25519 keys, so an RSA or secp256k1 peer is not one of ours
// and is dropped right after the security handshake, before any stream.
type gater struct{}

func (gater) InterceptPeerDial(p peer.ID) bool                                { return isMedvaultID(p) }
func (gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool                { return isMedvaultID(p) }
func (gater) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
func (gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return isMedvaultID(p)
}

// checkListenAddr accepts only TCP and QUIC v1 over literal IPv4 or IPv6
// addresses: /ip4|ip6/…/tcp/N and /ip4|ip6/…/udp/N/quic-v1.
func checkListenAddr(s string) (ma.Multiaddr, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w: %w", s, ErrBadAddress, err)
	}
	var codes []int
	for _, c := range a {
		codes = append(codes, c.Code())
	}
	ok := len(codes) >= 2 && (codes[0] == ma.P_IP4 || codes[0] == ma.P_IP6)
	if ok {
		rest := codes[1:]
		ok = (len(rest) == 1 && rest[0] == ma.P_TCP) ||
			(len(rest) == 2 && rest[0] == ma.P_UDP && rest[1] == ma.P_QUIC_V1)
	}
	if !ok {
		return nil, fmt.Errorf("listen address %q: want /ip4|ip6/ADDR/tcp/PORT or /ip4|ip6/ADDR/udp/PORT/quic-v1: %w", s, ErrBadAddress)
	}
	return a, nil
}

// addIdentifyLimits adds identify's limits to config: the ones libp2p.New's
// SetDefaultServiceLimits sets for it. Identify is the only libp2p service a
// node runs.
func addIdentifyLimits(config *rcmgr.ScalingLimitConfig) {
	config.AddServiceLimit(identify.ServiceName,
		rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20})
	config.AddServicePeerLimit(identify.ServiceName,
		rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 1 << 20},
		rcmgr.BaseLimitIncrease{})
	for _, id := range [...]protocol.ID{identify.ID, identify.IDPush} {
		config.AddProtocolLimit(id,
			rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20},
			rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20})
		config.AddProtocolPeerLimit(id,
			rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 32 * (256<<20 + 16<<10)},
			rcmgr.BaseLimitIncrease{})
	}
}
