package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// leafElements returns the file offsets of the leaf elements whose key is
// key, reading bbolt's page layout (see checkPages) from the file.
func leafElements(t *testing.T, file []byte, pageSize int, key []byte) []int {
	t.Helper()
	var out []int
	for p := 2; (p+1)*pageSize <= len(file); p++ {
		pg := file[p*pageSize:]
		if binary.LittleEndian.Uint64(pg) != uint64(p) || binary.LittleEndian.Uint16(pg[8:]) != leafPage {
			continue
		}
		for i := range int(binary.LittleEndian.Uint16(pg[10:])) {
			e := pageHeader + elemSize*i
			if e+elemSize > pageSize {
				break
			}
			pos, ks := int(binary.LittleEndian.Uint32(pg[e+4:])), int(binary.LittleEndian.Uint32(pg[e+8:]))
			if e+pos+ks <= pageSize && bytes.Equal(pg[e+pos:e+pos+ks], key) {
				out = append(out, p*pageSize+e)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no leaf holds key %x", key)
	}
	return out
}

// One byte changed in a page header or a leaf element is damage that Open
// or a full verify reports (ErrTampered, exit 13): it made verify fault on
// addresses past bbolt's map (SIGBUS, the process gone), panic, or follow
// an overflow count of 2^31 pages until memory ran out (a review found
// about one flipped byte in eleven did).
func TestDamagedPageReported(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   func(elem int) int // offset of the byte to change, from an element's
		xor  byte
		key  func(record.ID) []byte
	}{
		{"page id", func(e int) int { return e - e%4096 + 1 }, 0x01, func(record.ID) []byte { return bucketRecords }},
		{"overflow 2^31", func(e int) int { return e - e%4096 + 15 }, 0x80, nil},
		{"overflow 2^26", func(e int) int { return e - e%4096 + 15 }, 0x04, nil},
		{"page flags", func(e int) int { return e - e%4096 + 8 }, 0x10, nil},
		{"value size", func(e int) int { return e + 15 }, 0x04, nil},
		{"key position", func(e int) int { return e + 7 }, 0x04, nil},
		{"bucket value size", func(e int) int { return e + 15 }, 0x04, func(record.ID) []byte { return bucketRecords }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVault(t)
			m, err := v.Add(newRandReader(3*chunkSize+100), NewRecord{Category: record.Imaging})
			if err != nil {
				t.Fatal(err)
			}
			file, pageSize := closedFile(t, v)
			dir, id := v.dir, v.id
			key := chunkKey(m.ID, 0)
			if tc.key != nil {
				key = tc.key(m.ID)
			}
			for _, e := range leafElements(t, file, pageSize, key) {
				file[tc.at(e)] ^= tc.xor
			}
			wantDamageReported(t, dir, id, file, true)
		})
	}
}

// checkPages reads a file that may be anything: whatever its bytes, it
// returns (no panic, no endless walk, memory bounded by the file).
func FuzzCheckPages(f *testing.F) {
	v := newTestVault(f)
	if _, err := v.Add(newRandReader(2*chunkSize), NewRecord{Category: record.Imaging}); err != nil {
		f.Fatal(err)
	}
	v.Close()
	file, err := os.ReadFile(filepath.Join(v.dir, DBFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint32(0), []byte{}, uint16(0))
	f.Add(uint32(2*4096+15), []byte{0x80}, uint16(0))
	f.Add(uint32(3*4096+20), []byte{0xff, 0xff}, uint16(1))
	f.Add(uint32(4096+40), []byte{0x01}, uint16(3))
	f.Fuzz(func(t *testing.T, at uint32, xor []byte, cut uint16) {
		b := bytes.Clone(file)
		for i, x := range xor {
			if j := int(at) + i; j < len(b) {
				b[j] ^= x
			}
		}
		b = b[:max(0, len(b)-int(cut)*4096)]
		path := filepath.Join(t.TempDir(), "f.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		// The pages the meta page would claim: the whole file, as if
		// nothing were cut, so that cuts test reads past its end.
		_ = checkPagesIn(fh, 4096, uint64(len(file)/4096))
	})
}

// An incremental verify (no page walk before it) on a file whose ledger
// entries were damaged after the last verify reports the damage: the
// ledger reads its entries on goroutines of its own, where a fault on an
// element pointing past bbolt's map ended the process (SIGBUS; a review
// found it after the page walk went in).
func TestIncrementalVerifyDamagedLedgerPage(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Verify(true); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := v.Add(bytes.NewReader([]byte("x")), NewRecord{Category: record.Notes}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := v.LedgerSize()
	if err != nil {
		t.Fatal(err)
	}
	file, pageSize := closedFile(t, v)
	dir, id := v.dir, v.id
	// The last entries, under their index as the ledger keys them (uint64
	// big-endian): their elements' value sizes grow by 64 MiB. Stored
	// hashes and checkpoints share those keys; the sealed entries are the
	// values of 100-300 bytes that are not whole hashes.
	flipped := 0
	for i := n - 3; i < n; i++ {
		for _, e := range leafElements(t, file, pageSize, binary.BigEndian.AppendUint64(nil, uint64(i))) {
			if vs := binary.LittleEndian.Uint32(file[e+12:]); vs > 100 && vs < 300 && vs%32 != 0 {
				file[e+15] ^= 0x04
				flipped++
			}
		}
	}
	if flipped == 0 {
		t.Fatal("found no ledger entry to damage")
	}
	wantDamageReported(t, dir, id, file, false)
}

// closedFile closes v and returns its file's bytes and bbolt's page size.
func closedFile(t *testing.T, v *Vault) ([]byte, int) {
	t.Helper()
	pageSize := v.db.Info().PageSize
	v.Close()
	file, err := os.ReadFile(filepath.Join(v.dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	return file, pageSize
}

// wantDamageReported writes file as the vault file in dir, and wants Open,
// or else a verify (full or incremental), to report an integrity failure.
func wantDamageReported(t *testing.T, dir string, id *identity.Identity, file []byte, full bool) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, DBFile), file, 0o600); err != nil {
		t.Fatal(err)
	}
	nv, err := Open(dir, id, Options{})
	if err != nil {
		if !errors.Is(err, ErrTampered) {
			t.Fatalf("open: %v, want an integrity failure", err)
		}
		return
	}
	defer nv.Close()
	if rep, err := nv.Verify(full); !errors.Is(err, ErrTampered) {
		t.Fatalf("verify (full %v): %v %v, want an integrity failure", full, err, rep.Problems)
	}
}
