package vault

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

func TestAddGetRoundTrip(t *testing.T) {
	v := newTestVault(t)
	for _, size := range []int64{0, 1, 64<<10 - 1, 64 << 10, chunkSize - 7, chunkSize, 3*chunkSize + 5, batchSize + chunkSize + 1} {
		m, err := v.Add(newRandReader(size), NewRecord{Category: record.Labs, Title: "t"})
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if m.Size != size {
			t.Fatalf("size %d: Meta.Size = %d", size, m.Size)
		}
		var got bytes.Buffer
		if _, err := v.Get(m.ID, &got); err != nil {
			t.Fatalf("size %d: get: %v", size, err)
		}
		want, _ := io.ReadAll(newRandReader(size))
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("size %d: content differs", size)
		}
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	v := newTestVault(t)
	date := time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)
	m, err := v.Add(strings.NewReader("x"), NewRecord{Category: record.Notes, Title: "Therapy", Labels: []record.Label{record.SUD, record.MH, record.MH},
		Date: date, FileName: "n.txt", FHIR: &FHIRInfo{Type: "Condition", ID: "c1", Version: 1}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Show(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "Therapy" || got.Category != record.Notes || !got.Date.Equal(date) || got.FileName != "n.txt" ||
		len(got.Labels) != 2 || got.Labels[0] != record.MH || got.Labels[1] != record.SUD ||
		got.FHIR == nil || got.FHIR.ID != "c1" || got.ContentDigest != m.ContentDigest {
		t.Fatalf("metadata did not round-trip: %+v", got)
	}
}

func TestAddRejectsBadInput(t *testing.T) {
	v := newTestVault(t)
	for _, n := range []NewRecord{
		{Category: "bloodwork"},
		{Category: record.Labs, Labels: []record.Label{"XX"}},
		{Category: record.Labs, Title: strings.Repeat("a", maxTitle+1)},
	} {
		if _, err := v.Add(strings.NewReader("x"), n); err == nil {
			t.Errorf("Add(%+v) succeeded", n)
		}
	}
	ms, _ := v.List(Filter{})
	if len(ms) != 0 {
		t.Fatalf("failed adds left %d records", len(ms))
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk read error")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

// A failed add leaves no record and no chunks.
func TestAddFailureLeavesNothing(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(&failingReader{n: 3*batchSize + 100}, NewRecord{Category: record.Imaging}); err == nil {
		t.Fatal("add from a failing reader succeeded")
	}
	assertEmpty(t, v)
}

func assertEmpty(t *testing.T, v *Vault) {
	t.Helper()
	v.db.View(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketChunks, bucketPending} {
			if n := tx.Bucket(b).Stats().KeyN; n != 0 {
				t.Errorf("bucket %s has %d keys", b, n)
			}
		}
		return nil
	})
}

// The raw vault file reveals no title, category, label, file name or content.
func TestNothingInTheClear(t *testing.T) {
	v := newTestVault(t)
	secrets := []string{"Major depression follow-up", "depression-note.txt", "sertraline 50 mg daily", "care-plans", "Dr. Whitfield"}
	_, err := v.Add(strings.NewReader(secrets[2]+" prescribed by "+secrets[4]), NewRecord{Category: record.CarePlans, Title: secrets[0], FileName: secrets[1], Labels: []record.Label{record.MH}})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	raw, err := os.ReadFile(filepath.Join(v.dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("vault file contains %q", s)
		}
	}
	reopen(t, v)
}

func reopen(t *testing.T, v *Vault) {
	t.Helper()
	nv, err := Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v.dir, v.db, v.lock, v.id, v.vaultID, v.meta, v.index, v.now, v.ledger = nv.dir, nv.db, nv.lock, nv.id, nv.vaultID, nv.meta, nv.index, nv.now, nv.ledger
}

// storedBytes returns a copy of record id's sealed metadata and of the
// first 4 KiB of its second chunk, to look for in the raw file.
func storedBytes(v *Vault, id record.ID) (sealed, chunk []byte) {
	v.db.View(func(tx *bbolt.Tx) error {
		sealed = bytes.Clone(tx.Bucket(bucketRecords).Get(id[:]))
		chunk = bytes.Clone(tx.Bucket(bucketChunks).Get(chunkKey(id, 1))[:4096])
		return nil
	})
	return sealed, chunk
}

// rm removes the record, and compaction leaves no copy of its ciphertext or
// sealed metadata anywhere in the file.
func TestRemoveShreds(t *testing.T) {
	v := newTestVault(t)
	keep, _ := v.Add(strings.NewReader("keep me"), NewRecord{Category: record.Labs})
	gone, err := v.Add(newRandReader(2*chunkSize), NewRecord{Category: record.Labs, Title: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	sealed, chunk := storedBytes(v, gone.ID)
	if err := v.Remove(gone.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Show(gone.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Show after Remove: %v", err)
	}
	if err := v.Remove(gone.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := v.Get(keep.ID, io.Discard); err != nil {
		t.Fatalf("other record after Remove: %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(v.dir, DBFile))
	if bytes.Contains(raw, sealed[:64]) || bytes.Contains(raw, chunk) {
		t.Fatal("removed record's bytes are still in the vault file")
	}
}

func TestListFilters(t *testing.T) {
	v := newTestVault(t)
	d := func(s string) time.Time { t, _ := time.Parse("2006-01-02", s); return t }
	v.Add(strings.NewReader("a"), NewRecord{Category: record.Labs, Date: d("2024-01-01"), Title: "old lab"})
	v.Add(strings.NewReader("b"), NewRecord{Category: record.Labs, Date: d("2026-01-01"), Title: "new lab"})
	v.Add(strings.NewReader("c"), NewRecord{Category: record.Notes, Labels: []record.Label{record.MH}, Date: d("2025-01-01"), Title: "note"})
	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{}, []string{"old lab", "note", "new lab"}},
		{Filter{Category: record.Labs}, []string{"old lab", "new lab"}},
		{Filter{Label: record.MH}, []string{"note"}},
		{Filter{Since: d("2025-01-01")}, []string{"note", "new lab"}},
		{Filter{Category: record.Labs, Since: d("2025-06-01")}, []string{"new lab"}},
	} {
		ms, err := v.List(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.Title)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("List(%+v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestLockTimeout(t *testing.T) {
	v := newTestVault(t)
	start := time.Now()
	_, err := Open(v.dir, v.id, Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("second Open waited far past its timeout")
	}
}

func TestWrongOwnerAndNewerFormat(t *testing.T) {
	v := newTestVault(t)
	v.Close()
	other, _ := identity.Generate("", identity.Patient)
	if _, err := Open(v.dir, other, Options{}); !errors.Is(err, ErrWrongOwner) {
		t.Fatalf("Open by another identity: %v", err)
	}
	db, _ := bbolt.Open(filepath.Join(v.dir, DBFile), 0o600, nil)
	db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte{0, 0, 0, 9}) })
	db.Close()
	if _, err := Open(v.dir, v.id, Options{}); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("Open of a newer format: %v", err)
	}
}

// Tampering with stored content or metadata is detected on read.
func TestTamperDetectedOnRead(t *testing.T) {
	v := newTestVault(t)
	m, _ := v.Add(newRandReader(chunkSize+10), NewRecord{Category: record.Labs, Title: "x"})
	flip := func(bucket, key []byte, off int) {
		v.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucket)
			val := bytes.Clone(b.Get(key))
			val[off] ^= 1
			return b.Put(key, val)
		})
	}
	flip(bucketChunks, chunkKey(m.ID, 1), 3)
	if _, err := v.Get(m.ID, io.Discard); !errors.Is(err, ErrTampered) {
		t.Fatalf("Get of a flipped chunk: %v", err)
	}
	flip(bucketChunks, chunkKey(m.ID, 1), 3)
	if _, err := v.Get(m.ID, io.Discard); err != nil {
		t.Fatalf("Get after restoring: %v", err)
	}
	flip(bucketRecords, m.ID[:], 30)
	if _, err := v.Show(m.ID); !errors.Is(err, ErrTampered) {
		t.Fatalf("Show of flipped metadata: %v", err)
	}
}

// Records whose stored files were swapped decrypt (both are the owner's)
// but are refused by Get and Share: the header digest in each record's
// sealed metadata names its own header, which wraps the key that
// authenticates its payload. Verify finds them too.
func TestSwappedContentRefused(t *testing.T) {
	v := newTestVault(t)
	a, _ := v.Add(strings.NewReader("lab result A"), NewRecord{Category: record.Labs, Title: "a"})
	b, _ := v.Add(strings.NewReader("lab result B"), NewRecord{Category: record.Labs, Title: "b"})
	if a.HeaderDigest == ([32]byte{}) || b.HeaderDigest == ([32]byte{}) {
		t.Fatal("no header digest recorded")
	}
	if shown, _ := v.Show(a.ID); shown.HeaderDigest != a.HeaderDigest {
		t.Fatal("header digest not kept in the sealed metadata")
	}
	// Imported records get one too.
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); err != nil {
		t.Fatal(err)
	}
	ms, _ := v.List(Filter{})
	for _, m := range ms {
		if m.HeaderDigest == ([32]byte{}) {
			t.Fatalf("record %s (%s) has no header digest", m.ID, m.Source)
		}
	}
	swap := func() {
		v.db.Update(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketChunks)
			ka, kb := chunkKey(a.ID, 0), chunkKey(b.ID, 0)
			va, vb := bytes.Clone(c.Get(ka)), bytes.Clone(c.Get(kb))
			c.Put(ka, vb)
			return c.Put(kb, va)
		})
	}
	swap()
	if _, err := v.Get(a.ID, io.Discard); !errors.Is(err, ErrTampered) {
		t.Fatalf("Get of a swapped record: %v", err)
	}
	to, _ := age.GenerateX25519Identity()
	adm := &Admission{allowed: map[record.ID]bool{a.ID: true}}
	if _, err := v.Share(adm, a.ID, to.Recipient(), 0); !errors.Is(err, ErrTampered) {
		t.Fatalf("Share of a swapped record: %v", err)
	}
	if _, err := v.Verify(true); !errors.Is(err, ErrTampered) {
		t.Fatalf("Verify with swapped records: %v", err)
	}
	swap()
	var got bytes.Buffer
	if _, err := v.Get(a.ID, &got); err != nil || got.String() != "lab result A" {
		t.Fatalf("Get after swapping back: %q %v", got.String(), err)
	}
	if _, err := v.Share(adm, a.ID, to.Recipient(), 0); err != nil {
		t.Fatalf("Share after swapping back: %v", err)
	}
}

// kill -9 during a large add: the vault opens, no partial record is
// visible, and the chunks written so far are discarded.
func TestKillDuringAdd(t *testing.T) {
	if os.Getenv("MEDVAULT_TEST_KILL_CHILD") != "" {
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	v := newTestVault(t)
	keep, _ := v.Add(strings.NewReader("acknowledged"), NewRecord{Category: record.Labs})
	if err := v.id.Save(filepath.Join(v.dir, IdentityFile), []byte("pw"), 10); err != nil {
		t.Fatal(err)
	}
	v.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$")
	cmd.Env = append(os.Environ(), "MEDVAULT_TEST_KILL_DIR="+v.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the child has committed several chunk batches.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(v.dir, "progress")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("child never wrote data: %s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	var pending int
	db, _ := bbolt.Open(filepath.Join(v.dir, DBFile), 0o600, &bbolt.Options{ReadOnly: true})
	db.View(func(tx *bbolt.Tx) error { pending = tx.Bucket(bucketPending).Stats().KeyN; return nil })
	if pending != 1 {
		t.Fatalf("expected one pending add after the kill, found %d", pending)
	}
	if batchMarksIn(t, db) == 0 {
		t.Error("the killed add left no batch marks: this test no longer covers their cleanup")
	}
	db.Close()
	reopen(t, v)
	ms, err := v.List(Filter{})
	if err != nil || len(ms) != 1 || ms[0].ID != keep.ID {
		t.Fatalf("after kill: %d records, err %v", len(ms), err)
	}
	var got bytes.Buffer
	if _, err := v.Get(keep.ID, &got); err != nil || got.String() != "acknowledged" {
		t.Fatalf("acknowledged record after kill: %q, %v", got.String(), err)
	}
	v.db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucketChunks).Stats().KeyN; n != 1 {
			t.Errorf("%d chunks left after cleanup, want 1", n)
		}
		return nil
	})
}

// TestKillChild is the child of TestKillDuringAdd: it adds an endless
// stream until killed.
func TestKillChild(t *testing.T) {
	dir := os.Getenv("MEDVAULT_TEST_KILL_DIR")
	if dir == "" {
		t.Skip("helper for TestKillDuringAdd")
	}
	id, err := identity.Load(filepath.Join(dir, IdentityFile), []byte("pw"), identity.MaxWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, id, Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	v.Add(&progressReader{r: newRandReader(1 << 40), mark: filepath.Join(dir, "progress"), after: 4 * batchSize}, NewRecord{Category: record.Imaging})
	t.Fatal("endless add returned")
}

// progressReader creates the file mark once after bytes have been read.
type progressReader struct {
	r     io.Reader
	mark  string
	after int64
	n     int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n >= p.after && p.mark != "" {
		os.WriteFile(p.mark, nil, 0o600)
		p.mark = ""
	}
	return n, err
}

// TestCreateAppearsWhole: until Create's transaction is on disk there is no
// vault file, so a process killed inside Create leaves a directory where
// 'init' can run again (not a vault that opens as damaged); a half-built
// file a killed Create left is replaced.
func TestCreateAppearsWhole(t *testing.T) {
	dir := t.TempDir()
	id := mustIdentity(t)
	path := filepath.Join(dir, DBFile)
	if err := os.WriteFile(path+".new", []byte("what a killed Create left"), 0o600); err != nil {
		t.Fatal(err)
	}
	var checked bool
	testCreateBeforePublish = func() {
		checked = true
		if Exists(dir) {
			t.Error("the vault file exists before Create finished")
		}
		if _, err := Open(dir, id, Options{}); !errors.Is(err, ErrNoVault) {
			t.Errorf("Open during Create: %v, want ErrNoVault", err)
		}
	}
	defer func() { testCreateBeforePublish = nil }()
	if err := Create(dir, id, Options{}); err != nil {
		t.Fatal(err)
	}
	if !checked {
		t.Fatal("the hook did not run")
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the building file is still there: %v", err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("vault file: %v %v", st, err)
	}
	v, err := Open(dir, id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %+v", err, rep.Problems)
	}
	v.Close()
	if err := Create(dir, id, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v", err)
	}
}
