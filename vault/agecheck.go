package vault

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// ageCheck runs a streamCheck in a goroutine of its own, so the receiving
// side checks every 64 KiB payload chunk while the chunks are written,
// rather than after.
//
// feed gives it pieces of the file, in order, and returns once they are
// queued; wait must follow each feed, and returns once the pieces were
// checked, so their buffers may be reused. end says the file is complete
// and returns the verdict.
type ageCheck struct {
	pieces   chan [][]byte
	consumed chan struct{}
	done     chan error
	failed   atomic.Bool // set as soon as the file is known to be bad
	plain    int64       // plaintext bytes the file held, once end returned nil
}

// newAgeCheck starts checking an age file for the owner's identities. prefix,
// if not nil, is checked first: the stored start of a resumed record, which
// arrived over an earlier connection. If that start fails, the verdict is
// ErrTampered, not ErrDamaged: it passed the check when it arrived, so the
// vault's copy changed since, and the patient is not to blame.
func (v *Vault) newAgeCheck(prefix *shortTxReader) *ageCheck {
	c := &ageCheck{pieces: make(chan [][]byte, 1), consumed: make(chan struct{}), done: make(chan error, 1)}
	s := &streamCheck{ids: v.identities()}
	go func() {
		var err error
		for prefix != nil && err == nil {
			var b []byte
			if b, err = prefix.chunk(); err == io.EOF {
				err = nil
				break
			}
			if err == nil {
				err = s.Write(b)
			}
		}
		if err != nil {
			err = fmt.Errorf("%w: the stored start of a resumed record: %v", ErrTampered, err)
			c.failed.Store(true)
		}
		for pieces := range c.pieces {
			for _, b := range pieces {
				if err != nil {
					break
				}
				if err = s.Write(b); err != nil {
					c.failed.Store(true)
				}
			}
			c.consumed <- struct{}{}
		}
		if err == nil {
			err = s.Close()
		}
		c.plain = s.plainN
		c.done <- err
	}()
	return c
}

// feed queues pieces; the caller keeps them unchanged until wait returns.
func (c *ageCheck) feed(pieces [][]byte) { c.pieces <- pieces }

func (c *ageCheck) wait() { <-c.consumed }

// end says the file is complete and returns whether it decrypted.
func (c *ageCheck) end() error {
	close(c.pieces)
	return <-c.done
}

// endEarly is end for a file cut short: it returns an error only if the
// bytes that arrived fail (every complete chunk is checked), not because
// the file ends early.
func (c *ageCheck) endEarly() error {
	err := c.end()
	if !c.failed.Load() {
		return nil
	}
	return err
}

// streamCheck decrypts an age v1 file (C2SP age) written to it in pieces of
// any size: it unwraps the file key from the header with ids (age checks
// the header's MAC), then authenticates every payload chunk with
// ChaCha20-Poly1305 under the key age derives, at its position, and that
// the file ends with the chunk marked last. With out set it writes each
// chunk's plaintext there once the chunk authenticates (Get); without, the
// plaintext is wiped and only the verdict counts (the check of a received
// record).
//
// It is age's payload decryption without a reader in between: age's reader
// allocates 64 KiB per chunk and copies every byte three times, which made
// the receiving check cost more than the transfer's other work together,
// and Get slower than age -d. A chunk that lies whole in a piece, with more
// bytes after it, is opened where it lies, without a copy. The tests
// compare its verdicts and output with age.Decrypt's.
type streamCheck struct {
	ids       []age.Identity
	out       io.Writer // receives plaintext when set
	head      []byte    // header and nonce bytes, until the payload starts
	aead      cipher.AEAD
	buf       []byte // payload bytes of a chunk not yet opened: at most one chunk
	plain     []byte // plaintext of the chunk last opened
	chunks    uint64 // chunks opened
	plainN    int64  // plaintext bytes of the chunks opened
	headerErr error  // why the header failed, if it did
	err       error
	// sizeHint, when above zero, is the plaintext size the caller
	// expects: a smaller record gets buffers of its size instead of a
	// whole chunk's (verify decrypts every imported resource, most under
	// 4 KiB, and two 64 KiB buffers zeroed and wiped for each were most
	// of its time). A stream longer than the hint still works: the
	// buffers grow to a chunk.
	sizeHint int64
}

const (
	ageChunk     = 64 << 10
	ageEncChunk  = ageChunk + chacha20poly1305.Overhead
	ageNonceSize = 16
	// maxAgeHeader bounds the header a peer may send: one X25519 stanza
	// is under 200 bytes.
	maxAgeHeader = 64 << 10
)

func (s *streamCheck) Write(p []byte) error {
	if s.err != nil {
		return s.err
	}
	if s.aead == nil {
		s.err = s.header(p)
	} else {
		s.err = s.payload(p)
	}
	return s.err
}

// header collects the header and the payload nonce; once both are there
// it sets the payload key and moves what follows into buf.
func (s *streamCheck) header(p []byte) error {
	s.head = append(s.head, p...)
	footer := bytes.Index(s.head, []byte("\n--- "))
	end := -1
	if footer >= 0 {
		if i := bytes.IndexByte(s.head[footer+1:], '\n'); i >= 0 {
			end = footer + 1 + i + 1
		}
	}
	if end < 0 {
		if len(s.head) > maxAgeHeader {
			return s.headerTooLong()
		}
		return nil
	}
	if len(s.head) < end+ageNonceSize {
		return nil
	}
	if end > maxAgeHeader {
		return s.headerTooLong()
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(s.head[:end]))
	if err != nil || !bytes.Equal(hdr, s.head[:end]) {
		s.headerErr = errors.New("the age header does not parse")
		return fmt.Errorf("%w: %v", ErrDamaged, s.headerErr)
	}
	fileKey, err := age.DecryptHeader(hdr, s.ids...)
	if err != nil {
		s.headerErr = err
		return fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	defer clear(fileKey)
	key, err := hkdf.Key(sha256.New, fileKey, s.head[end:end+ageNonceSize], "payload", chacha20poly1305.KeySize)
	if err != nil {
		return err
	}
	defer clear(key)
	if s.aead, err = chacha20poly1305.New(key); err != nil {
		return err
	}
	n := ageChunk
	if s.sizeHint > 0 && s.sizeHint < ageChunk {
		n = int(s.sizeHint)
	}
	s.buf = make([]byte, 0, n+chacha20poly1305.Overhead)
	s.plain = make([]byte, 0, n)
	rest := s.head[end+ageNonceSize:]
	s.head = nil
	return s.payload(rest)
}

func (s *streamCheck) headerTooLong() error {
	s.headerErr = fmt.Errorf("the age header is longer than %d bytes", maxAgeHeader)
	return fmt.Errorf("%w: %v", ErrDamaged, s.headerErr)
}

// payload opens each full chunk once a byte after it shows it is not the
// last; the last one is opened by Close. p is only read: it may be a
// read-only view of the vault's file.
func (s *streamCheck) payload(p []byte) error {
	for len(p) > 0 {
		if len(s.buf) == ageEncChunk {
			// More follows, so the buffered chunk is not the last.
			if err := s.open(s.buf, false); err != nil {
				return err
			}
			s.buf = s.buf[:0]
		}
		if len(s.buf) == 0 && len(p) > ageEncChunk {
			if err := s.open(p[:ageEncChunk], false); err != nil {
				return err
			}
			p = p[ageEncChunk:]
			continue
		}
		if len(s.buf)+len(p) > cap(s.buf) && cap(s.buf) < ageEncChunk {
			s.buf = slices.Grow(s.buf, min(ageEncChunk, len(s.buf)+len(p))-len(s.buf))
		}
		n := copy(s.buf[len(s.buf):min(cap(s.buf), ageEncChunk)], p)
		s.buf = s.buf[:len(s.buf)+n]
		p = p[n:]
	}
	return nil
}

// open authenticates and decrypts chunk c into s.plain, then hands the
// plaintext to out or wipes it.
func (s *streamCheck) open(c []byte, last bool) error {
	nonce := chunkNonce(s.chunks, last)
	if need := len(c) - chacha20poly1305.Overhead; need > cap(s.plain) {
		// Past the size hint: a buffer Close can wipe, not one Open
		// would allocate on its own.
		clear(s.plain[:cap(s.plain)])
		s.plain = make([]byte, 0, max(need, ageChunk))
	}
	plain, err := s.aead.Open(s.plain[:0], nonce[:], c, nil)
	if err != nil {
		what := "payload chunk %d does not authenticate"
		if last {
			what = "payload chunk %d does not authenticate as the last one"
		}
		return fmt.Errorf("%w: "+what, ErrDamaged, s.chunks)
	}
	s.chunks++
	s.plainN += int64(len(plain))
	if s.out == nil {
		clear(plain)
		return nil
	}
	n, err := s.out.Write(plain)
	if err == nil && n != len(plain) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return &writeError{err}
	}
	return nil
}

// Close checks the last chunk: the file must end with it.
func (s *streamCheck) Close() error {
	defer clear(s.plain[:cap(s.plain)])
	if s.err != nil {
		return s.err
	}
	switch {
	case s.aead == nil:
		s.headerErr = errors.New("the file ends inside its age header")
		s.err = fmt.Errorf("%w: %v", ErrDamaged, s.headerErr)
	case len(s.buf) < chacha20poly1305.Overhead:
		s.err = fmt.Errorf("%w: the file ends inside a payload chunk", ErrDamaged)
	case len(s.buf) == chacha20poly1305.Overhead && s.chunks > 0:
		// Only an empty file has an empty last chunk.
		s.err = fmt.Errorf("%w: the last payload chunk is empty", ErrDamaged)
	default:
		s.err = s.open(s.buf, true)
	}
	if s.err == nil {
		s.err = errors.New("stream check already closed")
		return nil
	}
	return s.err
}
