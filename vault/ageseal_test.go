package vault

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"filippo.io/age"
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

// A source that fails is reported as it is, not as an end.
func TestEncryptIntoReadError(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	broken := errors.New("disk read error")
	src := io.MultiReader(bytes.NewReader(make([]byte, sealBlock+100)), iotest.ErrReader(broken))
	if _, err := encryptInto(&pieceSink{size: chunkSize}, src, id.Recipient()); !errors.Is(err, broken) {
		t.Fatalf("a failing source: %v", err)
	}
}

func FuzzEncryptInto(f *testing.F) {
	f.Add([]byte("medvault"), uint32(1000), false)
	f.Add(make([]byte, ageChunk), uint32(ageEncChunk), true)
	f.Add(make([]byte, 2*ageChunk+1), uint32(17), false)
	f.Fuzz(func(t *testing.T, plain []byte, piece uint32, half bool) {
		wrap := func(r io.Reader) io.Reader { return r }
		if half {
			wrap = iotest.HalfReader
		}
		sealRoundTrip(t, plain, 1+int(piece%(2*chunkSize)), wrap)
	})
}
