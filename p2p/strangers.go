package p2p

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// strangerGate wraps the resource manager so that inbound streams from
// peers the node does not know (strangers: not Config.Known) share a small
// budget of their own until their protocol is negotiated,
// MaxStrangerStreams in all and MaxStreamsPerStranger each. libp2p holds a
// stream up to 10 s for its negotiation, its 256 KiB receive window
// reserved all the while, and anyone can make keys, each a new peer to the
// per-peer limits: without this, throwaway keys opening streams they never
// use could hold every inbound stream the node accepts and keep its
// contacts out. A stream over the budget is refused as it opens. Once its
// protocol is negotiated a stream leaves the budget: the per-protocol
// limits bound it from there, and the protocols bound strangers further
// (share answers 16 at once, push refuses them unread), so a DHT node's
// lookups from strangers, whose streams stay open between requests, do not
// use the budget up.
type strangerGate struct {
	managerState
	max, perPeer int
	known        atomic.Pointer[func(peer.ID) bool] // nil: every peer is known

	mu    sync.Mutex
	total int
	peers map[peer.ID]int
}

// managerState is what libp2p's resource manager implements: the gate
// passes on both (tests and libp2p's own tools read its state).
type managerState interface {
	network.ResourceManager
	rcmgr.ResourceManagerState
}

func newStrangerGate(rm managerState, l Limits) *strangerGate {
	return &strangerGate{managerState: rm, max: l.MaxStrangerStreams, perPeer: l.MaxStreamsPerStranger, peers: map[peer.ID]int{}}
}

func (g *strangerGate) isKnown(p peer.ID) bool {
	k := g.known.Load()
	return k == nil || (*k)(p)
}

// OpenStream implements network.ResourceManager.
func (g *strangerGate) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	if dir != network.DirInbound || g.isKnown(p) {
		return g.managerState.OpenStream(p, dir)
	}
	g.mu.Lock()
	if g.total >= g.max || g.peers[p] >= g.perPeer {
		g.mu.Unlock()
		return nil, fmt.Errorf("inbound stream from a peer this node does not know: %w", network.ErrResourceLimitExceeded)
	}
	g.total++
	g.peers[p]++
	g.mu.Unlock()
	s, err := g.managerState.OpenStream(p, dir)
	if err != nil {
		g.release(p)
		return nil, err
	}
	return &strangerStream{StreamManagementScope: s, release: func() { g.release(p) }}, nil
}

func (g *strangerGate) release(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.peers[p]--; g.peers[p] <= 0 {
		delete(g.peers, p)
	}
}

// strangerStreams returns how many inbound streams strangers hold now.
func (g *strangerGate) strangerStreams() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}

// strangerStream gives a stranger's stream slot back once its protocol is
// set, or when libp2p is done with the stream, whichever comes first.
type strangerStream struct {
	network.StreamManagementScope
	once    sync.Once
	release func()
}

func (s *strangerStream) SetProtocol(proto protocol.ID) error {
	err := s.StreamManagementScope.SetProtocol(proto)
	if err == nil {
		s.once.Do(s.release)
	}
	return err
}

func (s *strangerStream) Done() {
	s.StreamManagementScope.Done()
	s.once.Do(s.release)
}
