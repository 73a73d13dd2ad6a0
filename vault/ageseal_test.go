package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"filippo.io/age"

	"github.com/medvault/medvault/vault/record"
)

// pieceSink is a sealSink that cuts what it takes into pieces of a fixed
// size, as the chunkWriter does.
type pieceSink struct {
	size   int
	pieces [][]byte
}

func (s *pieceSink) space() []byte {
	if n := len(s.pieces); n == 0 || len(s.pieces[n-1]) == s.size {
		s.pieces = append(s.pieces, make([]byte, 0, s.size))
	}
	p := s.pieces[len(s.pieces)-1]
	return p[len(p):cap(p)]
}

func (s *pieceSink) filled(k int) error {
	p := &s.pieces[len(s.pieces)-1]
	*p = (*p)[:len(*p)+k]
	return nil
}

func (s *pieceSink) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		k := copy(s.space(), b)
		s.filled(k)
		b = b[k:]
	}
	return n, nil
}

func (s *pieceSink) bytes() []byte { return bytes.Join(s.pieces, nil) }

// sealRoundTrip encrypts plain, read through wrap, into pieces of the
// given size, checks the age file's length and decrypts it with age.
func sealRoundTrip(t testing.TB, plain []byte, piece int, wrap func(io.Reader) io.Reader) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	sink := &pieceSink{size: piece}
	n, err := encryptInto(sink, wrap(bytes.NewReader(plain)), id.Recipient())
	if err != nil || n != int64(len(plain)) {
		t.Fatalf("%d bytes in pieces of %d: encrypted %d, %v", len(plain), piece, n, err)
	}
	file := sink.bytes()
	hdr, err := age.ExtractHeader(bytes.NewReader(file))
	if err != nil {
		t.Fatalf("%d bytes: %v", len(plain), err)
	}
	chunks := max(1, (len(plain)+ageChunk-1)/ageChunk)
	if want := len(hdr) + ageNonceSize + len(plain) + 16*chunks; len(file) != want {
		t.Fatalf("%d bytes: age file of %d bytes, want %d", len(plain), len(file), want)
	}
	r, err := age.Decrypt(bytes.NewReader(file), id)
	if err != nil {
		t.Fatalf("%d bytes: age cannot decrypt: %v", len(plain), err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("%d bytes in pieces of %d: age decrypts %d different bytes (%v)", len(plain), piece, len(got), err)
	}
}

// encryptInto writes what age.Decrypt reads back, at every size around the
// chunk and block boundaries, whatever the reads return at a time and
// wherever the sink's pieces end.
func TestEncryptIntoIsAge(t *testing.T) {
	all, _ := io.ReadAll(newRandReader(3*sealBlock + 3*ageChunk))
	sizes := []int{0, 1, ageChunk - 1, ageChunk, ageChunk + 1, 2 * ageChunk,
		sealBlock - 1, sealBlock, sealBlock + 1, sealBlock + ageChunk, 2*sealBlock + 12345, len(all)}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for _, piece := range []int{chunkSize, ageEncChunk, ageEncChunk + 1, 1000} {
		for _, n := range sizes {
			for _, wrap := range readers {
				sealRoundTrip(t, all[:n], piece, wrap)
			}
		}
	}
	sealRoundTrip(t, all[:ageChunk+3], chunkSize, iotest.OneByteReader)
}

// A source that fails is reported as it is, not as an end: only io.EOF
// itself ends the input (as for io.Copy and age's writer). A stream cut
// with io.ErrUnexpectedEOF, as the node's control socket closes a client's
// stdin, was stored as a whole record.
func TestEncryptIntoReadError(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	for _, fail := range []error{errors.New("disk read error"), io.ErrUnexpectedEOF, fmt.Errorf("stdin: %w", io.EOF)} {
		for _, n := range []int{0, 100000, sealBlock, sealBlock + 1, sealBlock + 100} {
			src := io.MultiReader(bytes.NewReader(make([]byte, n)), iotest.ErrReader(fail))
			if _, err := encryptInto(&pieceSink{size: chunkSize}, src, id.Recipient()); err != fail {
				t.Errorf("%d bytes, then %q: %v", n, fail, err)
			}
		}
	}
	v := newTestVault(t)
	src := io.MultiReader(bytes.NewReader(make([]byte, 300000)), iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, err := v.Add(src, NewRecord{Category: record.Imaging}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("add of a stream cut short: %v", err)
	}
	if ms, err := v.List(Filter{}); err != nil || len(ms) != 0 {
		t.Errorf("after a cut stream: %d records, %v", len(ms), err)
	}
}

// FuzzEncryptInto checks encryptInto against age.Decrypt for any size (up
// to three blocks, so that inputs stay small for the fuzzer: the
// plaintext repeats seed), sink piece size and reads.
func FuzzEncryptInto(f *testing.F) {
	f.Add([]byte("medvault"), uint32(8), uint32(1000), false)
	f.Add([]byte{0}, uint32(ageChunk), uint32(ageEncChunk), true)
	f.Add([]byte("x"), uint32(sealBlock+1), uint32(17), false)
	f.Fuzz(func(t *testing.T, seed []byte, size, piece uint32, half bool) {
		if len(seed) == 0 {
			seed = []byte{0}
		}
		n := int(size % (3*sealBlock + 2))
		plain := bytes.Repeat(seed, n/len(seed)+1)[:n]
		wrap := func(r io.Reader) io.Reader { return r }
		if half {
			wrap = iotest.HalfReader
		}
		sealRoundTrip(t, plain, 1+int(piece%(2*chunkSize)), wrap)
	})
}
