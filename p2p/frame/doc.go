// Package frame implements medvault's wire framing: length-prefixed frames
// with hard size limits over any io.ReadWriter.
//
// A frame is one type byte, a four-byte big-endian payload length and the
// payload:
//
//	+------+----------------+-----------------+
//	| type | length (u32BE) | payload         |
//	+------+----------------+-----------------+
//	  1 B       4 B           length bytes
//
// The layout is specified in ../PROTOCOL.md, with test vectors that this
// package's tests check. Package p2p uses it on libp2p streams; package share
// can use it directly on a net.Pipe in tests. The package imports only the
// standard library, so importing it never pulls in libp2p.
//
// # Invariants
//
//   - Type 0x00 is reserved and never valid on the wire. The meaning of every
//     other type belongs to the protocol that runs over the frames.
//   - No payload exceeds MaxPayload (1 MiB + 4 KiB). A reader also enforces the
//     limit its caller passes for each read, and checks it against the header
//     before reading or allocating anything: an announced length costs nothing
//     until it is accepted.
//   - The encoding is canonical: a frame has exactly one byte representation,
//     so ParseFrame followed by AppendFrame reproduces the input.
//   - Any read or write failure is sticky. After a framing error the stream is
//     out of step with the peer and must be abandoned (p2p resets it).
//
// # Memory
//
// A Conn reuses one read buffer for all frames, so a reader of 1 MiB data
// chunks allocates about 1 MiB once, not once per frame. The cost of that
// reuse is that a payload is valid only until the next ReadFrame: copy what
// must outlive it. A Budget (libp2p's stream scope satisfies it) lets the
// buffer count against a resource manager, so the memory of many concurrent
// streams stays bounded. Release zeroes the buffer and returns its memory.
//
// # Caveats
//
// The package does not set deadlines; the transport does (p2p sets an idle
// timeout and a lifetime on every stream). It does not authenticate or encrypt
// anything either: on libp2p that is done below it by Noise, TLS or QUIC.
package frame
