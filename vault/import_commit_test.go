package vault

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// Someone with the file but not the passphrase deletes an import's commit
// mark and puts back its records' pending marks (still in the file's free
// pages after the import). Trusting the mark alone, the next Open rolled
// the committed import back, signing removal entries, and verify passed.
// The commit is in the ledger too: the records stay, and verify reports
// the missing mark.
func TestDeletedCommitMarkRollsNothingBack(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); err != nil {
		t.Fatal(err)
	}
	before, err := v.List(Filter{})
	if err != nil || len(before) != 3 {
		t.Fatalf("imported %d records: %v", len(before), err)
	}
	err = v.db.Update(func(tx *bbolt.Tx) error {
		pb := tx.Bucket(bucketPending)
		k, _ := pb.Cursor().Seek(commitMarkPrefix)
		if !bytes.HasPrefix(k, commitMarkPrefix) {
			return errors.New("no commit mark")
		}
		imp := [16]byte(k[len(commitMarkPrefix):])
		if err := pb.Delete(bytes.Clone(k)); err != nil {
			return err
		}
		for _, m := range before {
			if err := pb.Put(bytes.Clone(m.ID[:]), v.pendingMark(m.ID, imp)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dir, id := v.dir, v.id
	v.Close()
	v, err = Open(dir, id, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	after, err := v.List(Filter{})
	if err != nil || len(after) != len(before) {
		t.Fatalf("after reopening: %d records (%v), want %d", len(after), err, len(before))
	}
	rep, err := v.Verify(true)
	if !errors.Is(err, ErrTampered) || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Detail, "commit mark") {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// An incremental verify checks the commit marks of the imports its range
// committed, as it checks the grants and revocations there: it passed over
// a deleted mark, and moved its marker past the import (a review found it).
func TestIncrementalVerifyFindsDeletedCommitMark(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(strings.NewReader("x"), NewRecord{Category: "labs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(true); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); err != nil {
		t.Fatal(err)
	}
	err := v.db.Update(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketPending).Cursor()
		for k, _ := c.Seek(commitMarkPrefix); k != nil && bytes.HasPrefix(k, commitMarkPrefix); k, _ = c.Seek(commitMarkPrefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := v.Verify(false)
	if !errors.Is(err, ErrTampered) || !strings.Contains(fmt.Sprint(rep.Problems), "commit mark") {
		t.Fatalf("incremental verify after the import's commit mark was deleted: %v %v", err, rep.Problems)
	}
}
