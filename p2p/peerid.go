package p2p

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// peerIDPrefix precedes the 32 key bytes in every medvault peer ID: the
// identity multihash header (code 0x00, length 0x24 = 36) and the protobuf
// PublicKey message header {Type (field 1, varint) = Ed25519 (1), Data (field
// 2, bytes) of length 32}.
var peerIDPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// peerIDLen is the byte length of a medvault peer ID.
const peerIDLen = 6 + ed25519.PublicKeySize

// IDFromPublicKey returns the libp2p peer ID of an Ed25519 public key: the
// identity multihash of the key's protobuf encoding, bytes
// 00 24 08 01 12 20 || key. Its String form is base58btc and starts "12D3KooW".
// It needs no libp2p machinery and matches peer.IDFromPublicKey.
func IDFromPublicKey(pub ed25519.PublicKey) (peer.ID, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("peer id from public key: length %d: %w", len(pub), ErrBadKey)
	}
	b := make([]byte, 0, peerIDLen)
	b = append(b, peerIDPrefix...)
	b = append(b, pub...)
	return peer.ID(b), nil
}

// PublicKeyFromID returns the Ed25519 public key a peer ID embeds. It accepts
// only the canonical form IDFromPublicKey produces, so that one key has exactly
// one peer ID; anything else (SHA-256 multihash IDs, RSA or secp256k1 keys,
// non-canonical protobuf) gives ErrBadPeerID.
func PublicKeyFromID(id peer.ID) (ed25519.PublicKey, error) {
	b := []byte(id)
	if len(b) != peerIDLen || !bytes.HasPrefix(b, peerIDPrefix) {
		return nil, fmt.Errorf("public key from peer id: %w", ErrBadPeerID)
	}
	return ed25519.PublicKey(b[len(peerIDPrefix):]), nil
}

// ParseID parses the text form of a medvault peer ID (base58btc "12D3KooW…",
// or the equivalent libp2p-key CID) and checks that it is a canonical Ed25519
// peer ID.
func ParseID(s string) (peer.ID, error) {
	if len(s) > 128 {
		return "", fmt.Errorf("parse peer id: %d characters: %w", len(s), ErrBadPeerID)
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", fmt.Errorf("parse peer id: %w: %w", ErrBadPeerID, err)
	}
	if _, err := PublicKeyFromID(id); err != nil {
		return "", fmt.Errorf("parse peer id %s: %w", id, err)
	}
	return id, nil
}

// isMedvaultID reports whether id is a canonical Ed25519 peer ID.
func isMedvaultID(id peer.ID) bool {
	_, err := PublicKeyFromID(id)
	return err == nil
}
