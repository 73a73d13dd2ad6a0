package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"sync/atomic"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// Content is stored as the bytes of one age file, cut into values of
// chunkSize bytes under keys record.ID || uint32 big-endian index. A record's
// chunks are written in transactions of about batchSize bytes, so memory
// stays flat for any record size; the record becomes visible only in the last
// transaction, which also writes its metadata and ledger entry.
const (
	chunkSize = 256 << 10
	batchSize = 8 << 20
)

func chunkKey(id record.ID, i uint32) []byte {
	k := make([]byte, 20, 21)
	copy(k, id[:])
	binary.BigEndian.PutUint32(k[16:], i)
	return k
}

// batchMarks empty values end every batch transaction but the last, under
// marks: the key of the batch's last chunk and one byte more, so they sort
// between that chunk and the next batch's first.
//
// They are there for bbolt's copy-on-write B+tree. A key appended after the
// last one lands in the last leaf, and the transaction writes that whole
// leaf again. bbolt splits a leaf of large values into pieces of two and
// keeps the last three or four values together, so without marks every batch
// wrote the previous batch's last 0.75-1 MiB of chunks a second time: 13% of
// the bytes a 1 GiB add copied, wrote and synced (bbolt's TxStats.PageAlloc,
// TestBatchesDoNotRewriteChunks). With four marks last, the last leaf holds
// only marks (or three of them, with the fourth beside the last chunk), and
// the next batch, which deletes them, rewrites a leaf of a few bytes.
//
// Marks exist only while a record is being written; the last transaction
// (or a suspended transfer's) deletes them, and the chunks of an unfinished
// add are deleted by key prefix, marks included.
const batchMarks = 4

// batchFences empty values follow a record's chunks while it is written,
// under fences: the record's ID, 0xffffffff, 0xff and the fence's number, so
// they sort after every chunk and mark of the record and before the next
// record's first chunk.
//
// They do for the next record what marks do for the batch before. Record
// IDs are random, so a new record's keys mostly land just before another
// record's first chunks, in the leaf that holds them: without fences every
// batch wrote that record's first one or two chunks again (1.086x the bytes
// for 5 batches, TestBatchesBeforeAnotherRecord). bbolt leaves the last
// three keys of a run of small ones together with the large value after
// them, so with two fences or more the leaf holding the next record's first
// chunk starts with a fence, which sorts after every key the record's later
// batches write: they land in the leaf before, among marks and fences.
//
// The first batch transaction writes them; the last (or a suspended
// transfer's) deletes them with the marks.
const batchFences = 4

func markKey(id record.ID, after uint32, j byte) []byte {
	return append(chunkKey(id, after), j)
}

func fenceKey(id record.ID, j byte) []byte {
	return append(chunkKey(id, math.MaxUint32), 0xff, j)
}

// batchMark says where a record's batch marks are (after chunk `after`, if
// set) and whether its fences are written.
type batchMark struct {
	set    bool
	after  uint32
	fenced bool
}

// dropMarks deletes the marks, inside the transaction that writes what
// follows them.
func (m batchMark) dropMarks(b *bbolt.Bucket, id record.ID) error {
	if !m.set {
		return nil
	}
	for j := range byte(batchMarks) {
		if err := b.Delete(markKey(id, m.after, j)); err != nil {
			return err
		}
	}
	return nil
}

// drop deletes the marks and the fences, inside the transaction that
// writes the record's last chunks (or keeps it as a partial).
func (m batchMark) drop(b *bbolt.Bucket, id record.ID) error {
	if err := m.dropMarks(b, id); err != nil || !m.fenced {
		return err
	}
	for j := range byte(batchFences) {
		if err := b.Delete(fenceKey(id, j)); err != nil {
			return err
		}
	}
	return nil
}

// putBatch writes batch as chunks start, start+1, ... of id, with marks
// after its last chunk in place of prev's, and the record's fences if prev
// has none. It returns where the marks are once the transaction commits.
func putBatch(b *bbolt.Bucket, id record.ID, start uint32, batch [][]byte, prev batchMark) (batchMark, error) {
	if err := prev.dropMarks(b, id); err != nil {
		return prev, err
	}
	for i, c := range batch {
		if err := b.Put(chunkKey(id, start+uint32(i)), c); err != nil {
			return prev, err
		}
	}
	last := start + uint32(len(batch)) - 1
	for j := range byte(batchMarks) {
		if err := b.Put(markKey(id, last, j), nil); err != nil {
			return prev, err
		}
	}
	if !prev.fenced {
		for j := range byte(batchFences) {
			if err := b.Put(fenceKey(id, j), nil); err != nil {
				return prev, err
			}
		}
	}
	return batchMark{set: true, after: last, fenced: true}, nil
}

var errWriteFailed = errors.New("writing to the vault failed")

// chunkWriter receives the age ciphertext stream, hashes it as it arrives
// and writes it to bbolt in batches. Full batches are committed by a second
// goroutine while the next batch fills, so encryption and disk writes
// overlap. Buffers are recycled
// only after the transaction that referenced them has committed.
type chunkWriter struct {
	v      *Vault
	id     record.ID
	next   uint32 // index of the next chunk to queue
	first  uint32 // index of the first chunk this writer writes
	cur    []byte // chunk being filled
	batch  [][]byte
	digest hash.Hash
	check  *ageCheck // nil unless the stream is a received age file

	jobs   chan [][]byte
	done   chan error
	free   chan []byte
	failed atomic.Bool // set by the committer after a failed transaction
	err    error
	// marks are the last committed batch's (see batchMarks). The
	// committer sets them; after finish, the caller's last transaction
	// drops them.
	marks batchMark
	// expect is how many bytes this writer expects to write, 0 if not
	// known: the committer reserves room for them ahead (see reserve).
	expect int64
}

func (v *Vault) newChunkWriter(id record.ID, expect int64) *chunkWriter {
	return v.chunkWriterAt(id, 0, sha256.New(), nil, expect)
}

// chunkWriterAt continues a record whose first chunks are stored: new
// chunks start at index first, and digest holds the hash of the stored ones.
// check, if set, is given every chunk (see ageCheck). expect is how many
// bytes are expected, 0 if not known.
func (v *Vault) chunkWriterAt(id record.ID, first uint32, digest hash.Hash, check *ageCheck, expect int64) *chunkWriter {
	w := &chunkWriter{v: v, id: id, digest: digest, check: check, next: first, first: first, expect: expect,
		// Unbuffered: a full batch waits for the committer rather than
		// in a queue. The committer is the slower side, so a queued batch
		// bought no speed, only 8 MiB more memory for the GC to work
		// around.
		jobs: make(chan [][]byte), done: make(chan error, 1),
		free: make(chan []byte, 3*batchSize/chunkSize)}
	go w.commitLoop()
	return w
}

func (w *chunkWriter) commitLoop() {
	var err error
	var reserved int64 // the end of the blocks reserve allocated
	start := w.first
	for batch := range w.jobs {
		if w.check != nil {
			w.check.feed(batch)
		}
		if left := w.expect - int64(start-w.first)*chunkSize; err == nil && w.expect > 0 && left > 0 {
			if reserved, err = w.v.reserve(left, reserved); errors.Is(err, errNoPrealloc) {
				w.expect, err = 0, nil
			}
		}
		if err == nil {
			var marks batchMark
			err = w.v.update(func(tx *bbolt.Tx) (err error) {
				marks, err = putBatch(tx.Bucket(bucketChunks), w.id, start, batch, w.marks)
				return err
			})
			if err == nil {
				w.marks = marks
			}
		}
		if err != nil {
			w.failed.Store(true)
		}
		if w.check != nil {
			w.check.wait()
		}
		start += uint32(len(batch))
		for _, c := range batch {
			select {
			case w.free <- c[:0]:
			default:
			}
		}
	}
	w.done <- err
}

func (w *chunkWriter) buf() []byte {
	select {
	case b := <-w.free:
		return b
	default:
		return make([]byte, 0, chunkSize)
	}
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.err != nil {
			return 0, w.err
		}
		k := copy(w.space(), p)
		if err := w.filled(k); err != nil {
			return 0, err
		}
		p = p[k:]
	}
	return n, nil
}

// space returns the unwritten rest of the chunk being filled, never empty
// (unless the writer failed), for a caller that writes the stream in place
// (encryptInto); filled then takes what it wrote.
func (w *chunkWriter) space() []byte {
	if w.cur == nil {
		w.cur = w.buf()
	}
	return w.cur[len(w.cur):cap(w.cur)]
}

// filled takes the first k bytes of space() as the stream's next bytes.
func (w *chunkWriter) filled(k int) error {
	if w.err != nil {
		return w.err
	}
	// Hash on this goroutine, while the bytes are in the cache: with the
	// hash on a third goroutine, the committer waited for a CPU after
	// each fdatasync while two others held both.
	w.digest.Write(w.cur[len(w.cur) : len(w.cur)+k])
	w.cur = w.cur[:len(w.cur)+k]
	if len(w.cur) < chunkSize {
		return nil
	}
	if w.check != nil && w.check.failed.Load() {
		// Stop taking a record known to be damaged.
		w.err = ErrDamaged
		return w.err
	}
	w.batch = append(w.batch, w.cur)
	w.cur = nil
	if len(w.batch)*chunkSize >= batchSize {
		return w.flush()
	}
	return nil
}

// flush hands the current batch to the committer, failing early if an
// earlier commit failed.
func (w *chunkWriter) flush() error {
	if w.failed.Load() {
		// The committer keeps draining; finish reports its error.
		w.err = errWriteFailed
		return w.err
	}
	if w.check != nil && w.check.failed.Load() {
		w.err = ErrDamaged
		return w.err
	}
	w.jobs <- w.batch
	w.next += uint32(len(w.batch))
	w.batch = nil
	return nil
}

// finish waits for queued batches and returns the chunks not yet written
// (at most one batch), to be written in the final transaction with the
// record's metadata, and the first index they take.
func (w *chunkWriter) finish() (rest [][]byte, first uint32, err error) {
	if w.cur != nil && len(w.cur) > 0 {
		w.batch = append(w.batch, w.cur)
		w.cur = nil
	}
	close(w.jobs)
	if err := <-w.done; err != nil {
		return nil, 0, err
	}
	return w.batch, w.next, nil
}

// abort stops the committer after a failure and returns its cause, if
// the failure was found here: the check's error if the check failed (why
// the record was refused), else the committer's if a transaction failed
// (a full disk, say), else nil.
func (w *chunkWriter) abort() error {
	close(w.jobs)
	werr := <-w.done
	if w.check != nil {
		if err := w.check.endEarly(); err != nil {
			return err
		}
	}
	return werr
}

// verdict, after finish, gives the check the chunks not yet written and
// returns whether the age file decrypts; nil when not checking. For a
// stream that broke off (complete false) it returns an error only if the
// bytes that arrived fail, not because the file is cut short.
func (w *chunkWriter) verdict(rest [][]byte, complete bool) error {
	if w.check == nil {
		return nil
	}
	w.check.feed(rest)
	w.check.wait()
	if complete {
		return w.check.end()
	}
	return w.check.endEarly()
}

// sum returns the digest of the whole stream; call after finish.
func (w *chunkWriter) sum() (d [32]byte) {
	copy(d[:], w.digest.Sum(nil))
	return d
}

// chunkReader streams a record's chunks inside one read transaction. The
// bytes it returns are copied out of bbolt's memory map by Read.
//
// Reads for content (Get) do not hash: age authenticates every 64 KiB of the
// stream, its order and its end, so a changed, reordered, swapped or
// truncated chunk fails decryption. Integrity checks (verify) pass a digest
// to compare with what the ledger committed to.
type chunkReader struct {
	c      *bbolt.Cursor
	id     record.ID
	next   uint32
	want   uint32
	cur    []byte    // bbolt slice, valid for the transaction
	digest hash.Hash // nil unless checking
	ra     readahead
	err    error
}

func newChunkReader(tx *bbolt.Tx, id record.ID, chunks uint32, digest hash.Hash) *chunkReader {
	return &chunkReader{c: tx.Bucket(bucketChunks).Cursor(), id: id, want: chunks, digest: digest,
		ra: readahead{id: id, want: chunks}}
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		v, err := r.chunk()
		if err != nil {
			return 0, err
		}
		r.cur = v
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// chunk returns the next chunk as it lies in bbolt's read-only memory map
// (valid for the transaction), or io.EOF after the last one.
func (r *chunkReader) chunk() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.next == r.want {
		r.err = io.EOF
		return nil, io.EOF
	}
	r.ra.advance(r.c.Bucket().Tx(), r.next)
	var k, v []byte
	if r.next == 0 {
		k, v = r.c.Seek(chunkKey(r.id, 0))
	} else {
		k, v = r.c.Next()
	}
	if k == nil || !bytes.Equal(k, chunkKey(r.id, r.next)) {
		r.err = fmt.Errorf("%w: record %s: chunk %d of %d is missing", ErrTampered, r.id, r.next, r.want)
		return nil, r.err
	}
	r.next++
	if r.digest != nil {
		r.digest.Write(v)
	}
	return v, nil
}

// check reports whether every chunk was read, nothing follows the last one,
// and (when hashing) the bytes hash to want.
func (r *chunkReader) check(want [32]byte) error {
	if r.next != r.want {
		return fmt.Errorf("%w: record %s: read %d of %d chunks", ErrTampered, r.id, r.next, r.want)
	}
	if k, _ := r.c.Next(); k != nil && bytes.HasPrefix(k, r.id[:]) {
		return fmt.Errorf("%w: record %s: unexpected chunk after the last", ErrTampered, r.id)
	}
	if r.digest == nil {
		return nil
	}
	var got [32]byte
	copy(got[:], r.digest.Sum(nil))
	if got != want {
		return fmt.Errorf("%w: record %s: content does not match its digest", ErrTampered, r.id)
	}
	return nil
}

// deleteChunks removes every chunk of id (and its pending marker when
// pending is set), in transactions of bounded size.
func (v *Vault) deleteChunks(id record.ID, pending bool) error {
	for {
		more := false
		err := v.update(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketChunks).Cursor()
			n := 0
			for k, _ := c.Seek(id[:]); k != nil && bytes.HasPrefix(k, id[:]); k, _ = c.Seek(id[:]) {
				if err := c.Delete(); err != nil {
					return err
				}
				if n++; n == 256 {
					more = true
					return nil
				}
			}
			if pending {
				return tx.Bucket(bucketPending).Delete(id[:])
			}
			return nil
		})
		if err != nil || !more {
			return err
		}
	}
}
