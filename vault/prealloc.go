package vault

import (
	"errors"
	"os"
	"path/filepath"

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
// Allocating ahead is an optimisation and never fails a record: it takes
// no more than the disk's free space beyond RoomReserve (a size hint may be
// wrong), and if fallocate fails anyway it gives back what the call took
// and returns errNoPrealloc, as where the file system cannot allocate
// ahead; the record is then written as bbolt grows the file.
func (v *Vault) reserve(left, to int64) (int64, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return reserveIn(v.db, left, to)
}

// reserveIn is reserve for a bbolt file of its own (BenchmarkStoreFloor).
func reserveIn(db *bbolt.DB, left, to int64) (int64, error) {
	// Content takes a 16-byte page header per value and a leaf per two
	// values: under 1/64 more. The MiB covers branch pages, the
	// freelist, metadata and ledger pages. (left is cut to a step first:
	// a hint near MaxInt64 would overflow.)
	room := func(n int64) int64 { n = min(n, preallocStep); return n + n/64 + 1<<20 }
	need := room(min(left, batchSize))
	// A write transaction, rolled back, so that no commit moves the mark
	// or the file's end while the file is grown or given back.
	tx, err := db.Begin(true)
	if err != nil {
		return to, err
	}
	defer tx.Rollback()
	used := tx.Size()
	if to-used >= need {
		return to, nil
	}
	n := min(room(left), preallocStep)
	if free, ok := freeBytes(filepath.Dir(db.Path())); ok && n > free-RoomReserve {
		if free-RoomReserve < need {
			return to, nil // the disk is nearly full: bbolt grows the file as it writes
		}
		n = free - RoomReserve
	}
	f, err := os.OpenFile(db.Path(), os.O_RDWR, 0)
	if err != nil {
		return to, err
	}
	defer f.Close()
	if err := growOrUndo(f, used, n); err != nil {
		return to, errNoPrealloc
	}
	return used + n, f.Sync()
}

// growOrUndo allocates blocks for n bytes of f from off on. If that fails
// it truncates f back to its size before: ext4 keeps the blocks a failed
// fallocate took and extends the file over them, which left a disk that
// had room for the record with none at all. The caller holds bbolt's
// writer lock, so nothing past that size is in use.
func growOrUndo(f *os.File, off, n int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	err = fallocate(f, off, n)
	if err != nil && !errors.Is(err, errNoPrealloc) {
		if now, serr := f.Stat(); serr == nil && now.Size() > st.Size() {
			f.Truncate(st.Size())
		}
	}
	return err
}

// cipherSize bounds the age file a plaintext of n bytes becomes: a 16-byte
// tag per 64 KiB chunk, and the header with the payload nonce (one
// recipient stanza: under 1 KiB).
func cipherSize(n int64) int64 {
	return n + (n+ageChunk-1)/ageChunk*16 + 1<<10
}
