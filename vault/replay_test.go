package vault

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// A record mark of a committed import, put back into the file (from an
// older copy, or from free pages), must not make the next Open roll an
// acknowledged record back: the import's commit mark stays for this.
func TestReplayedImportMarkKeepsRecord(t *testing.T) {
	v := newTestVault(t)
	testImportDies = func(p string) bool { return p == "flipped" }
	_, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil)
	testImportDies = nil
	if !errors.Is(err, errTestDied) {
		t.Fatal(err)
	}
	ms, err := v.List(Filter{})
	if err != nil || len(ms) != 3 {
		t.Fatalf("list after the commit mark: %d %v", len(ms), err)
	}
	victim := ms[0].ID
	var mark []byte
	v.db.View(func(tx *bbolt.Tx) error { mark = bytes.Clone(tx.Bucket(bucketPending).Get(victim[:])); return nil })
	if len(mark) != 48 {
		t.Fatalf("mark %x", mark)
	}
	v.Close()
	reopen(t, v) // settles: record marks cleared, records stay
	if _, err := v.Show(victim); err != nil {
		t.Fatal(err)
	}
	if err := v.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketPending).Put(victim[:], mark) }); err != nil {
		t.Fatal(err)
	}
	v.Close()
	reopen(t, v)
	if _, err := v.Show(victim); err != nil {
		t.Fatalf("a replayed import mark removed an acknowledged record: %v", err)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// A partial-record value put back on a record that has since arrived whole
// is not listed as a partial (which the next fetch would drop, chunks and
// all), and the next Open clears it.
func TestReplayedPartialKeepsReceivedRecord(t *testing.T) {
	v := newTestVault(t)
	plain := bytes.Repeat([]byte("DICOM "), 3<<20/6)
	file := receivedFile(t, v, plain)
	from := mustIdentity(t).ID()
	src := record.NewID()
	keep := func(err error) bool { return errors.Is(err, errCut) }
	n := NewRecord{Category: record.Imaging, Title: "MRI"}
	cut := 1<<20 + 12345
	if _, err := v.AddCiphertext(&brokenAfter{bytes.NewReader(file), cut}, n, Received{Size: int64(len(plain)), From: from, SourceID: src, KeepPartial: keep}); !errors.Is(err, ErrPartialKept) {
		t.Fatal(err)
	}
	ps, _ := v.Partials(from)
	if len(ps) != 1 {
		t.Fatalf("%d partials", len(ps))
	}
	var old []byte
	v.db.View(func(tx *bbolt.Tx) error { old = bytes.Clone(tx.Bucket(bucketPending).Get(ps[0].ID[:])); return nil })
	m, err := v.AddCiphertext(bytes.NewReader(file[cut:]), n, Received{Size: int64(len(plain)), From: from, SourceID: src, Resume: ps[0], KeepPartial: keep})
	if err != nil {
		t.Fatal(err)
	}
	put := func() {
		t.Helper()
		if err := v.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketPending).Put(m.ID[:], old) }); err != nil {
			t.Fatal(err)
		}
	}
	// While the vault is open: not a partial.
	put()
	if ps, _ := v.Partials(from); len(ps) != 0 {
		t.Fatalf("a complete record is listed as %d partial(s)", len(ps))
	}
	if err := v.DropPartial(m.ID); err == nil {
		t.Fatal("DropPartial accepted a complete record")
	}
	// Across a reopen: cleared.
	v.Close()
	reopen(t, v)
	v.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketPending).Get(m.ID[:]) != nil {
			t.Error("the stale partial value survived Open")
		}
		return nil
	})
	var got bytes.Buffer
	if _, err := v.Get(m.ID, &got); err != nil || !bytes.Equal(got.Bytes(), plain) {
		t.Fatalf("the received record after the replay: %v", err)
	}
}

// A record added by a running node while Verify checks (between its read
// transaction and the marker's advance) was checked by nobody: the marker
// must not move past it, so the next incremental verify still checks it.
func TestVerifyMarkerSkipsNothingAddedMeanwhile(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(strings.NewReader("first"), NewRecord{Category: record.Labs}); err != nil {
		t.Fatal(err)
	}
	var late *Meta
	testVerifyBetween = func() {
		var err error
		if late, err = v.Add(newRandReader(2*chunkSize), NewRecord{Category: record.Labs}); err != nil {
			t.Error(err)
		}
	}
	_, err := v.Verify(false)
	testVerifyBetween = nil
	if err != nil || late == nil {
		t.Fatal(err)
	}
	if err := v.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChunks)
		c := bytes.Clone(b.Get(chunkKey(late.ID, 1)))
		c[1000] ^= 1
		return b.Put(chunkKey(late.ID, 1), c)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(false); !errors.Is(err, ErrTampered) {
		t.Fatalf("incremental verify after a record added during the last one was changed: %v, want ErrTampered", err)
	}
}
