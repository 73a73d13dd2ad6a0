package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	if server {
		// In place of kad-dht's handler (see serveKad).
		n.h.SetStreamHandler(kadProtocol, n.serveKad)
	}
	n.joinDHT(ctx)
	return d.Bootstrap(n.ctx)
}

// joinDHT connects to the bootstrap peers, each for at most the dial
// timeout; a peer that is down is not an error (others may answer, and the
// DHT retries).
func (n *Node) joinDHT(ctx context.Context) {
	// All at once, within one dial timeout: with the peers down, a
	// command run without a node must not wait for each in turn.
	cctx, cancel := context.WithTimeout(ctx, n.timeouts.Dial)
	defer cancel()
	var wg sync.WaitGroup
	var ok atomic.Bool
	for _, ai := range n.bootstrap {
		wg.Go(func() {
			if err := n.h.Connect(cctx, ai); err != nil {
				n.log.Warn("bootstrap peer unreachable", "peer", ai.ID.String())
			} else {
				ok.Store(true)
			}
		})
	}
	wg.Wait()
	joined := ok.Load()
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
// patient whose node moved since the grant was issued is found again. The
// addresses known for id (those given and any the peerstore holds) get
// half the time left, so that one that black-holes (an address on a network
// the peer left) leaves time for the lookup.
func (n *Node) connect(ctx context.Context, id peer.ID, addrs []ma.Multiaddr) error {
	if n.dht == nil {
		return n.h.Connect(ctx, peer.AddrInfo{ID: id, Addrs: addrs})
	}
	var err error
	if len(addrs) > 0 || len(n.h.Peerstore().Addrs(id)) > 0 {
		dctx := ctx
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			dctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
			defer cancel()
		}
		err = n.h.Connect(dctx, peer.AddrInfo{ID: id, Addrs: addrs})
		if err == nil || errors.Is(ctx.Err(), context.Canceled) {
			return err
		}
		// Every address known for id failed. When the routing table
		// still holds id (the DHT met it before it moved), kad-dht seeds
		// the lookup with id itself and dials it at those same
		// addresses; it then reports id not found, or found at those
		// addresses, though the peers it would have asked know where id
		// is now. kad-dht drops a peer it cannot dial from its table
		// anyway; this does it before the lookup, not during it.
		n.dht.RoutingTable().RemovePeer(id)
	}
	lctx, cancel := context.WithTimeout(ctx, n.timeouts.Dial)
	defer cancel()
	ai, ferr := n.dht.FindPeer(lctx, id)
	if ferr != nil {
		if err == nil {
			return fmt.Errorf("no known address, and the DHT does not know it: %w", ferr)
		}
		return fmt.Errorf("%w (the DHT does not know it either: %v)", err, ferr)
	}
	if err := n.h.Connect(ctx, ai); err != nil {
		return fmt.Errorf("at %v, found by the DHT: %w", ai.Addrs, err)
	}
	return nil
}
