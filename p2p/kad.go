package p2p

import (
	"io"
	"sync"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-msgio"
	"google.golang.org/protobuf/proto"
)

// kadProtocol is the DHT's protocol ID (ProtocolPrefix + kad-dht's suffix).
const kadProtocol = ProtocolPrefix + "/kad/1.0.0"

// maxKadRequest bounds a DHT request this node reads: a FIND_NODE or PING
// is a type, a key (a peer ID, under 64 bytes) and a cluster level.
const maxKadRequest = 4 << 10

// kadBucketSize is how many closer peers an answer lists (kad-dht's K).
const kadBucketSize = 20

// serveKad answers DHT requests in place of kad-dht's own handler, for two
// reasons. kad-dht answers FIND_NODE with the addresses of any peer in the
// peerstore, as its spec asks: a node running the DHT would tell anyone the
// addresses of every peer it ever talked to, who never opted in (a
// patient who pushed a grant to a clinic's node, say). Here the answer
// names only peers in the routing table, which run the DHT themselves, and
// this node. And kad-dht reads requests of up to 4 MiB without reserving
// them from the resource manager; here a request is at most 4 KiB. With
// providers and values off, FIND_NODE and PING are all a medvault DHT
// serves; anything else ends the stream.
func (n *Node) serveKad(s network.Stream) {
	from := s.Conn().RemotePeer()
	n.kad.admit(s)
	defer n.kad.leave(s)
	r := msgio.NewVarintReaderSize(s, maxKadRequest)
	w := msgio.NewVarintWriter(s)
	// Each request gets the idle timeout, but never past the stream's
	// life: a peer that keeps asking must not hold the stream (and a
	// slot of the protocol's stream limit) for ever.
	end := time.Now().Add(n.timeouts.Stream)
	for {
		d := time.Now().Add(n.timeouts.Idle)
		if end.Before(d) {
			d = end
		}
		_ = s.SetDeadline(d)
		msg, err := r.ReadMsg()
		if err != nil {
			if err == io.EOF {
				_ = s.Close()
			} else {
				_ = s.Reset()
			}
			return
		}
		var req pb.Message
		err = proto.Unmarshal(msg, &req)
		r.ReleaseMsg(msg)
		if err != nil {
			_ = s.Reset()
			return
		}
		var resp *pb.Message
		switch req.GetType() {
		case pb.Message_FIND_NODE:
			resp = n.findNode(&req, from)
		case pb.Message_PING:
			resp = pb.NewMessage(pb.Message_PING, nil, int(req.GetClusterLevel()))
		default:
			_ = s.Reset()
			return
		}
		out, err := proto.Marshal(resp)
		if err != nil || w.WriteMsg(out) != nil {
			_ = s.Reset()
			return
		}
		n.kad.touch(s)
	}
}

// kadStreams keeps the DHT streams a node serves at once below the
// protocol's stream limit, and makes room for a new one by ending the one
// that has gone longest without a request. kad-dht keeps a stream to each
// peer open between requests, for up to the stream's life, and anyone can
// make keys: without this, 16 throwaway keys opening 8 streams each (the
// per-peer limit) and pinging each once held 126 of the 128 streams for
// an hour, and nobody else could look anyone up through the node. Now a
// stranger can make others' idle streams end sooner, not keep anyone out:
// a kad-dht client whose stream was ended opens another.
type kadStreams struct {
	max  int
	mu   sync.Mutex
	live map[network.Stream]time.Time // when each last opened or was answered
}

// newKadStreams caps the streams served at three quarters of the
// protocol's limit (Limits.MaxInboundStreams): the rest is room for
// streams being negotiated, so a new one reaches serveKad and is
// admitted rather than refused by the resource manager.
func newKadStreams(protocolLimit int) *kadStreams {
	return &kadStreams{max: max(protocolLimit*3/4, 1), live: map[network.Stream]time.Time{}}
}

func (k *kadStreams) admit(s network.Stream) {
	k.mu.Lock()
	var oldest network.Stream
	if len(k.live) >= k.max {
		var at time.Time
		for o, t := range k.live {
			if oldest == nil || t.Before(at) {
				oldest, at = o, t
			}
		}
		delete(k.live, oldest)
	}
	k.live[s] = time.Now()
	k.mu.Unlock()
	if oldest != nil {
		// Its handler's read fails, and the handler returns.
		_ = oldest.Reset()
	}
}

func (k *kadStreams) touch(s network.Stream) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.live[s]; ok {
		k.live[s] = time.Now()
	}
}

func (k *kadStreams) leave(s network.Stream) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.live, s)
}

// open returns how many DHT streams are being served.
func (k *kadStreams) open() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.live)
}

// findNode answers FIND_NODE: the peers of the routing table closest to the
// key (never the requester), with the key's own peer first when it is in
// the table or is this node.
func (n *Node) findNode(req *pb.Message, from peer.ID) *pb.Message {
	resp := pb.NewMessage(req.GetType(), nil, int(req.GetClusterLevel()))
	key := req.GetKey()
	if len(key) == 0 {
		return resp
	}
	rt := n.dht.RoutingTable()
	var ids []peer.ID
	target := peer.ID(key)
	if target == n.h.ID() || rt.Find(target) != "" {
		ids = append(ids, target)
	}
	for _, p := range rt.NearestPeers(kb.ConvertKey(string(key)), kadBucketSize) {
		if p != from && p != target {
			ids = append(ids, p)
		}
	}
	var infos []peer.AddrInfo
	for _, ai := range peerstore.AddrInfos(n.h.Peerstore(), ids) {
		if ai.ID == n.h.ID() {
			ai.Addrs = n.h.Addrs()
		}
		if len(ai.Addrs) > 0 && ai.ID != from {
			infos = append(infos, ai)
		}
	}
	resp.CloserPeers = pb.PeerInfosToPBPeers(n.h.Network(), infos)
	return resp
}
