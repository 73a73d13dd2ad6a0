package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// ProtocolPrefix names medvault's DHT: its protocol is /medvault/kad/1.0.0,
// so a medvault node never joins, or answers, the public IPFS DHT.
const ProtocolPrefix = "/medvault"

// MaxBootstrap bounds the bootstrap peers a node takes.
const MaxBootstrap = 64

// bootstrapPeers parses bootstrap multiaddrs: each must name a medvault
// peer ID (/p2p/...) after a transport address.
func bootstrapPeers(addrs []string) ([]peer.AddrInfo, error) {
	if len(addrs) > MaxBootstrap {
		return nil, fmt.Errorf("bootstrap: %d peers, at most %d: %w", len(addrs), MaxBootstrap, ErrBadAddress)
	}
	var infos []peer.AddrInfo
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap %q: %w: %w", s, ErrBadAddress, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil || len(ai.Addrs) == 0 {
			return nil, fmt.Errorf("bootstrap %s: want a transport address ending in /p2p/<peer ID>: %w", a, ErrBadAddress)
		}
		if !isMedvaultID(ai.ID) {
			return nil, fmt.Errorf("bootstrap %s: %w", a, ErrBadPeerID)
		}
		infos = append(infos, *ai)
	}
	return infos, nil
}

// startDHT joins the DHT: as a server when the node listens (it answers
// lookups for the peers it knows), as a client otherwise. It tries each
// bootstrap peer once now; the DHT keeps refreshing its table afterwards.
func (n *Node) startDHT(ctx context.Context, server bool) error {
	mode := dht.ModeClient
	if server {
		mode = dht.ModeServer
	}
	d, err := dht.New(n.h,
		dht.Mode(mode),
		dht.ProtocolPrefix(ProtocolPrefix),
		dht.BootstrapPeers(n.bootstrap...),
		// Peer routing only: no provider records, no values.
		dht.DisableProviders(),
		dht.DisableValues(),
	)
	if err != nil {
		return fmt.Errorf("dht: %w", err)
	}
	n.dht = d
	n.joinDHT(ctx)
	return d.Bootstrap(n.ctx)
}

// joinDHT connects to the bootstrap peers, each for at most the dial
// timeout; a peer that is down is not an error (others may answer, and the
// DHT retries).
func (n *Node) joinDHT(ctx context.Context) {
	joined := false
	for _, ai := range n.bootstrap {
		cctx, cancel := context.WithTimeout(ctx, n.timeouts.Dial)
		if err := n.h.Connect(cctx, ai); err != nil {
			n.log.Warn("bootstrap peer unreachable", "peer", ai.ID.String())
		} else {
			joined = true
		}
		cancel()
	}
	// A peer enters the routing table once identify has shown that it
	// serves the DHT, just after the connection: wait for that (briefly),
	// or a lookup made at once finds an empty table.
	for deadline := time.Now().Add(joinWait); joined && n.dht.RoutingTable().Size() == 0 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// joinWait bounds how long joinDHT waits for a bootstrap peer to enter the
// routing table.
const joinWait = 2 * time.Second

// HasDHT reports whether the node runs the DHT.
func (n *Node) HasDHT() bool { return n.dht != nil }

// BootstrapConnected returns how many bootstrap peers the node is connected
// to now.
func (n *Node) BootstrapConnected() int {
	c := 0
	for _, ai := range n.bootstrap {
		if len(n.h.Network().ConnsToPeer(ai.ID)) > 0 {
			c++
		}
	}
	return c
}

// connect connects to id at addrs; when that fails (or there are none) and
// the node runs the DHT, it asks the DHT for id's current addresses: a
// patient whose node moved since the grant was issued is found again.
func (n *Node) connect(ctx context.Context, id peer.ID, addrs []ma.Multiaddr) error {
	var err error
	if len(addrs) > 0 || n.dht == nil {
		err = n.h.Connect(ctx, peer.AddrInfo{ID: id, Addrs: addrs})
		if err == nil || n.dht == nil || errors.Is(ctx.Err(), context.Canceled) {
			return err
		}
	}
	// Half the time that is left for the lookup, the rest for the dial.
	lctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
		defer cancel()
	}
	ai, ferr := n.dht.FindPeer(lctx, id)
	if ferr != nil {
		if err == nil {
			err = fmt.Errorf("no known address, and the DHT does not know it: %w", ferr)
		} else {
			err = fmt.Errorf("%w (the DHT does not know it either: %v)", err, ferr)
		}
		return err
	}
	if err := n.h.Connect(ctx, ai); err != nil {
		return fmt.Errorf("at %v, found by the DHT: %w", ai.Addrs, err)
	}
	return nil
}
