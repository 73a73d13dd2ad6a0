package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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
		if !v.mu.TryRLock() { // compact waits for the lock: the delete committed
			break
		}
		v.mu.RUnlock()
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
