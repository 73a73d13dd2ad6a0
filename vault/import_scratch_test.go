package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// dieAt makes the next import that reaches point stop there as if killed,
// after running check (if set); later imports run to the end.
func dieAt(t *testing.T, point string, check func()) {
	t.Helper()
	testImportDies = func(p string) bool {
		if p != point {
			return false
		}
		testImportDies = nil
		if check != nil {
			check()
		}
		return true
	}
	t.Cleanup(func() { testImportDies = nil })
}

// hiddenIDs lists the records an unfinished import committed.
func hiddenIDs(t *testing.T, v *Vault) []record.ID {
	t.Helper()
	var out []record.ID
	v.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
			if len(k) == 16 && v.hidden(tx, record.ID(k)) {
				out = append(out, record.ID(k))
			}
			return nil
		})
	})
	return out
}

// An import killed after its commit mark but before its pending marks were
// cleared is complete: its records are visible at once, and the next Open
// clears the marks.
func TestImportDiesAfterFlip(t *testing.T) {
	v := newTestVault(t)
	dieAt(t, "flipped", func() {
		if ms, _ := v.List(Filter{}); len(ms) != 3 {
			t.Fatalf("%d records visible after the commit mark, want 3", len(ms))
		}
	})
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); !errors.Is(err, errTestDied) {
		t.Fatalf("import did not stop where the test asked: %v", err)
	}
	v.Close()
	reopen(t, v)
	if ms, _ := v.List(Filter{}); len(ms) != 3 {
		t.Fatalf("%d records after reopening, want 3", len(ms))
	}
	v.view(func(tx *bbolt.Tx) error {
		// The import's commit mark stays; every record mark is gone.
		n := 0
		tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
			if !bytes.HasPrefix(k, commitMarkPrefix) {
				n++
			}
			return nil
		})
		if n != 0 {
			t.Errorf("%d pending entries left", n)
		}
		return nil
	})
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
	if st, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); err != nil || st.Unchanged != 3 {
		t.Fatalf("re-import: %+v %v", st, err)
	}
}

// A scratch file a killed import left holds none of the file's titles,
// ids, codes or references in the clear, and the next Open removes it.
func TestImportScratchSealedAndRemoved(t *testing.T) {
	v := newTestVault(t)
	var scratchData []byte
	dieAt(t, "committed", func() {
		files, _ := filepath.Glob(filepath.Join(v.dir, scratchPattern))
		if len(files) != 1 {
			t.Fatalf("%d scratch files during the import", len(files))
		}
		scratchData, _ = os.ReadFile(files[0])
	})
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); !errors.Is(err, errTestDied) {
		t.Fatalf("import did not stop where the test asked: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(v.dir, scratchPattern))
	if len(files) != 1 {
		t.Fatalf("%d scratch files left by the killed import", len(files))
	}
	left, _ := os.ReadFile(files[0])
	for _, data := range [][]byte{scratchData, left} {
		for _, s := range []string{"Major depressive disorder", "370143000", "Patient/p1", "urn:uuid:2", "Condition", "Observation", "Hemoglobin", "4548-4", "Doe", `"c1"`,
			// Labels as the scratch encodes them and as JSON: "MH" alone is
			// two bytes, which random ciphertext holds by chance.
			string(encodeLabels([]record.Label{record.MH})), `"MH"`} {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("the scratch file holds %q in the clear", s)
			}
		}
	}
	// A stray scratch file of another killed import goes too.
	os.WriteFile(filepath.Join(v.dir, "import-0123456789abcdef.scratch"), []byte("x"), 0o600)
	v.Close()
	reopen(t, v)
	if files, _ := filepath.Glob(filepath.Join(v.dir, scratchPattern)); len(files) != 0 {
		t.Fatalf("scratch files left after Open: %v", files)
	}
	assertEmpty(t, v)
}

// Another import running in the same process while one waits hidden (its
// records and index entries written, not yet made visible) does not take
// those records for its own data: when the first is rolled back, the
// second's records are all there.
func TestConcurrentImportIgnoresHiddenRecords(t *testing.T) {
	v := newTestVault(t)
	dieAt(t, "indexed", func() {
		st, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil)
		if err != nil || st.Added != 3 || st.Unchanged != 0 {
			t.Fatalf("second import while the first is hidden: %+v %v", st, err)
		}
	})
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); !errors.Is(err, errTestDied) {
		t.Fatalf("first import did not stop where the test asked: %v", err)
	}
	v.Close()
	reopen(t, v)
	ms, _ := v.List(Filter{})
	if len(ms) != 3 {
		t.Fatalf("%d records after the first import was rolled back, want the second's 3", len(ms))
	}
	for _, m := range ms {
		if m.FHIR.Version != 1 {
			t.Errorf("%s/%s is version %d", m.FHIR.Type, m.FHIR.ID, m.FHIR.Version)
		}
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}
