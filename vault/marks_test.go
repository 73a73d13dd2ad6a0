package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// batchMarksIn counts the batch marks in the chunks bucket (keys one byte longer
// than a chunk key).
func batchMarksIn(t *testing.T, db *bbolt.DB) int {
	t.Helper()
	n := 0
	db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketChunks).ForEach(func(k, _ []byte) error {
			if len(k) != 20 {
				n++
			}
			return nil
		})
	})
	return n
}

// A record written in several batches is written once: no batch copies the
// previous batch's last chunks again (see batchMarks), and no mark outlives
// the add.
func TestBatchesDoNotRewriteChunks(t *testing.T) {
	v := newTestVault(t)
	size := int64(5*batchSize + 12345)
	pageAlloc := func() int64 { s := v.db.Stats(); return s.TxStats.GetPageAlloc() }
	before := pageAlloc()
	m, err := v.Add(newRandReader(size), NewRecord{Category: record.Imaging})
	if err != nil {
		t.Fatal(err)
	}
	// What bbolt allocated for pages in the add's transactions: the chunks
	// (each page of a value carries a 16-byte header, and two chunks share
	// a leaf), the record's metadata and ledger entry, branch pages and
	// the freelist. Without marks, each batch after the first rewrote the
	// previous one's last three or four chunks: 1.14x here, against 1.02x.
	written := pageAlloc() - before
	if ratio := float64(written) / float64(size); ratio > 1.06 {
		t.Errorf("bbolt wrote %d bytes of pages for %d bytes of content (%.3fx): chunks were written twice", written, size, ratio)
	}
	if n := batchMarksIn(t, v.db); n != 0 {
		t.Errorf("%d batch marks left after the add", n)
	}
	var got bytes.Buffer
	if _, err := v.Get(m.ID, &got); err != nil {
		t.Fatal(err)
	}
	if want, _ := io.ReadAll(newRandReader(size)); !bytes.Equal(got.Bytes(), want) {
		t.Fatal("content differs")
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// A transfer cut after some batches keeps its chunks but not the marks; the
// resumed transfer completes the record, and leaves none either.
func TestCutTransferDropsMarks(t *testing.T) {
	v := newTestVault(t)
	plain, _ := io.ReadAll(newRandReader(3*batchSize + 999))
	file := receivedFile(t, v, plain)
	from := mustIdentity(t).ID()
	src := record.NewID()
	keep := func(err error) bool { return errors.Is(err, errCut) }
	n := NewRecord{Category: record.Imaging}
	cut := 2*batchSize + 4321
	_, err := v.AddCiphertext(&brokenAfter{bytes.NewReader(file), cut}, n, Received{Size: int64(len(plain)), From: from, SourceID: src, KeepPartial: keep})
	if !errors.Is(err, ErrPartialKept) {
		t.Fatalf("cut receive: %v", err)
	}
	if k := batchMarksIn(t, v.db); k != 0 {
		t.Errorf("%d batch marks kept with the partial", k)
	}
	ps, err := v.Partials(from)
	if err != nil || len(ps) != 1 {
		t.Fatalf("partials: %v %v", ps, err)
	}
	m, err := v.AddCiphertext(bytes.NewReader(file[cut:]), n, Received{Size: int64(len(plain)), From: from, SourceID: src, Resume: ps[0], KeepPartial: keep})
	if err != nil {
		t.Fatal(err)
	}
	if k := batchMarksIn(t, v.db); k != 0 {
		t.Errorf("%d batch marks left after the resumed transfer", k)
	}
	var got bytes.Buffer
	if _, err := v.Get(m.ID, &got); err != nil || !bytes.Equal(got.Bytes(), plain) {
		t.Fatalf("resumed record differs (%v)", err)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// A record whose chunks sort just before another record's is written once
// too: its batches do not copy the other record's first chunks again each
// time (see batchFences). Record IDs are random, so in a vault of many
// records nearly every add has such a neighbour. The record before it, if
// any, decides how the next one's first chunks share leaves: with a
// record's last chunk (an odd number of chunks before) or not.
func TestBatchesBeforeAnotherRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("writes three records of 72 MiB (23 s under the race detector); TestBatchesDoNotRewriteChunks covers fences in -short")
	}
	for _, tc := range []struct {
		name   string
		before int64 // size of a record sorting just before, 0 for none
	}{
		{"alone", 0},
		{"even", 3 * batchSize},
		{"odd", 3*batchSize + chunkSize/2},
	} {
		t.Run(tc.name, func(t *testing.T) { testBatchesBeforeAnother(t, tc.before) })
	}
}

func testBatchesBeforeAnother(t *testing.T, before int64) {
	v := newTestVault(t)
	add := func(id record.ID, size int64) *Meta {
		t.Helper()
		if err := v.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketPending).Put(id[:], []byte("now")) }); err != nil {
			t.Fatal(err)
		}
		m, err := v.addContent(id, newRandReader(size), NewRecord{Category: record.Imaging, Source: SourceAdd})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Three IDs in a row; the record under test takes the middle one.
	first := record.NewID()
	first[15] &^= 3
	ids := [3]record.ID{first, first, first}
	ids[1][15]++
	ids[2][15] += 2
	sizes := map[record.ID]int64{ids[2]: 3 * batchSize}
	if before > 0 {
		sizes[ids[0]] = before
		add(ids[0], before)
	}
	add(ids[2], 3*batchSize)
	size := int64(9*batchSize + 12345)
	sizes[ids[1]] = size
	pageAlloc := func() int64 { s := v.db.Stats(); return s.TxStats.GetPageAlloc() }
	start := pageAlloc()
	add(ids[1], size)
	// Besides what a record with no neighbour takes (1.02x), its first
	// and last transactions write the next record's first leaf once each:
	// 1.032-1.037x here, against 1.057-1.081x without fences and
	// 1.057x with one (two are needed when a record sorts before too).
	written := pageAlloc() - start
	if ratio := float64(written) / float64(size); ratio > 1.045 {
		t.Errorf("bbolt wrote %d bytes of pages for %d bytes of content (%.3fx): the next record's chunks were written again", written, size, ratio)
	}
	if n := batchMarksIn(t, v.db); n != 0 {
		t.Errorf("%d batch marks or fences left after the add", n)
	}
	for id, size := range sizes {
		var got bytes.Buffer
		if _, err := v.Get(id, &got); err != nil {
			t.Fatal(err)
		}
		if want, _ := io.ReadAll(newRandReader(size)); !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("record %s: content differs", id)
		}
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// A verify while a large record is being written sees its chunks, marks
// and fences as an unfinished add's, not as damage.
func TestVerifyDuringBatches(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(strings.NewReader("kept"), NewRecord{Category: record.Notes}); err != nil {
		t.Fatal(err)
	}
	id := record.NewID()
	if err := v.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketPending).Put(id[:], []byte("now")) }); err != nil {
		t.Fatal(err)
	}
	cw := v.newChunkWriter(id, 0)
	if _, err := io.Copy(cw, newRandReader(2*batchSize+chunkSize)); err != nil {
		t.Fatal(err)
	}
	// finish waits for the committed batches and leaves the last one,
	// and the marks and fences, as the add's last transaction would find
	// them.
	if _, _, err := cw.finish(); err != nil {
		t.Fatal(err)
	}
	if n := batchMarksIn(t, v.db); n != batchMarks+batchFences {
		t.Fatalf("%d marks and fences during the add, want %d", n, batchMarks+batchFences)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify during an add: %v %v", err, rep.Problems)
	}
	if err := v.deleteChunks(id, true); err != nil {
		t.Fatal(err)
	}
	if n := batchMarksIn(t, v.db); n != 0 {
		t.Errorf("%d marks or fences left after the unfinished add was cleaned up", n)
	}
}

// A fence left on a finished record (inserted outside medvault) is damage:
// skipping an unfinished add's fences does not hide it.
func TestVerifyFindsFenceOnRecord(t *testing.T) {
	v := newTestVault(t)
	m, err := v.Add(strings.NewReader("content"), NewRecord{Category: record.Notes})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketChunks).Put(fenceKey(m.ID, 0), nil) }); err != nil {
		t.Fatal(err)
	}
	rep, err := v.Verify(true)
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("verify with a stray fence: %v %v", err, rep.Problems)
	}
	if !strings.Contains(fmt.Sprint(rep.Problems), m.ID.String()) {
		t.Errorf("problems do not name the record: %v", rep.Problems)
	}
}
