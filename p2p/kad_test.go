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

// Strangers holding DHT streams open cannot keep others from the DHT: a
// stream over the node's own cap pushes out the one idle longest. (A review
// held 126 of the protocol's 128 streams with 16 throwaway keys, each
// stream pinged once, and a fresh client's lookup through the hub failed
// for the streams' whole life.)
func TestKadStreamsHeldByStrangers(t *testing.T) {
	hub := newTestNode(t, func(c *Config) { c.DHT = true })
	hubAddr := addrsFor(t, hub, "tcp")
	patient := newTestNode(t, func(c *Config) { c.Bootstrap = hubAddr })
	waitFor(t, "the patient to enter the hub's routing table", func() bool {
		return hub.dht.RoutingTable().Find(patient.ID()) != ""
	})
	a, err := ma.NewMultiaddr(hubAddr[0])
	if err != nil {
		t.Fatal(err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		t.Fatal(err)
	}
	l := Limits{}.withDefaults()
	ping, _ := proto.Marshal(pb.NewMessage(pb.Message_PING, nil, 0))
	held := 0
	for range l.MaxInboundStreams/l.MaxStreamsPerPeer + 1 {
		k := newTestNode(t, dialOnly)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := k.h.Connect(ctx, *ai); err != nil {
			cancel()
			t.Fatal(err)
		}
		for range l.MaxStreamsPerPeer {
			s, err := k.h.NewStream(ctx, hub.ID(), kadProtocol)
			if err != nil {
				break
			}
			t.Cleanup(func() { s.Reset() })
			w, r := msgio.NewVarintWriter(s), msgio.NewVarintReaderSize(s, 4<<10)
			if w.WriteMsg(ping) != nil {
				continue
			}
			if _, err := r.ReadMsg(); err == nil {
				held++
			}
		}
		cancel()
	}
	if held < hub.kad.max {
		t.Fatalf("strangers held only %d DHT streams, the cap is %d: this test no longer fills it", held, hub.kad.max)
	}
	for i := range 3 {
		c := newTestNode(t, dialOnly, func(c *Config) { c.Bootstrap = hubAddr })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		found, err := c.dht.FindPeer(ctx, patient.ID())
		cancel()
		if err != nil || len(found.Addrs) == 0 {
			t.Fatalf("client %d: lookup through a hub whose DHT streams strangers hold (%d answered a ping): %v", i, held, err)
		}
	}
	if n := hub.kad.open(); n > hub.kad.max {
		t.Errorf("%d DHT streams open, the cap is %d", n, hub.kad.max)
	}
}
