package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// keptFixture stores one object of each kept kind, with keep entries, and
// a checkpoint of a patient's ledger updated once; it returns the sealed
// first value of that checkpoint, to put back.
func keptFixture(t *testing.T) (*Vault, []byte) {
	t.Helper()
	v := newTestVault(t)
	keep := &Event{Action: ledger.ActionKeep}
	for _, kind := range []Kind{KindInbox, KindRevoked, KindReceipt, KindLedgerEvidence} {
		if err := v.PutObject(kind, "k-"+string(kind), []byte("value of "+kind), keep); err != nil {
			t.Fatal(err)
		}
	}
	put := func(val string) {
		t.Helper()
		err := v.UpdateObject(KindWitnessed, "patient", keep, func([]byte, bool) ([]byte, bool, error) { return []byte(val), true, nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	put("checkpoint 1")
	first := rawObject(t, v, KindWitnessed)
	put("checkpoint 2")
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("clean vault: %v %v", err, rep.Problems)
	}
	return v, first
}

func rawObject(t *testing.T, v *Vault, kind Kind) []byte {
	t.Helper()
	var out []byte
	v.db.View(func(tx *bbolt.Tx) error {
		_, val := tx.Bucket([]byte(kind)).Cursor().First()
		out = bytes.Clone(val)
		return nil
	})
	return out
}

func problems(rep *VerifyReport) string {
	var s []string
	for _, p := range rep.Problems {
		s = append(s, p.Detail)
	}
	return strings.Join(s, "; ")
}

// deleteKept deletes the object keptFixture stored of kind.
func deleteKept(v *Vault, kind Kind, _ []byte) func(tx *bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(kind)).Delete(v.objectKey(kind, "k-"+string(kind)))
	}
}

// What a provider keeps from patients' nodes (received grants, revocation
// notices, receipts, checkpoints of their ledgers, evidence) is held to its
// keep entries: one deleted, put back to an earlier value, or stored from
// outside medvault is found by full verify.
func TestVerifyKeptObjects(t *testing.T) {
	cases := []struct {
		name string
		kind Kind
		mut  func(v *Vault, kind Kind, first []byte) func(tx *bbolt.Tx) error
		want string
	}{
		{"receipt deleted", KindReceipt, deleteKept, "receipt kept by ledger entry"},
		{"received grant deleted", KindInbox, deleteKept, "received grant kept by ledger entry"},
		{"revocation notice deleted", KindRevoked, deleteKept, "revocation notice kept by ledger entry"},
		{"evidence deleted", KindLedgerEvidence, deleteKept, "evidence about a patient's ledger kept by ledger entry"},
		{"checkpoint rolled back", KindWitnessed, func(v *Vault, _ Kind, first []byte) func(tx *bbolt.Tx) error {
			return func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte(KindWitnessed)).Put(v.objectKey(KindWitnessed, "patient"), first)
			}
		}, "differs from what it committed to"},
		{"receipt inserted", KindReceipt, func(v *Vault, _ Kind, _ []byte) func(tx *bbolt.Tx) error {
			return func(tx *bbolt.Tx) error {
				k := v.objectKey(KindReceipt, "inserted")
				return tx.Bucket([]byte(KindReceipt)).Put(k, v.sealObject(KindReceipt, k, "inserted", []byte("forged")))
			}
		}, "1 receipt stored without a ledger entry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, first := keptFixture(t)
			if err := v.db.Update(c.mut(v, c.kind, first)); err != nil {
				t.Fatal(err)
			}
			rep, err := v.Verify(true)
			if !errors.Is(err, ErrTampered) || !strings.Contains(problems(rep), c.want) {
				t.Fatalf("verify: %v, problems %q, want one containing %q", err, problems(rep), c.want)
			}
		})
	}
}

// Incremental verify checks what was kept since the last verify.
func TestIncrementalVerifyKeptObjects(t *testing.T) {
	v, _ := keptFixture(t)
	if err := v.PutObject(KindReceipt, "new", []byte("new receipt"), &Event{Action: ledger.ActionKeep}); err != nil {
		t.Fatal(err)
	}
	v.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(KindReceipt)).Delete(v.objectKey(KindReceipt, "new"))
	})
	rep, err := v.Verify(false)
	if !errors.Is(err, ErrTampered) || !strings.Contains(problems(rep), "receipt kept by ledger entry") {
		t.Fatalf("incremental verify: %v %q", err, problems(rep))
	}
}

func setFormat(t *testing.T, dir string, ver uint32) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bbolt.Tx) error {
		if ver == 1 {
			// As a format 1 build left it: format 3 wrote the rules.
			if err := tx.Bucket(bucketMeta).Delete(keyLabelRules); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint32(nil, ver))
	})
}

func formatOf(t *testing.T, v *Vault) uint32 {
	var f uint32
	v.db.View(func(tx *bbolt.Tx) error {
		f = binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keyFormat))
		return nil
	})
	return f
}

// A format 1 vault (objects kept without entries) is brought to format 2
// when opened: each kept object gets its keep entry, once, and verify is
// clean. Putting the format number back to 1 afterwards is refused, since
// adopting again would bless a receipt deleted or a checkpoint rolled back.
func TestAdoptFormat1(t *testing.T) {
	v := newTestVault(t)
	for _, kind := range keptKinds {
		if err := v.PutObject(kind, "old", []byte("stored by format 1"), nil); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := v.LedgerSize()
	v.Close()
	setFormat(t, v.dir, 1)
	v2, err := Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f := formatOf(t, v2); f != FormatVersion {
		t.Errorf("format after adoption: %d", f)
	}
	after, _ := v2.LedgerSize()
	// One keep entry per kind but revocations (the owner's own share the
	// bucket and have revoke entries).
	if want := before + int64(len(keptKinds)-1); after != want {
		t.Errorf("ledger size %d after adoption, want %d", after, want)
	}
	if rep, err := v2.Verify(true); err != nil {
		t.Fatalf("verify after adoption: %v %v", err, rep.Problems)
	}
	v2.Close()
	setFormat(t, v.dir, 1)
	if _, err := Open(v.dir, v.id, Options{}); !errors.Is(err, ErrTampered) {
		t.Fatalf("open of a format 2 vault marked format 1: %v", err)
	}
}

// A keep entry names the patient who sent what was kept, but that patient
// accessed nothing of this vault: audit does not list them.
func TestAuditSkipsKeepEntries(t *testing.T) {
	v := newTestVault(t)
	patient := otherIdentity(t) // not the vault's owner (mustIdentity is)
	ev := &Event{Action: ledger.ActionKeep, Actor: patient.ID()}
	if err := v.PutObject(KindReceipt, "r", []byte("receipt"), ev); err != nil {
		t.Fatal(err)
	}
	a, err := v.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Actors) != 0 {
		t.Fatalf("audit lists %d actors for a keep entry: %+v", len(a.Actors), a.Actors)
	}
}

// The AuditEvents for an EHR (audit --format fhir) agree with the audit:
// a keep entry names the patient who sent what was kept, who accessed
// nothing of this vault, so it is no AuditEvent (before, each was one with
// the patient as requestor and the object's keyed tag as a grant ID).
func TestAuditEventsSkipKeepEntries(t *testing.T) {
	v := newTestVault(t)
	patient := otherIdentity(t)
	ev := &Event{Action: ledger.ActionKeep, Actor: patient.ID()}
	if err := v.PutObject(KindReceipt, "r", []byte("receipt"), ev); err != nil {
		t.Fatal(err)
	}
	if err := v.UpdateObject(KindWitnessed, "p", ev, func([]byte, bool) ([]byte, bool, error) { return []byte("cp"), true, nil }); err != nil {
		t.Fatal(err)
	}
	var events []string
	if err := v.AuditEvents(func(_ string, b []byte) error { events = append(events, string(b)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(events) != 0 {
		t.Fatalf("%d AuditEvents for keep entries: %q", len(events), events)
	}
}

// otherIdentity returns a fresh identity, not the test vaults' owner.
func otherIdentity(t *testing.T) *identity.Identity {
	t.Helper()
	id, err := identity.Generate("Other Patient", identity.Patient)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A format 1 vault whose ledger has an entry that does not open cannot be
// adopted (whether it holds keep entries is unknown), but it still opens, as
// it did before format 2: records can be listed and exported, and verify
// reports the damaged entry (not kept objects "put there outside medvault").
// Before, Open failed, so no command worked on the vault at all.
func TestAdoptDamagedLedgerStillOpens(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(strings.NewReader("HbA1c 6.1"), NewRecord{Category: record.Labs, Title: "A1c"}); err != nil {
		t.Fatal(err)
	}
	if err := v.PutObject(KindReceipt, "old", []byte("stored by format 1"), nil); err != nil {
		t.Fatal(err)
	}
	v.Close()
	setFormat(t, v.dir, 1)
	db, err := bbolt.Open(filepath.Join(v.dir, DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("ledger")).Bucket([]byte("entries"))
		k := binary.BigEndian.AppendUint64(nil, 1)
		val := bytes.Clone(b.Get(k))
		val[len(val)-1] ^= 1
		return b.Put(k, val)
	})
	db.Close()

	v2, err := Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatalf("open of a format 1 vault with a damaged ledger entry: %v", err)
	}
	defer v2.Close()
	if f := formatOf(t, v2); f != 1 {
		t.Errorf("format %d after an adoption that could not read the ledger, want 1", f)
	}
	if ms, err := v2.List(Filter{}); err != nil || len(ms) != 1 {
		t.Fatalf("list: %d records, %v", len(ms), err)
	}
	rep, err := v2.Verify(true)
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("verify of a damaged ledger: %v", err)
	}
	if p := problems(rep); strings.Contains(p, "without a ledger entry") {
		t.Errorf("verify blames kept objects that were never adopted: %q", p)
	}
}
