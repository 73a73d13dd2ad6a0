package vault

import (
	"bytes"
	"unsafe"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// raWindow is how many chunks (32 MiB) a reader keeps the kernel reading
// ahead of it. A cold 1 GiB get took 2.1-3.8 s with 16 MiB, 1.9 s with 32
// and 1.8-2.1 s with 64; cat reads the whole file in 1.7 s.
const raWindow = 128

// readahead asks the kernel to read a record's chunks into the page cache
// before the reader reaches them. bbolt maps its file with MADV_RANDOM, so
// without it every page of a record not in the page cache is faulted in
// by its own 4 KiB disk read: here, a cold 1 GiB get took 17 s against 1 s
// warm, and a provider's first fetch after a reboot was as slow.
//
// It only gives advice: a value it cannot place in the memory map (one a
// write transaction holds in memory) is skipped, and errors are ignored.
type readahead struct {
	id   record.ID
	want uint32 // chunks in the record
	next uint32 // first chunk not advised yet
}

// advance, called inside tx before chunk `at` is read, advises the chunks
// up to raWindow ahead of it when fewer than half that are advised: one
// cursor walk and a few madvise calls per 16 MiB read.
func (ra *readahead) advance(tx *bbolt.Tx, at uint32) {
	if ra == nil || !adviseSupported || ra.want < 2 || ra.next >= ra.want || ra.next > at+raWindow/2 {
		// A record of one chunk (most FHIR resources) is read at once:
		// a cursor walk to advise it first cost verify more than it saved.
		return
	}
	ra.next = max(ra.next, at)
	end := min(ra.want, at+raWindow)
	info := tx.DB().Info()
	base, size := info.Data, uintptr(tx.Size())
	page := uintptr(info.PageSize)
	var from, to uintptr // the range to advise, page-aligned
	c := tx.Bucket(bucketChunks).Cursor()
	for k, v := c.Seek(chunkKey(ra.id, ra.next)); ra.next < end && len(k) == 20 && bytes.HasPrefix(k, ra.id[:]); k, v = c.Next() {
		ra.next++
		if len(v) == 0 {
			continue
		}
		p := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
		if p < base || p-base+uintptr(len(v)) > size {
			continue // not in the map
		}
		s, e := p&^(page-1), p+uintptr(len(v))
		if s <= to && e > from && from != 0 {
			from, to = min(from, s), max(to, e)
			continue
		}
		adviseWillNeed(from, to)
		from, to = s, e
	}
	adviseWillNeed(from, to)
}

// adviseWhole tells the kernel the whole database file is about to be read
// through, in tree order rather than file order (compaction): it undoes
// bbolt's MADV_RANDOM for the mapping, so faults read ahead again. Without
// it, rm's compaction of a 1 GiB vault not in the page cache read 4 KiB at
// a time: 19-24 s against 3.4-3.5 s with it. (A WILLNEED over the whole
// file does not do: the kernel reads only its readahead window per call.)
// Compaction replaces the mapping afterwards; when it fails and keeps the
// file, adviseLookups gives the mapping bbolt's advice back.
func adviseWhole(tx *bbolt.Tx) {
	if !adviseSupported {
		return
	}
	info := tx.DB().Info()
	adviseScan(info.Data, info.Data+uintptr(tx.Size()))
}

// adviseLookups undoes adviseWhole: the mapping is looked up in again
// (MADV_RANDOM, as bbolt maps it), so a fault reads its page, not the
// device's readahead window (8 MiB on some disks) around it.
func adviseLookups(tx *bbolt.Tx) {
	if !adviseSupported {
		return
	}
	info := tx.DB().Info()
	adviseRandom(info.Data, info.Data+uintptr(tx.Size()))
}
