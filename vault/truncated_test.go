package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// A vault file cut short is refused as damaged, whatever the cut: bbolt
// read past the end of its mapping and the process died of SIGBUS (exit 2,
// a goroutine dump), on the freelist as it opened or on a page later. An
// empty file is refused too, and left as it is: bbolt would have started
// it over as a new database.
func TestOpenTruncatedFile(t *testing.T) {
	v := newTestVault(t)
	for i := range 3 {
		if _, err := v.Add(newRandReader(int64(i+1)*300<<10), NewRecord{Category: record.Imaging}); err != nil {
			t.Fatal(err)
		}
	}
	// The file may go on past its last page, over blocks allocated ahead
	// (see reserve): cuts there lose nothing, and the vault opens.
	var pages int
	v.db.View(func(tx *bbolt.Tx) error { pages = int(tx.Size()); return nil })
	v.Close()
	whole, err := os.ReadFile(filepath.Join(v.dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{0, 4 << 10, 8 << 10, 16 << 10, 64 << 10, pages / 2, pages - 4<<10} {
		dir := t.TempDir()
		for _, f := range []string{IdentityFile} {
			if b, err := os.ReadFile(filepath.Join(v.dir, f)); err == nil {
				os.WriteFile(filepath.Join(dir, f), b, 0o600)
			}
		}
		path := filepath.Join(dir, DBFile)
		if err := os.WriteFile(path, whole[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		// Twice: a refused open must leave nothing behind (bbolt's
		// descriptor and lock were, and the second said "in use").
		fds := openFiles(t)
		for range 2 {
			nv, err := Open(dir, v.id, Options{})
			if err == nil {
				nv.Close()
				t.Errorf("cut at %d of %d bytes: opened", cut, len(whole))
				break
			}
			if !errors.Is(err, ErrFileDamaged) || !errors.Is(err, ErrTampered) {
				t.Errorf("cut at %d of %d bytes: %v, want ErrFileDamaged", cut, len(whole), err)
			}
		}
		if n := openFiles(t); n != fds {
			t.Errorf("cut at %d bytes: %d descriptors open after refusing it, %d before", cut, n, fds)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, whole[:cut]) {
			t.Errorf("cut at %d bytes: opening changed the file (%d bytes now)", cut, len(got))
		}
	}
	// Cut past the last page: nothing is lost.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, DBFile), whole[:pages], 0o600); err != nil {
		t.Fatal(err)
	}
	nv, err := Open(dir, v.id, Options{})
	if err != nil {
		t.Fatalf("cut after the last page: %v", err)
	}
	defer nv.Close()
	if rep, err := nv.Verify(true); err != nil {
		t.Fatalf("cut after the last page: verify: %v %v", err, rep.Problems)
	}
}

// The stored owner changed (or deleted) is tampering, not someone else's
// vault, when the ledger's checkpoints are signed by the identity opening
// it; another identity is still told the vault is not its own.
func TestOwnerChanged(t *testing.T) {
	v := newTestVault(t)
	dir, id := v.dir, v.id
	v.Close()
	for _, change := range []func(b *bbolt.Bucket) error{
		func(b *bbolt.Bucket) error { return b.Put(keyOwner, make([]byte, 32)) },
		func(b *bbolt.Bucket) error { return b.Delete(keyOwner) },
	} {
		db, err := bbolt.Open(filepath.Join(dir, DBFile), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bbolt.Tx) error { return change(tx.Bucket(bucketMeta)) }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if _, err := Open(dir, id, Options{}); !errors.Is(err, ErrTampered) {
			t.Errorf("owner changed: %v, want an integrity failure", err)
		}
		other, err := identity.Generate("Eve", identity.Patient)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, other, Options{}); !errors.Is(err, ErrWrongOwner) {
			t.Errorf("another identity: %v, want ErrWrongOwner", err)
		}
	}
}

// A format number put back to 1 on a vault that holds label rules (format
// 3 writes them, format 1 never did) is tampering: Open migrated it forward
// again without a word (a review found it). (setFormat, which stands for
// a real format 1 vault, removes them.)
func TestFormatPutBackToOne(t *testing.T) {
	v := newTestVault(t)
	dir, id := v.dir, v.id
	v.Close()
	db, err := bbolt.Open(filepath.Join(dir, DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte{0, 0, 0, 1}) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(dir, id, Options{}); !errors.Is(err, ErrTampered) {
		t.Fatalf("format put back to 1: %v, want an integrity failure", err)
	}
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("needs /proc/self/fd")
	}
	return len(fds)
}
