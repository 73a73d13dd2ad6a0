package p2p

import (
	"context"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"
)

// A DHT stream ends with the stream's life (Timeouts.Stream), as every
// stream does, however often the peer asks: one that pings just inside the
// idle timeout must not hold a handler and its stream slot for ever.
func TestKadStreamLifeBounded(t *testing.T) {
	hub := newTestNode(t, func(c *Config) {
		c.DHT = true
		c.Timeouts.Idle = 2 * time.Second
		c.Timeouts.Stream = time.Second
	})
	client := newTestNode(t, dialOnly)
	a, err := ma.NewMultiaddr(addrsFor(t, hub, "tcp")[0])
	if err != nil {
		t.Fatal(err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := client.h.Connect(ctx, *ai); err != nil {
		t.Fatal(err)
	}
	s, err := client.h.NewStream(ctx, hub.ID(), kadProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	ping, _ := proto.Marshal(pb.NewMessage(pb.Message_PING, nil, 0))
	w, r := msgio.NewVarintWriter(s), msgio.NewVarintReaderSize(s, 4<<10)
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		if err := w.WriteMsg(ping); err != nil {
			break
		}
		if _, err := r.ReadMsg(); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if held := time.Since(start); held > 3*time.Second {
		t.Fatalf("a peer pinging every 200 ms held a DHT stream for %v; the stream's life is 1 s", held.Round(time.Millisecond))
	}
}
