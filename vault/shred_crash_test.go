package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// A process killed after rm committed but before compaction finished must
// not leave the record's bytes in the file for good: the delete itself marks
// compaction as owed, and the next Open compacts. The kill is simulated by
// copying the file while compaction waits for the vault's lock.
func TestKillBetweenRemoveAndCompact(t *testing.T) {
	v := newTestVault(t)
	gone, err := v.Add(newRandReader(2*chunkSize), NewRecord{Category: record.Labs, Title: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	sealed, chunk := storedBytes(v, gone.ID)
	v.mu.RLock()
	done := make(chan error, 1)
	go func() { done <- v.Remove(gone.ID) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var owed bool
		v.db.View(func(tx *bbolt.Tx) error { owed = tx.Bucket(bucketMeta).Get(keyCompactOwed) != nil; return nil })
		if owed { // the delete committed; compaction waits for the read lock
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Remove never reached compaction")
		}
	}
	crash := t.TempDir()
	b, err := os.ReadFile(filepath.Join(v.dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(crash, DBFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	v.mu.RUnlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, chunk) {
		t.Fatal("test premise: the copy made before compaction should still hold the chunk")
	}
	v2, err := Open(crash, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Show(gone.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Show: %v", err)
	}
	v2.Close()
	raw, err := os.ReadFile(filepath.Join(crash, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, sealed[:64]) || bytes.Contains(raw, chunk) {
		t.Fatal("after a kill between rm's commit and compaction, and a reopen, the file still holds the removed record's metadata or ciphertext")
	}
}

// A reader that does not finish (a paused 'get | less' in the node) no
// longer freezes the vault when a record is removed: the delete stands,
// compaction gives up after compactWait without blocking other readers,
// and CompactIfOwed finishes it once the reader is gone.
func TestRemoveWhileReading(t *testing.T) {
	saved := compactWait
	compactWait = 50 * time.Millisecond
	defer func() { compactWait = saved }()
	v := newTestVault(t)
	gone, err := v.Add(newRandReader(2*chunkSize), NewRecord{Category: record.Labs, Title: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	_, chunk := storedBytes(v, gone.ID)
	v.mu.RLock() // the paused reader
	done := make(chan error, 1)
	go func() { done <- v.Remove(gone.ID) }()
	// Other readers go on meanwhile.
	for range 20 {
		if _, err := v.List(Filter{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-done; !errors.Is(err, ErrCompactDeferred) {
		t.Fatalf("Remove while reading: %v, want ErrCompactDeferred", err)
	}
	if _, err := v.Show(gone.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the delete does not stand: %v", err)
	}
	if err := v.CompactIfOwed(0); !errors.Is(err, ErrCompactDeferred) {
		t.Fatalf("CompactIfOwed while still reading: %v", err)
	}
	v.mu.RUnlock()
	if err := v.CompactIfOwed(0); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(v.dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, chunk) {
		t.Fatal("the removed record's ciphertext is still in the file")
	}
}
