package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// Damage to the file's B+tree (a branch page's keys out of order) used to
// make verify loop forever or crash. Every branch page's keys are broken in
// turn, several ways; verify must come back within seconds, without a
// panic, and report the damage it meets with ErrTampered.
func TestVerifyDamagedStructure(t *testing.T) {
	if testing.Short() {
		t.Skip("adds a few hundred records")
	}
	dir := t.TempDir()
	id := mustIdentity(t)
	opts := Options{LockTimeout: 100 * time.Millisecond}
	if err := Create(dir, id, opts); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, id, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Enough records for branch pages in the chunks, records and ledger
	// buckets.
	for i := range 300 {
		if _, err := v.Add(bytes.NewReader(fmt.Appendf(nil, "note %d", i)), NewRecord{Category: record.Notes}); err != nil {
			t.Fatal(err)
		}
	}
	v.Close()
	path := filepath.Join(dir, DBFile)
	pristine, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	branches := branchPages(t, path)
	if len(branches) == 0 {
		t.Fatal("no branch pages: add more records")
	}
	const pageSize = 4096
	tampered := 0
	for _, pg := range branches {
		page := pristine[pg*pageSize : (pg+1)*pageSize]
		count := int(binary.LittleEndian.Uint16(page[10:12]))
		for e := range count {
			for _, fill := range []byte{0x00, 0xff} {
				damaged := bytes.Clone(pristine)
				el := damaged[pg*pageSize+16+16*e:]
				pos, ksize := binary.LittleEndian.Uint32(el[0:4]), binary.LittleEndian.Uint32(el[4:8])
				if int(16+16*e)+int(pos)+int(ksize) > pageSize {
					continue
				}
				key := el[pos : pos+ksize]
				for i := range key {
					key[i] = fill
				}
				err := verifyWithin(t, dir, damaged, 20*time.Second)
				what := fmt.Sprintf("page %d element %d filled with %#x", pg, e, fill)
				switch {
				case errors.Is(err, ErrTampered):
					tampered++
				case err != nil:
					t.Fatalf("%s: verify: %v, want ErrTampered or nothing", what, err)
				}
			}
		}
	}
	if tampered == 0 {
		t.Fatal("no damage was reported")
	}
	t.Logf("%d branch pages, %d damaged files reported", len(branches), tampered)
}

// verifyWithin writes file as the vault's database, opens the vault and
// runs a full verify, failing the test if it takes longer than limit.
func verifyWithin(t *testing.T, dir string, file []byte, limit time.Duration) error {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, DBFile), file, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		v, err := Open(dir, mustIdentity(t), Options{LockTimeout: 100 * time.Millisecond})
		if err != nil {
			done <- fmt.Errorf("%w: open: %v", ErrTampered, err)
			return
		}
		defer v.Close()
		_, err = v.Verify(true)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("verify still running after %v: it loops on a damaged file", limit)
		return nil
	}
}

// branchPages lists the IDs of the file's branch pages.
func branchPages(t *testing.T, path string) []int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []int
	db.View(func(tx *bbolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return nil
			}
			if p.Type == "branch" {
				out = append(out, id)
			}
		}
	})
	return out
}

// TestIncrementalWithoutMarkIsFull: an incremental verify of a vault no
// verify has marked checks everything. Emptying the ledger (entries, tree
// hashes, checkpoints) together with its mark leaves a ledger that checks
// by itself; the records it no longer names must still be reported.
func TestIncrementalWithoutMarkIsFull(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(strings.NewReader("HbA1c 6.1 %"), NewRecord{Category: record.Labs}); err != nil {
		t.Fatal(err)
	}
	dir, id := v.dir, v.id
	v.Close()
	db, err := bbolt.Open(filepath.Join(dir, DBFile), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		lb := tx.Bucket([]byte("ledger"))
		for _, name := range []string{"entries", "hashes", "checkpoints"} {
			if err := lb.DeleteBucket([]byte(name)); err != nil {
				return err
			}
			if _, err := lb.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		return lb.Bucket([]byte("meta")).Put([]byte("verified"), []byte{})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	v, err = Open(dir, id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rep, err := v.Verify(false)
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("incremental verify of an emptied ledger: %v, %+v", err, rep.Problems)
	}
	if !rep.Full || len(rep.Problems) == 0 {
		t.Fatalf("report: %+v", rep)
	}
}
