// Package p2p is medvault's network layer: a go-libp2p host whose identity is
// the user's Ed25519 key, the medvault protocol IDs, and streams that carry
// length-prefixed frames with hard size limits and deadlines. The sharing
// protocol itself (grant checks, records) lives in package share and runs over
// a Stream, which is an io.ReadWriter that also reports the authenticated
// remote key. The wire format, limits and their reasons are in PROTOCOL.md.
//
// A node serves protocols with Handle and opens streams with Dial:
//
//	n, err := p2p.NewNode(ctx, p2p.Config{Key: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
//	n.Handle(p2p.ProtocolShare, func(ctx context.Context, s *p2p.Stream) {
//		typ, req, err := s.ReadFrame(frame.MaxControlPayload)
//		// check s.RemoteKey() against the grant's audience, answer with s.WriteFrame
//	})
//	s, err := other.Dial(ctx, n.Addrs(), p2p.ProtocolShare)
//
// # Invariants
//
//   - Every peer is an Ed25519 key, authenticated by TLS 1.3, Noise or QUIC
//     during the handshake. A connection from any other key type is refused
//     by the connection gater; Stream.RemotePeer and Stream.RemoteKey are the
//     authenticated identity, never a claim made by the peer in a message.
//   - No frame larger than the reader's limit (at most frame.MaxPayload) is
//     read or allocated. Frame buffers are accounted in the libp2p resource
//     manager, whose limits are fixed figures (Limits), not scaled from the
//     machine: per node, per peer and per protocol. With Config.Known, peers
//     it does not name (strangers) share a small budget of streams until
//     their protocol is negotiated, so throwaway keys cannot keep known
//     peers out.
//   - Every stream operation has a deadline: an idle timeout measured on
//     progress, and an end of life. A peer that stops reading or sending is
//     reset within the idle timeout and its goroutine and buffers are freed.
//   - A framing error, a timeout or a handler panic resets that one stream
//     (an oversized frame only ends reading: the handler may answer before
//     its stream is closed); the node keeps serving.
//   - Listening happens only on the addresses the caller gives: nothing is
//     announced by mDNS, no relay, UPnP/NAT-PMP, AutoNAT or hole punching
//     runs, and the DHT (peer routing only, under /medvault/kad/1.0.0) runs
//     only when Config.DHT or Config.Bootstrap asks for it (see PROTOCOL.md,
//     "Services deliberately off" and "Finding a peer").
//
// # Errors
//
// Dial errors wrap ErrUnreachable (exit code 20 in the CLI), with
// ErrPeerMismatch when an address answered with the wrong key;
// ErrProtocolNotSupported when the peer runs but does not serve the protocol;
// ErrBadAddress, ErrBadPeerID for unusable input; context.Canceled when the
// caller gave up. Stream errors wrap ErrTimeout or ErrReset, or the framing
// errors of package frame (frame.ErrTooLarge, frame.ErrBadType,
// frame.ErrTruncated, frame.ErrNoMemory). No error contains payload bytes or
// key material.
//
// # Caveats
//
//   - A payload returned by ReadFrame is valid only until the next ReadFrame
//     or Close on that stream: copy what must outlive it.
//   - Dial's context bounds only the dial. To abandon a stream, Reset it (for
//     example with context.AfterFunc). Close every stream Dial returns: until
//     then its connection is protected from the connection manager.
//   - With optimistic protocol negotiation the listener sees a stream only
//     once the dialer writes, so the dialer speaks first on every protocol.
//   - Listening on 0.0.0.0 or :: exposes the node to every network the machine
//     is on; the CLI should say so. Tests listen on 127.0.0.1 only.
//   - Limits apply per node. Loopback peers are exempt from the per-address
//     and rate limits (not from the node-wide ones).
//   - A Node constructs a real libp2p host (sockets, goroutines): never start
//     one for an offline command.
//   - go-libp2p logs errors to stderr on its own (for example when a listen
//     address is in use); SetLibp2pLogHandler redirects that, process-wide.
package p2p
