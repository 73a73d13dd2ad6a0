package p2p_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"github.com/medvault/medvault/p2p"
	"github.com/medvault/medvault/p2p/frame"
)

// A patient's node serves ProtocolShare; a provider's node, which does not
// listen, dials it and exchanges one request and one answer.
func Example() {
	ctx := context.Background()
	_, patientKey, _ := ed25519.GenerateKey(rand.Reader)
	_, providerKey, _ := ed25519.GenerateKey(rand.Reader)

	patient, err := p2p.NewNode(ctx, p2p.Config{Key: patientKey, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer patient.Close()
	patient.Handle(p2p.ProtocolShare, func(ctx context.Context, s *p2p.Stream) {
		_, req, err := s.ReadFrame(frame.MaxControlPayload)
		if err != nil {
			return
		}
		// The authenticated key of the caller, to compare with a grant's audience.
		audience := providerKey.Public().(ed25519.PublicKey)
		if !s.RemoteKey().Equal(audience) {
			return
		}
		_ = s.WriteFrame(0x02, append([]byte("answer to "), req...))
	})

	provider, err := p2p.NewNode(ctx, p2p.Config{Key: providerKey})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer provider.Close()
	s, err := provider.Dial(ctx, patient.Addrs(), p2p.ProtocolShare)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	if err := s.WriteFrame(0x01, []byte("request")); err != nil {
		fmt.Println(err)
		return
	}
	typ, answer, err := s.ReadFrame(frame.MaxControlPayload)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("type 0x%02x: %s\n", typ, answer)
	// Output: type 0x02: answer to request
}
