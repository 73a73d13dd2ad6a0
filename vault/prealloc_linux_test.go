package vault

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// fileAndMark returns the vault file's size, the bytes allocated to it,
// and bbolt's high-water mark.
func fileAndMark(t *testing.T, v *Vault) (size, allocated, used int64) {
	t.Helper()
	st, err := os.Stat(v.db.Path())
	if err != nil {
		t.Fatal(err)
	}
	v.db.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil })
	return st.Size(), st.Sys().(*syscall.Stat_t).Blocks * 512, used
}

func skipWithoutPrealloc(t *testing.T, v *Vault) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(v.dir, "probe"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := fallocate(f, 0, 4096); errors.Is(err, errNoPrealloc) {
		t.Skip("the test directory's file system cannot allocate blocks ahead (fallocate)")
	}
}

// reserve allocates blocks for what the next commits need, a step at most,
// and nothing while enough is there.
func TestReserveAllocatesAhead(t *testing.T) {
	v := newTestVault(t)
	skipWithoutPrealloc(t, v)
	_, before, used := fileAndMark(t, v)
	to, err := v.reserve(40<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := used + 40<<20 + 40<<20/64 + 1<<20; to != want {
		t.Errorf("after reserving 40 MiB: blocks to %d, want %d", to, want)
	}
	size, allocated, _ := fileAndMark(t, v)
	if size < to || allocated-before < to-used {
		t.Errorf("after reserving to %d: file of %d bytes, %d more allocated, want %d", to, size, allocated-before, to-used)
	}
	if again, err := v.reserve(40<<20, to); err != nil || again != to {
		t.Errorf("reserving what is there: to %d, %v", again, err)
	}
	if _, again, _ := fileAndMark(t, v); again != allocated {
		t.Errorf("reserving what is there allocated %d bytes more", again-allocated)
	}
	// A large record gets a step, not its whole size.
	if to, err = v.reserve(1<<40, 0); err != nil || to != used+preallocStep {
		t.Errorf("reserving 1 TiB: blocks to %d past the mark, want a step (%d): %v", to-used, preallocStep, err)
	}
}

// A size hint changes nothing about what is stored, whether it is right or
// wrong; a hint far above the content (a peer's lie) grows the file by at
// most a step past what was written.
func TestSizeHint(t *testing.T) {
	v := newTestVault(t)
	skipWithoutPrealloc(t, v)
	size := int64(3*batchSize + 777)
	want, _ := io.ReadAll(newRandReader(size))
	for _, hint := range []int64{size, 1 << 20, 1 << 40} {
		m, err := v.Add(bytes.NewReader(want), NewRecord{Category: record.Imaging, SizeHint: hint})
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if _, err := v.Get(m.ID, &got); err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("hint %d: content differs (%v)", hint, err)
		}
		if _, allocated, used := fileAndMark(t, v); allocated > used+preallocStep {
			t.Errorf("hint %d: %d bytes allocated past bbolt's mark, more than a step", hint, allocated-used)
		}
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
	// Reopened, bbolt takes the file as it is.
	v.Close()
	reopen(t, v)
	if ms, err := v.List(Filter{}); err != nil || len(ms) != 3 {
		t.Fatalf("after reopening: %d records, %v", len(ms), err)
	}
}

// A record whose size the disk cannot hold fails when its room is
// reserved, before its first batch is written, and leaves the vault as it
// was.
func TestSizeHintOnFullDisk(t *testing.T) {
	v := vaultOnSmallDisk(t, "16m")
	before, _, _ := fileAndMark(t, v)
	size := int64(24 << 20)
	_, err := v.Add(newRandReader(size), NewRecord{Category: record.Imaging, SizeHint: size})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a record larger than the disk, with its size: %v", err)
	}
	after, _, _ := fileAndMark(t, v)
	if after > before+batchSize {
		t.Errorf("the failed add grew the vault file from %d to %d bytes", before, after)
	}
	if ms, err := v.List(Filter{}); err != nil || len(ms) != 0 {
		t.Fatalf("after the failed add: %d records, %v", len(ms), err)
	}
	if _, err := v.Add(bytes.NewReader([]byte("small")), NewRecord{Category: record.Labs}); err != nil {
		t.Fatalf("a small record after the failed add: %v", err)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}
