package p2p

import (
	"context"
	"errors"
	"testing"
	"time"
)

// With the DHT (opt-in), a node finds a peer by its ID alone, or when the
// addresses it was given are stale (the peer restarted on another port):
// both joined through a common bootstrap node, which answers the lookup.
// Without it, the same dial fails as unreachable.
func TestFindPeerThroughDHT(t *testing.T) {
	boot := newTestNode(t, func(c *Config) { c.DHT = true })
	bootAddr := addrsFor(t, boot, "tcp")
	patient := newTestNode(t, func(c *Config) { c.Bootstrap = bootAddr })
	if patient.BootstrapConnected() != 1 {
		t.Fatal("the patient's node did not join through its bootstrap peer")
	}
	patient.Handle(ProtocolShare, func(ctx context.Context, s *Stream) {
		s.WriteFrame('K', []byte("found"))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stale := "/ip4/127.0.0.1/tcp/1/p2p/" + patient.ID().String()
	for name, addrs := range map[string][]string{"no address": nil, "a stale address": {stale}} {
		provider := newTestNode(t, dialOnly, func(c *Config) { c.Bootstrap = bootAddr })
		s, err := provider.DialPeer(ctx, patient.ID(), addrs, ProtocolShare)
		if err != nil {
			t.Fatalf("%s: %+v", name, err)
		}
		s.WriteFrame('Q', nil) // the dialer speaks first
		if typ, p, err := s.ReadFrame(16); err != nil || typ != 'K' || string(p) != "found" {
			t.Fatalf("%s: read %q %q %v", name, typ, p, err)
		}
		s.Close()
	}

	lone := newTestNode(t, dialOnly)
	if _, err := lone.DialPeer(ctx, patient.ID(), []string{stale}, ProtocolShare); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("without the DHT, a stale address: %v, want ErrUnreachable", err)
	}
}

func TestBootstrapAddressesChecked(t *testing.T) {
	key := newKey(t)
	for _, bad := range []string{
		"/ip4/127.0.0.1/tcp/4001",                                                    // no peer ID
		"/p2p/12D3KooWGfbxpohroAvkF4HtRfeq1iDWLFGLvntdrxasdivPufQr",                  // no transport address
		"/ip4/127.0.0.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", // not an Ed25519 ID
		"not a multiaddr",
	} {
		_, err := NewNode(context.Background(), Config{Key: key, Bootstrap: []string{bad}})
		if !errors.Is(err, ErrBadAddress) && !errors.Is(err, ErrBadPeerID) {
			t.Errorf("bootstrap %q: %v", bad, err)
		}
	}
}
