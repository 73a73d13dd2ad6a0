package p2p

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"github.com/medvault/medvault/p2p/frame"
)

// writeChunk is the largest piece a Stream writes under one deadline, so that
// the idle timeout measures progress rather than the size of a Write call.
const writeChunk = 256 << 10

// Stream is one libp2p stream to an authenticated medvault peer, with
// deadlines on every operation and length-prefixed framing.
//
// Read and Write move raw bytes, so a Stream is an io.ReadWriter that package
// share can frame itself; ReadFrame and WriteFrame frame them here (see
// package frame for the layout and buffer rules). Do not mix raw and framed
// reads in the middle of a frame.
//
// Every Read and Write gets a deadline: now plus the idle timeout, but never
// past the stream's end (see SetDeadline). When one expires the stream is
// reset and the call returns an error wrapping ErrTimeout. A framing error
// (type 0x00, truncation, memory limit) resets the stream too: it can no
// longer be read in step. An oversized frame leaves it open for writing, so
// the reader can say why it refuses before it closes (it cannot read on).
//
// One goroutine may read while another writes. Close or Reset may be called
// from any goroutine and unblock both.
type Stream struct {
	ns        network.Stream
	fc        *frame.Conn
	remote    peer.ID
	remoteKey ed25519.PublicKey

	idle atomic.Int64 // time.Duration; 0 means none
	end  atomic.Int64 // UnixNano; 0 means none

	closeOnce sync.Once
	onClose   func() // set once, before the Stream is shared
}

// newStream wraps ns after checking that the remote identity is a medvault
// Ed25519 key bound to the remote peer ID.
func newStream(ns network.Stream, t Timeouts) (*Stream, error) {
	remote := ns.Conn().RemotePeer()
	key, err := PublicKeyFromID(remote)
	if err != nil {
		return nil, err
	}
	// The security handshake bound the connection to a public key; check that
	// the key is the one the peer ID embeds (it always is for Ed25519 IDs; this
	// guards against a transport that reported something else).
	pk := ns.Conn().RemotePublicKey()
	if pk == nil {
		return nil, fmt.Errorf("stream from %s: no authenticated public key: %w", remote, ErrBadPeerID)
	}
	raw, err := pk.Raw()
	if err != nil || !ed25519.PublicKey(raw).Equal(key) {
		return nil, fmt.Errorf("stream from %s: authenticated key does not match peer id: %w", remote, ErrBadPeerID)
	}
	s := &Stream{
		ns:        ns,
		remote:    remote,
		remoteKey: append(ed25519.PublicKey(nil), key...),
	}
	s.idle.Store(int64(t.Idle))
	s.end.Store(time.Now().Add(t.Stream).UnixNano())
	s.fc = frame.NewConn(rawStream{s}, ns.Scope())
	return s, nil
}

// RemotePeer returns the authenticated peer ID of the other side.
func (s *Stream) RemotePeer() peer.ID { return s.remote }

// RemoteKey returns the authenticated Ed25519 public key of the other side
// (a copy): compare it with a grant's audience or issuer.
func (s *Stream) RemoteKey() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), s.remoteKey...)
}

// Protocol returns the protocol negotiated for the stream.
func (s *Stream) Protocol() protocol.ID { return s.ns.Protocol() }

// SetIdleTimeout replaces the idle timeout for later reads and writes; zero or
// negative disables it (the stream's end still applies).
func (s *Stream) SetIdleTimeout(d time.Duration) { s.idle.Store(int64(max(d, 0))) }

// SetDeadline sets the end of the stream's life, replacing the node's
// Timeouts.Stream; reads and writes after it fail with ErrTimeout. The zero
// time removes the end (the idle timeout still applies). It affects calls
// that start after it.
func (s *Stream) SetDeadline(t time.Time) {
	if t.IsZero() {
		s.end.Store(0)
		return
	}
	s.end.Store(t.UnixNano())
}

// Deadline returns the end of the stream's life (see SetDeadline), zero if
// there is none.
func (s *Stream) Deadline() time.Time {
	if end := s.end.Load(); end != 0 {
		return time.Unix(0, end)
	}
	return time.Time{}
}

// deadline returns the deadline for an operation starting now.
func (s *Stream) deadline() time.Time {
	var d time.Time
	if idle := time.Duration(s.idle.Load()); idle > 0 {
		d = time.Now().Add(idle)
	}
	if end := s.end.Load(); end != 0 {
		if e := time.Unix(0, end); d.IsZero() || e.Before(d) {
			d = e
		}
	}
	return d
}

// Read reads raw bytes under the stream's deadlines.
func (s *Stream) Read(p []byte) (int, error) {
	if err := s.ns.SetReadDeadline(s.deadline()); err != nil {
		return 0, s.fail("read", err)
	}
	n, err := s.ns.Read(p)
	if err != nil && err != io.EOF {
		return n, s.fail("read", err)
	}
	return n, err
}

// Write writes raw bytes under the stream's deadlines, in pieces of at most
// 256 KiB with a fresh idle deadline each.
func (s *Stream) Write(p []byte) (int, error) {
	var done int
	for done < len(p) {
		if err := s.ns.SetWriteDeadline(s.deadline()); err != nil {
			return done, s.fail("write", err)
		}
		n, err := s.ns.Write(p[done:min(len(p), done+writeChunk)])
		done += n
		if err != nil {
			return done, s.fail("write", err)
		}
	}
	return done, nil
}

// ReadFrame reads one frame of at most limit payload bytes (capped at
// frame.MaxPayload). payload is valid until the next ReadFrame or Close. It
// returns io.EOF when the peer closed its side between frames. A frame over
// limit (frame.ErrTooLarge) ends reading but leaves the stream open for
// writing, for the caller to answer and then Close; any other error resets
// the stream.
func (s *Stream) ReadFrame(limit int) (typ byte, payload []byte, err error) {
	typ, payload, err = s.fc.ReadFrame(limit)
	// A header over the limit is refused before its payload is read: the
	// limit is the reader's choice, which a peer (another version) may not
	// share, so it may be told why rather than only reset. Every later
	// ReadFrame returns the same error (frame.Conn keeps it).
	if err != nil && err != io.EOF && !errors.Is(err, frame.ErrTooLarge) {
		s.resetFor(err)
	}
	return typ, payload, err
}

// WriteFrame writes one frame. It refuses type 0x00 and payloads over
// frame.MaxPayload without writing; any other error resets the stream.
func (s *Stream) WriteFrame(typ byte, payload []byte) error {
	err := s.fc.WriteFrame(typ, payload)
	if err != nil && !errors.Is(err, frame.ErrBadType) && !errors.Is(err, frame.ErrTooLarge) {
		s.resetFor(err)
	}
	return err
}

// CloseWrite closes the writing side: the peer reads io.EOF after the data
// already written. Reading remains possible.
func (s *Stream) CloseWrite() error {
	if err := s.ns.CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	return nil
}

// Close closes the stream gracefully (data written is delivered) and frees its
// frame buffer.
func (s *Stream) Close() error {
	err := s.ns.Close()
	s.finish()
	if err != nil {
		return fmt.Errorf("close stream: %w", err)
	}
	return nil
}

// Reset aborts the stream in both directions and frees its frame buffer.
func (s *Stream) Reset() error {
	err := s.ns.Reset()
	s.finish()
	return err
}

func (s *Stream) finish() {
	s.closeOnce.Do(func() {
		s.fc.Release()
		if s.onClose != nil {
			s.onClose()
		}
	})
}

// resetFor resets the stream after err, telling the peer why where libp2p
// carries an error code.
func (s *Stream) resetFor(err error) {
	code := network.StreamProtocolViolation
	switch {
	case errors.Is(err, frame.ErrNoMemory):
		code = network.StreamResourceLimitExceeded
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrReset):
		_ = s.ns.Reset()
		return
	}
	_ = s.ns.ResetWithError(code)
}

// fail classifies a transport error. A timeout resets the stream: a peer that
// stopped reading or sending is cut off and its buffers freed.
func (s *Stream) fail(op string, err error) error {
	if isTimeout(err) {
		_ = s.ns.Reset()
		return fmt.Errorf("%s from %s: %w: %w", op, s.remote, ErrTimeout, err)
	}
	if errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) {
		// Optimistic negotiation: the refusal arrives with the first read.
		return fmt.Errorf("%s from %s: %w", op, s.remote, ErrProtocolNotSupported)
	}
	var se *network.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode == network.StreamProtocolNegotiationFailed {
		// Optimistic negotiation: the peer's data arrived where it expected a
		// protocol proposal it could accept, and it gave up on the stream.
		return fmt.Errorf("%s from %s: %w: %w: %w", op, s.remote, ErrProtocolNotSupported, ErrReset, err)
	}
	if se != nil || errors.Is(err, network.ErrReset) {
		return fmt.Errorf("%s from %s: %w: %w", op, s.remote, ErrReset, err)
	}
	return fmt.Errorf("%s from %s: %w", op, s.remote, err)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// rawStream gives frame.Conn the deadline-enforcing Read and Write without
// exposing them as a second io.ReadWriter value with its own identity.
type rawStream struct{ s *Stream }

func (r rawStream) Read(p []byte) (int, error)  { return r.s.Read(p) }
func (r rawStream) Write(p []byte) (int, error) { return r.s.Write(p) }
