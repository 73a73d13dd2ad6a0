package p2p

import "errors"

// Errors returned by this package. Returned errors wrap them with context, so
// test with errors.Is.
var (
	// ErrUnreachable reports that no connection to the peer could be made: no
	// address answered, the dial timed out, or the connection dropped while
	// the stream was being opened. The CLI maps it to exit code 20.
	ErrUnreachable = errors.New("peer unreachable")
	// ErrPeerMismatch reports that an address answered with another peer's
	// key than the one asked for. Errors wrapping it also wrap ErrUnreachable.
	ErrPeerMismatch = errors.New("peer at address has a different identity")
	// ErrProtocolNotSupported reports that the peer is reachable but does not
	// serve the requested protocol (for example, its node runs without it, or
	// speaks another version).
	ErrProtocolNotSupported = errors.New("protocol not supported by peer")
	// ErrBadAddress reports a malformed multiaddr, one without the /p2p/ part
	// where it is required, addresses naming different peers, or a listen
	// address on a transport medvault does not run.
	ErrBadAddress = errors.New("bad multiaddr")
	// ErrBadKey reports an unusable identity key: wrong length, or a public
	// half that does not match the seed.
	ErrBadKey = errors.New("bad ed25519 key")
	// ErrBadPeerID reports a peer ID that is not the canonical identity
	// multihash of an Ed25519 public key. medvault peers have no other kind.
	ErrBadPeerID = errors.New("bad peer id")
	// ErrTimeout reports a stream read or write that made no progress within
	// the idle timeout, or that ran past the stream's lifetime. The stream has
	// been reset.
	ErrTimeout = errors.New("stream timed out")
	// ErrReset reports a stream reset by either side (a framing violation, a
	// timeout, a resource limit, the remote handler failing, a node closing).
	ErrReset = errors.New("stream reset")
	// ErrClosed reports use of a Node after Close.
	ErrClosed = errors.New("node closed")
)
