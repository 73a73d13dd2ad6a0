package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// tryEcho dials victim on testProto, sends a frame and reads the echo.
func tryEcho(c *Node, addrs []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.Dial(ctx, addrs, testProto)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.WriteFrame(1, []byte("hi")); err != nil {
		return err
	}
	_, _, err = s.ReadFrame(16)
	return err
}

// holdRawStreams connects n fresh keys to victim and has each open up to
// per raw streams that never negotiate a protocol (libp2p holds such a
// stream 10 s, its receive window reserved all the while). It returns
// when the streams are opened; they are reset at the test's end.
func holdRawStreams(t *testing.T, victim *Node, n, per int) {
	t.Helper()
	ai := peer.AddrInfo{ID: victim.ID()}
	for _, a := range addrsFor(t, victim, "tcp") {
		tpt, _ := peer.SplitAddr(ma.StringCast(a))
		ai.Addrs = append(ai.Addrs, tpt)
	}
	for range n {
		atk := newTestNode(t, dialOnly)
		if err := atk.h.Connect(context.Background(), ai); err != nil {
			t.Fatalf("attacker connect: %v", err)
		}
		for range per {
			s, err := atk.h.Network().NewStream(context.Background(), victim.ID())
			if err != nil {
				break
			}
			t.Cleanup(func() { s.Reset() })
		}
	}
	time.Sleep(300 * time.Millisecond) // the victim's side accepts them
}

func inboundStreams(n *Node) (streams int, mem int64) {
	n.h.Network().ResourceManager().ViewSystem(func(s network.ResourceScope) error {
		st := s.Stat()
		streams, mem = st.NumStreamsInbound, st.Memory
		return nil
	})
	return streams, mem
}

// Throwaway keys opening streams they never use cannot keep a peer the node
// knows out: twenty of them, 300 streams each, hold at most the strangers'
// budget, and their windows a small part of the memory (the review that
// found this: three keys held 864 streams and 216 MiB of 256, and no one
// else got a stream).
func TestStrangersCannotLockOutContacts(t *testing.T) {
	var contactID peer.ID
	victim := newTestNode(t, func(c *Config) {
		c.Known = func(p peer.ID) bool { return p == contactID }
	})
	victim.Handle(testProto, echo)
	contact := newTestNode(t, dialOnly)
	contactID = contact.ID()
	addrs := addrsFor(t, victim, "tcp")

	// A stranger is served within its budget.
	if err := tryEcho(newTestNode(t, dialOnly), addrs); err != nil {
		t.Fatalf("a stranger within the budget: %v", err)
	}

	holdRawStreams(t, victim, 20, 300)
	l := Limits{}.withDefaults()
	streams, mem := inboundStreams(victim)
	if held := victim.gate.strangerStreams(); held > l.MaxStrangerStreams {
		t.Errorf("strangers hold %d streams, budget %d", held, l.MaxStrangerStreams)
	}
	if mem > l.MaxMemory/4 {
		t.Errorf("strangers' streams (%d inbound) reserved %d MiB of %d", streams, mem>>20, l.MaxMemory>>20)
	}
	for i := range 10 {
		if err := tryEcho(contact, addrs); err != nil {
			t.Fatalf("contact, try %d, with strangers holding %d streams: %v", i, streams, err)
		}
	}
}

// Without Known, every peer gets the per-peer limits alone: three keys no
// longer take the node's memory or streams.
func TestPerPeerStreamLimits(t *testing.T) {
	victim := newTestNode(t)
	victim.Handle(testProto, echo)
	other := newTestNode(t, dialOnly)
	addrs := addrsFor(t, victim, "tcp")
	holdRawStreams(t, victim, 3, 300)
	l := Limits{}.withDefaults()
	streams, mem := inboundStreams(victim)
	if streams > 3*4*l.MaxStreamsPerPeer+8 || mem > l.MaxMemory/4 {
		t.Errorf("three peers hold %d inbound streams and %d MiB", streams, mem>>20)
	}
	for i := range 5 {
		if err := tryEcho(other, addrs); err != nil {
			t.Fatalf("another peer, try %d, with three holding %d streams: %v", i, streams, err)
		}
	}
}

// Keys that join the node's DHT as servers enter its routing table, but
// stay strangers: their un-negotiated streams share the same budget, and a
// contact is still served (a review found them exempt, and 39 such keys
// kept a contact out).
func TestRoutingTableKeysStayStrangers(t *testing.T) {
	var contactID peer.ID
	victim := newTestNode(t, func(c *Config) {
		c.DHT = true
		c.Known = func(p peer.ID) bool { return p == contactID }
	})
	victim.Handle(testProto, echo)
	contact := newTestNode(t, dialOnly)
	contactID = contact.ID()
	addrs := addrsFor(t, victim, "tcp")
	var keys []*Node
	for range 24 {
		keys = append(keys, newTestNode(t, func(c *Config) { c.Bootstrap = addrs })) // listens: a DHT server
	}
	var in []*Node
	waitFor(t, "16 keys to enter the victim's routing table", func() bool {
		in = in[:0]
		for _, k := range keys {
			if victim.dht.RoutingTable().Find(k.ID()) != "" {
				in = append(in, k)
			}
		}
		return len(in) >= 16
	})
	for _, k := range in {
		for range 300 {
			s, err := k.h.Network().NewStream(context.Background(), victim.ID())
			if err != nil {
				break
			}
			t.Cleanup(func() { s.Reset() })
		}
	}
	time.Sleep(300 * time.Millisecond)
	streams, _ := inboundStreams(victim)
	for i := range 10 {
		if err := tryEcho(contact, addrs); err != nil {
			t.Fatalf("%d keys in the routing table holding %d streams: contact, try %d: %v", len(in), streams, i, err)
		}
	}
}

// A stream leaves the strangers' budget once its protocol is negotiated:
// a stranger holds more open streams than MaxStreamsPerStranger, and a DHT
// node serves lookups from more strangers than MaxStrangerStreams, whose
// streams kad-dht keeps open between requests (a review found the 65th
// client of a hub refused).
func TestNegotiatedStreamsLeaveStrangersBudget(t *testing.T) {
	hub := newTestNode(t, func(c *Config) {
		c.DHT = true
		c.Known = func(peer.ID) bool { return false }
	})
	hold := make(chan struct{})
	defer close(hold)
	hub.Handle(testProto, func(ctx context.Context, s *Stream) {
		s.WriteFrame(1, nil)
		select {
		case <-hold:
		case <-ctx.Done():
		}
	})
	hubAddr := addrsFor(t, hub, "tcp")
	l := Limits{}.withDefaults()

	stranger := newTestNode(t, dialOnly)
	for i := range l.MaxStreamsPerStranger + 2 {
		s, err := stranger.Dial(context.Background(), hubAddr, testProto)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		defer s.Close()
		if _, _, err := s.ReadFrame(16); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if n := hub.gate.strangerStreams(); n != 0 {
		t.Errorf("negotiated streams still hold %d strangers' slots", n)
	}

	patient := newTestNode(t, func(c *Config) { c.Bootstrap = hubAddr })
	waitFor(t, "the patient to enter the hub's routing table", func() bool {
		return hub.dht.RoutingTable().Find(patient.ID()) != ""
	})
	for i := range l.MaxStrangerStreams + 6 {
		c := newTestNode(t, dialOnly, func(c *Config) { c.Bootstrap = hubAddr })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ai, err := c.dht.FindPeer(ctx, patient.ID())
		cancel()
		if err != nil || len(ai.Addrs) == 0 {
			t.Fatalf("DHT client %d: lookup through the hub: %v (strangers' slots held: %d)", i, err, hub.gate.strangerStreams())
		}
	}
}
