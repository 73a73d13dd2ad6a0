package vault

import (
	"bytes"
	"errors"
	"io"
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
