package vault

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// ageFile encrypts size bytes of a pattern to a new identity.
func ageFile(t testing.TB, size int) ([]byte, *age.X25519Identity) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	plain := make([]byte, size)
	for i := range plain {
		plain[i] = byte(i * 7)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), id
}

// checkInPieces runs a streamCheck over file cut into pieces of n bytes.
func checkInPieces(file []byte, n int, ids ...age.Identity) error {
	s := &streamCheck{ids: ids}
	for len(file) > 0 {
		k := min(n, len(file))
		if err := s.Write(file[:k]); err != nil {
			return err
		}
		file = file[k:]
	}
	return s.Close()
}

// decryptInPieces runs a streamCheck with output over file cut into
// pieces of n bytes and returns what it wrote.
func decryptInPieces(file []byte, n int, ids ...age.Identity) ([]byte, error) {
	return decryptWithHint(file, n, 0, ids...)
}

// decryptWithHint is decryptInPieces with the streamCheck's size hint.
func decryptWithHint(file []byte, n int, hint int64, ids ...age.Identity) ([]byte, error) {
	var out bytes.Buffer
	s := &streamCheck{ids: ids, out: &out, sizeHint: hint}
	for len(file) > 0 {
		k := min(n, len(file))
		if err := s.Write(file[:k]); err != nil {
			return out.Bytes(), err
		}
		file = file[k:]
	}
	err := s.Close()
	return out.Bytes(), err
}

// ageOutput is what age's reader yields for file, up to its error.
func ageOutput(file []byte, ids ...age.Identity) ([]byte, error) {
	var out bytes.Buffer
	r, err := age.Decrypt(bytes.NewReader(file), ids...)
	if err == nil {
		_, err = io.Copy(&out, r)
	}
	return out.Bytes(), err
}

// With an output, the stream yields what age yields: all of the plaintext
// for a good file; for a bad one, the same verdict and no byte age would
// not release (it may release less: a chunk that ends the file without
// the last mark is held back, where age's reader passes it on before it
// sees the end).
func TestStreamDecryptAgreesWithAge(t *testing.T) {
	for _, size := range []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 200 << 10} {
		file, id := ageFile(t, size)
		want, err := ageOutput(file, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{7, 4096, ageEncChunk - 1, ageEncChunk, ageEncChunk + 1, 256 << 10} {
			got, err := decryptInPieces(file, n, id)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("size %d in pieces of %d: %d bytes out of %d, %v", size, n, len(got), len(want), err)
			}
			// A size hint, right or wrong, changes buffers, not output.
			for _, hint := range []int64{1, int64(size) / 2, int64(size), int64(size) + 1} {
				got, err := decryptWithHint(file, n, hint, id)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("size %d in pieces of %d, hint %d: %d bytes out of %d, %v", size, n, hint, len(got), len(want), err)
				}
			}
		}
		hdrLen := bytes.Index(file, []byte("\n--- ")) + 1
		hdrLen += bytes.IndexByte(file[hdrLen:], '\n') + 1
		for _, pos := range []int{hdrLen + 20, hdrLen + 16 + ageEncChunk - 1, hdrLen + 16 + ageEncChunk, hdrLen + 16 + ageEncChunk + 5, len(file) - 1} {
			if pos >= len(file) {
				continue
			}
			flipped := bytes.Clone(file)
			flipped[pos] ^= 1
			for name, bad := range map[string][]byte{"flipped": flipped, "cut": file[:pos]} {
				ageOut, ageErr := ageOutput(bad, id)
				for _, n := range []int{4096, 256 << 10} {
					for _, hint := range []int64{0, 1} {
						got, err := decryptWithHint(bad, n, hint, id)
						if (err == nil) != (ageErr == nil) || !bytes.HasPrefix(ageOut, got) {
							t.Errorf("size %d, %s at %d, pieces of %d, hint %d: %d bytes out, %v; age: %d bytes, %v", size, name, pos, n, hint, len(got), err, len(ageOut), ageErr)
						}
					}
				}
			}
		}
	}
}

type failingWriter struct{ after int }

var errDiskFull = errors.New("no space left on device")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		return 0, errDiskFull
	}
	w.after -= len(p)
	return len(p), nil
}

// A destination that fails is reported as itself, never as a record that
// does not decrypt.
func TestStreamDecryptWriteError(t *testing.T) {
	file, id := ageFile(t, 200<<10)
	s := &streamCheck{ids: []age.Identity{id}, out: &failingWriter{after: 64 << 10}}
	err := s.Write(file)
	if err == nil {
		err = s.Close()
	}
	var we *writeError
	if !errors.As(err, &we) || we.err != errDiskFull || errors.Is(err, ErrDamaged) {
		t.Fatalf("got %v", err)
	}
}

// halfWriter breaks io.Writer's contract: it takes half and says nothing.
type halfWriter struct{ n int }

func (w *halfWriter) Write(p []byte) (int, error) { w.n += len(p) / 2; return len(p) / 2, nil }

// A destination that takes less than it is given fails the read; it does
// not end it short in silence.
func TestStreamDecryptShortWrite(t *testing.T) {
	file, id := ageFile(t, 100<<10)
	s := &streamCheck{ids: []age.Identity{id}, out: &halfWriter{}}
	err := s.Write(file)
	if err == nil {
		err = s.Close()
	}
	var we *writeError
	if !errors.As(err, &we) || !errors.Is(we.err, io.ErrShortWrite) {
		t.Fatalf("got %v", err)
	}
}

// A header past the size limit is a header failure (headerErr set: Get
// reports ErrDecrypt), like any other header that cannot be used.
func TestStreamCheckLongHeaderIsHeaderError(t *testing.T) {
	s := &streamCheck{}
	s.Write(bytes.Repeat([]byte("-> X25519 aaaa\n"), maxAgeHeader/8))
	if s.headerErr == nil {
		t.Fatal("no header error recorded")
	}
}

func ageAccepts(file []byte, ids ...age.Identity) bool {
	r, err := age.Decrypt(bytes.NewReader(file), ids...)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	return err == nil
}

// The check accepts what age accepts and refuses what age refuses, for
// sizes around the 64 KiB chunk boundary, cut into pieces of any size,
// with bytes flipped, cut off or added anywhere.
func TestStreamCheckAgreesWithAge(t *testing.T) {
	other, _ := age.GenerateX25519Identity()
	for _, size := range []int{0, 1, 1000, 64<<10 - 1, 64 << 10, 64<<10 + 1, 128 << 10, 200 << 10} {
		file, id := ageFile(t, size)
		for _, n := range []int{1, 7, 4096, ageEncChunk, ageEncChunk + 1, 1 << 20} {
			if n == 1 && size > 1000 {
				continue
			}
			if err := checkInPieces(file, n, id); err != nil {
				t.Fatalf("size %d in pieces of %d: %v", size, n, err)
			}
		}
		if err := checkInPieces(file, 4096, other); !errors.Is(err, ErrDamaged) {
			t.Fatalf("size %d for another identity: %v", size, err)
		}
		hdrLen := bytes.Index(file, []byte("\n--- ")) + 1
		hdrLen += bytes.IndexByte(file[hdrLen:], '\n') + 1
		positions := []int{0, 10, hdrLen - 2, hdrLen, hdrLen + 15, hdrLen + 16, hdrLen + 20, len(file) - 17, len(file) - 16, len(file) - 1}
		if size > 64<<10 {
			positions = append(positions, hdrLen+16+ageEncChunk-1, hdrLen+16+ageEncChunk)
		}
		for _, pos := range positions {
			if pos < 0 || pos >= len(file) {
				continue
			}
			flipped := bytes.Clone(file)
			flipped[pos] ^= 0x20
			short := file[:pos]
			for name, bad := range map[string][]byte{"flipped": flipped, "cut": short} {
				want := ageAccepts(bad, id)
				err := checkInPieces(bad, 4096, id)
				if (err == nil) != want {
					t.Errorf("size %d, %s at %d: check says %v, age accepts: %v", size, name, pos, err, want)
				}
				if err != nil && !errors.Is(err, ErrDamaged) {
					t.Errorf("size %d, %s at %d: %v is not ErrDamaged", size, name, pos, err)
				}
			}
		}
		longer := append(bytes.Clone(file), 0)
		if err := checkInPieces(longer, 4096, id); err == nil || ageAccepts(longer, id) {
			t.Errorf("size %d with a byte added: check %v", size, err)
		}
	}
}

func TestStreamCheckBoundsHeader(t *testing.T) {
	s := &streamCheck{}
	junk := bytes.Repeat([]byte("-> X25519 aaaa\n"), maxAgeHeader/8)
	if err := s.Write(junk); !errors.Is(err, ErrDamaged) {
		t.Fatalf("a header without end: %v", err)
	}
	if len(s.head) > 2*maxAgeHeader {
		t.Fatalf("kept %d header bytes", len(s.head))
	}
}

// FuzzStreamCheck compares the check's verdict, and the decryption's verdict
// and output, with age's for files changed at random: they must agree.
func FuzzStreamCheck(f *testing.F) {
	f.Add(uint32(100), uint32(0), byte(1), uint16(4096), false)
	f.Add(uint32(70000), uint32(65600), byte(0x80), uint16(1), false)
	f.Add(uint32(65536), uint32(65560), byte(0), uint16(65535), true)
	f.Add(uint32(0), uint32(5), byte(0), uint16(3), true)
	id, _ := age.GenerateX25519Identity()
	files := map[uint32][]byte{}
	f.Fuzz(func(t *testing.T, size, pos uint32, flip byte, piece uint16, cut bool) {
		size %= 200 << 10
		file, ok := files[size]
		if !ok {
			var out bytes.Buffer
			w, _ := age.Encrypt(&out, id.Recipient())
			w.Write(make([]byte, size))
			w.Close()
			file = out.Bytes()
			if len(files) < 64 {
				files[size] = file
			}
		}
		file = bytes.Clone(file)
		pos %= uint32(len(file))
		if cut {
			file = file[:pos]
		} else {
			file[pos] ^= flip
		}
		err := checkInPieces(file, int(piece)+1, id)
		want := ageAccepts(file, id)
		if (err == nil) != want {
			t.Fatalf("check says %v, age accepts: %v", err, want)
		}
		// The size hint, right or wrong, must not change the outcome.
		got, err := decryptWithHint(file, int(piece)+1, int64(pos%(70<<10)), id)
		ageOut, _ := ageOutput(file, id)
		if (err == nil) != want || !bytes.HasPrefix(ageOut, got) || (want && len(got) != len(ageOut)) {
			t.Fatalf("decrypt says %v with %d bytes out; age accepts: %v with %d", err, len(got), want, len(ageOut))
		}
	})
}

// Only an empty file may end with an empty chunk: a peer holding the file
// key can write one after a full chunk, and age refuses it.
func TestStreamCheckEmptyLastChunk(t *testing.T) {
	file, id := ageFile(t, 64<<10)
	hdrLen := bytes.Index(file, []byte("\n--- ")) + 1
	hdrLen += bytes.IndexByte(file[hdrLen:], '\n') + 1
	fileKey, err := age.DecryptHeader(file[:hdrLen], id)
	if err != nil {
		t.Fatal(err)
	}
	seal := chunkSealer(fileKey, file[hdrLen:hdrLen+ageNonceSize])
	plain := make([]byte, 64<<10)
	for i := range plain {
		plain[i] = byte(i * 7)
	}
	// Rebuilt as age wrote it: the same bytes, so the sealing is right.
	if again := append(bytes.Clone(file[:hdrLen+ageNonceSize]), seal(0, true, plain)...); !bytes.Equal(again, file) {
		t.Fatal("rebuilt file differs from age's")
	}
	bad := append(bytes.Clone(file[:hdrLen+ageNonceSize]), seal(0, false, plain)...)
	bad = append(bad, seal(1, true, nil)...)
	if ageAccepts(bad, id) {
		t.Fatal("age accepts an empty last chunk after a full one")
	}
	if err := checkInPieces(bad, 4096, id); !errors.Is(err, ErrDamaged) {
		t.Fatalf("an empty last chunk after a full one: %v", err)
	}
	good := append(bytes.Clone(file[:hdrLen+ageNonceSize]), seal(0, false, plain)...)
	good = append(good, seal(1, true, []byte("x"))...)
	if !ageAccepts(good, id) {
		t.Fatal("age refuses a one-byte last chunk")
	}
	if err := checkInPieces(good, 4096, id); err != nil {
		t.Fatalf("a one-byte last chunk: %v", err)
	}
}

// A header longer than maxAgeHeader is refused even when it is valid and
// arrives in one piece: a sender could otherwise make each fetch unwrap
// thousands of stanzas.
func TestStreamCheckRefusesLongHeader(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	rs := []age.Recipient{id.Recipient()}
	for range 800 {
		other, _ := age.GenerateX25519Identity()
		rs = append(rs, other.Recipient())
	}
	var out bytes.Buffer
	w, _ := age.Encrypt(&out, rs...)
	w.Write([]byte("x"))
	w.Close()
	if !ageAccepts(out.Bytes(), id) {
		t.Fatal("age refuses the file")
	}
	if hdr, _ := age.ExtractHeader(bytes.NewReader(out.Bytes())); len(hdr) <= maxAgeHeader {
		t.Fatalf("header of %d bytes is not over the limit", len(hdr))
	}
	if err := checkInPieces(out.Bytes(), 1<<20, id); !errors.Is(err, ErrDamaged) {
		t.Fatalf("a %d-byte file with a long header: %v", out.Len(), err)
	}
}

// chunkSealer seals age payload chunks (C2SP age, "Payload") under the key
// fileKey and nonce make, as a sender holding the file key may: chunk i,
// marked last or not.
func chunkSealer(fileKey, nonce []byte) func(i uint64, last bool, plain []byte) []byte {
	key, _ := hkdf.Key(sha256.New, fileKey, nonce, "payload", chacha20poly1305.KeySize)
	aead, _ := chacha20poly1305.New(key)
	return func(i uint64, last bool, plain []byte) []byte {
		var n [chacha20poly1305.NonceSize]byte
		binary.BigEndian.PutUint64(n[3:11], i)
		if last {
			n[11] = 1
		}
		return aead.Seal(nil, n[:], plain, nil)
	}
}
