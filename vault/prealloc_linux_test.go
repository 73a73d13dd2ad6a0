package vault

import (
	"bytes"
	"errors"
	"io"
	"math"
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
	for _, left := range []int64{1 << 40, math.MaxInt64} {
		if to, err = v.reserve(left, 0); err != nil || to != used+preallocStep {
			t.Errorf("reserving %d bytes: blocks to %d past the mark, want a step (%d): %v", left, to-used, preallocStep, err)
		}
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

// Allocating ahead never fails a record: a hint far above the content, on a
// disk with less free space than the hint, takes nothing the record needs;
// a record too large for the disk fails with ENOSPC as it did before, and
// the vault stays usable.
func TestSizeHintOnFullDisk(t *testing.T) {
	v := vaultOnSmallDisk(t, "24m")
	// More than a batch, so that the committer reserves.
	if _, err := v.Add(newRandReader(batchSize+(2<<20)), NewRecord{Category: record.Imaging, SizeHint: 1 << 40}); err != nil {
		t.Fatalf("a record that fits, with an absurd size hint: %v", err)
	}
	size := int64(24 << 20)
	if _, err := v.Add(newRandReader(size), NewRecord{Category: record.Imaging, SizeHint: size}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a record larger than the disk, with its size: %v", err)
	}
	if ms, err := v.List(Filter{}); err != nil || len(ms) != 1 {
		t.Fatalf("after the failed add: %d records, %v", len(ms), err)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// On ext4 a fallocate that runs out of space keeps what it allocated and
// extends the file over it; growOrUndo gives that back, so a refused
// allocation leaves the disk's free space as it was.
func TestGrowOrUndoGivesBack(t *testing.T) {
	disk := smallExt4(t, 64)
	f, err := os.OpenFile(filepath.Join(disk, "file"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	free, _ := freeBytes(disk)
	if err := growOrUndo(f, 1<<20, free+(8<<20)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("allocating more than the disk holds: %v", err)
	}
	f.Sync()
	st, _ := f.Stat()
	after, _ := freeBytes(disk)
	if st.Size() != 1<<20 || after < free-(1<<20) {
		t.Errorf("after the refused allocation: file of %d bytes (was %d), %d bytes free (were %d)", st.Size(), 1<<20, after, free)
	}
}
