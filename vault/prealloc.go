package vault

import (
	"errors"
	"os"

	"go.etcd.io/bbolt"
)

// preallocStep is how far ahead of bbolt's writes the vault file is
// extended while a record of known size is written.
//
// bbolt grows its file with ftruncate, so on ext4 every batch's fdatasync
// also allocated the blocks the batch was written to (delayed allocation)
// and committed that to the journal. Blocks allocated beforehand with
// fallocate, in a few large extents, took 12% off the time a 1 GiB add's
// committer spends in its transactions (0.94-1.11 s against 1.17-1.33 s,
// alternating runs). A step rather than the whole size: a peer stating a
// record far larger than it sends makes the vault file grow by at most one
// step past what arrived.
const preallocStep = 64 << 20

// errNoPrealloc reports a file system that cannot allocate blocks ahead.
var errNoPrealloc = errors.New("the file system does not allocate blocks ahead")

// reserve makes sure blocks are allocated in the vault file past bbolt's
// high-water mark for the next transaction of a record with left more
// bytes to write (at least left, or a batch, with room for page headers
// and branch pages). to is how far the record's earlier calls allocated;
// if that is short, it allocates up to preallocStep past the mark, syncs
// the file as bbolt does when it grows it, and returns the new end. (The
// file's size says nothing: bbolt extends it 16 MiB at a time with
// ftruncate, which allocates no blocks.) bbolt takes pages past its mark
// as it needs them and never truncates the file, so the blocks are simply
// used by the next commits. A record that ends early (an add that fails, a
// transfer cut) leaves the rest of its step at the end of the file, as a
// failed add leaves its free pages, until the file is compacted.
//
// It returns an error wrapping syscall.ENOSPC if the disk cannot hold
// what it reserves (the record then fails before its bytes are written),
// and errNoPrealloc where the file system cannot allocate ahead.
func (v *Vault) reserve(left, to int64) (int64, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return reserveIn(v.db, left, to)
}

// reserveIn is reserve for a bbolt file of its own (BenchmarkStoreFloor).
func reserveIn(db *bbolt.DB, left, to int64) (int64, error) {
	var used int64
	if err := db.View(func(tx *bbolt.Tx) error {
		used = tx.Size()
		return nil
	}); err != nil {
		return to, err
	}
	// Content takes a 16-byte page header per value and a leaf per two
	// values: under 1/64 more. The MiB covers branch pages, the
	// freelist, metadata and ledger pages.
	room := func(n int64) int64 { return n + n/64 + 1<<20 }
	if to-used >= room(min(left, batchSize)) {
		return to, nil
	}
	f, err := os.OpenFile(db.Path(), os.O_RDWR, 0)
	if err != nil {
		return to, err
	}
	defer f.Close()
	end := used + min(room(left), preallocStep)
	if err := fallocate(f, used, end-used); err != nil {
		return to, err
	}
	return end, f.Sync()
}

// cipherSize bounds the age file a plaintext of n bytes becomes: a 16-byte
// tag per 64 KiB chunk, and the header with the payload nonce (one
// recipient stanza: under 1 KiB).
func cipherSize(n int64) int64 {
	return n + (n+ageChunk-1)/ageChunk*16 + 1<<10
}
