package vault

import (
	"bytes"
	"os"
	"slices"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// editDB changes the closed vault's file directly, as someone with the file
// (or a disk error) could.
func editDB(t *testing.T, dir string, edit func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(dir+"/"+DBFile, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(edit); err != nil {
		t.Fatal(err)
	}
}

func flipLastByte(b *bbolt.Bucket, k []byte) error {
	val := bytes.Clone(b.Get(k))
	val[len(val)-1] ^= 1
	return b.Put(k, val)
}

// One record whose metadata does not open, another version or a referrer
// of a record that gains a label, is passed over: the vault opens, every
// time, and the others are relabelled (verify reports the damaged one).
func TestRederivePassesOverDamagedVersionAndReferrer(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c4","code":{"text":"newly-listed"}}`+"\n"+
		`{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n"+
		`{"resourceType":"Claim","id":"cl","status":"active","diagnosis":[{"sequence":1,"diagnosisReference":{"reference":"Condition/c1"}}]}`+"\n"+
		`{"resourceType":"Claim","id":"cl2","status":"active","diagnosis":[{"sequence":1,"diagnosisReference":{"reference":"Condition/c1"}}]}`+"\n")
	importString(t, v, "b.ndjson", `{"resourceType":"Condition","id":"c4","code":{"text":"revised"}}`+"\n")
	var v2 record.ID
	for _, m := range versionsOf(t, v, "Condition", "c4") {
		if m.FHIR.Version == 2 {
			v2 = m.ID
		}
	}
	cl := findFHIR(t, v, "Claim/cl").ID
	want := []record.ID{findFHIR(t, v, "Condition/c1").ID, findFHIR(t, v, "Claim/cl2").ID}
	for _, m := range versionsOf(t, v, "Condition", "c4") {
		if m.FHIR.Version == 1 {
			want = append(want, m.ID)
		}
	}
	v.Close()
	editDB(t, v.dir, func(tx *bbolt.Tx) error {
		if err := flipLastByte(tx.Bucket(bucketRecords), v2[:]); err != nil {
			return err
		}
		return flipLastByte(tx.Bucket(bucketRecords), cl[:])
	})
	newerLists(t)
	for i := range 2 {
		w, err := Open(v.dir, v.id, Options{})
		if err != nil {
			t.Fatalf("open %d with two damaged records: %v", i+1, err)
		}
		if i == 0 {
			rep := w.Rederived()
			if rep == nil || rep.Unreadable != 2 || rep.Records != 2 || rep.Propagated != 1 || rep.Failed != nil {
				t.Errorf("report %+v, want 2 unreadable, 2 relabelled, 1 referrer", rep)
			}
			for _, id := range want {
				m, err := w.Show(id)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(m.Labels, []record.Label{record.SUD}) {
					t.Errorf("%s/%s: %v, want [SUD]", m.FHIR.Type, m.FHIR.ID, m.Labels)
				}
			}
		}
		w.Close()
	}
}

// A run cut short (here a panic in the second of two one-record batches)
// keeps what it changed for the report of the run that completes it: the
// patient is still told of both records, and of both hand-changed ones of
// a format 2 vault; each record has one rederived entry.
func TestRederiveCutShortKeepsReport(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n"+
		`{"resourceType":"Condition","id":"c2","code":{"text":"newly-listed"}}`+"\n")
	for _, k := range []string{"Condition/c1", "Condition/c2"} {
		if _, _, err := v.SetLabels(findFHIR(t, v, k).ID, []record.Label{record.HIV}, nil); err != nil {
			t.Fatal(err)
		}
	}
	makeFormat2(t, v)
	newerLists(t)
	rep := cutShortThenComplete(t, v, func([]byte) bool { return true })
	if rep.Records != 2 || rep.Gained[record.SUD] != 2 || len(rep.HandChanged) != 2 {
		t.Errorf("after a run cut short: %d records, %v gained, hand-changed %v; want 2, SUD 2, 2", rep.Records, rep.Gained, rep.HandChanged)
	}
	rederivedOnce(t, v, 2)
	v.view(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta).Get(keyRederiving) != nil {
			t.Error("the report of the run cut short is still stored")
		}
		return nil
	})
	mustVerify(t, v, "after a run cut short and one that completed it")
}

// A newer version whose content gives a label the patient removed from the
// resource by hand brings it back on every version (new content, which the
// patient had not judged; labels cover every version), and the patient is
// told.
func TestRederiveNewVersionBringsRemovedLabelBack(t *testing.T) {
	const (
		v1 = `{"resourceType":"Condition","id":"c","code":{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}}`
		v2 = `{"resourceType":"Condition","id":"c","code":{"text":"newly-listed"}}`
	)
	v := newTestVault(t)
	importString(t, v, "a.ndjson", v1+"\n")
	if _, _, err := v.SetLabels(findFHIR(t, v, "Condition/c").ID, nil, []record.Label{record.MH}); err != nil {
		t.Fatal(err)
	}
	importString(t, v, "b.ndjson", v2+"\n")
	v.Close()
	newerListsGiving(t, record.MH)
	w, err := Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if rep := w.Rederived(); rep.Records != 1 || rep.Overrode != 1 {
		t.Errorf("report %+v, want 1 record relabelled and 1 hand removal undone", rep)
	}
	for _, m := range versionsOf(t, w, "Condition", "c") {
		if !slices.Equal(m.Labels, []record.Label{record.MH}) || len(m.HandRemoved) != 0 {
			t.Errorf("version %d: labels %v, removed %v; want [MH], none", m.FHIR.Version, m.Labels, m.HandRemoved)
		}
	}
	mustVerify(t, w, "new version")
}

// A label that is not new does not undo a removal by hand on a record that
// references the resource: not a re-export of an Encounter that was MH all
// along, not "+MH" by hand on an Encounter that has MH.
func TestHandRemovalOnReferrerHoldsAgainstOldLabels(t *testing.T) {
	const (
		e1 = `{"resourceType":"Encounter","id":"e","status":"in-progress","class":{"code":"AMB"},"reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
		e2 = `{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"},"reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
		cl = `{"resourceType":"Claim","id":"c","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
	)
	v := newTestVault(t)
	importString(t, v, "a.ndjson", e1+"\n"+cl+"\n")
	if m := findFHIR(t, v, "Claim/c"); !slices.Equal(m.Labels, []record.Label{record.MH}) {
		t.Fatalf("Claim after import: %v, want [MH]", m.Labels)
	}
	if _, _, err := v.SetLabels(findFHIR(t, v, "Claim/c").ID, nil, []record.Label{record.MH}); err != nil {
		t.Fatal(err)
	}
	_, others, err := v.SetLabels(findFHIR(t, v, "Encounter/e").ID, []record.Label{record.MH}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := findFHIR(t, v, "Claim/c"); len(m.Labels) != 0 || others.Overrode != 0 || others.Referrers != 0 {
		t.Errorf("Claim after +MH on an Encounter that had MH: labels %v, %d referrers, %d overrode", m.Labels, others.Referrers, others.Overrode)
	}
	st := importString(t, v, "b.ndjson", e2+"\n")
	if m := findFHIR(t, v, "Claim/c"); len(m.Labels) != 0 || !slices.Equal(m.HandRemoved, []record.Label{record.MH}) || st.RelabelledHand != 0 {
		t.Errorf("Claim after a re-export of its MH Encounter: labels %v, removed %v, %d hand removals undone", m.Labels, m.HandRemoved, st.RelabelledHand)
	}
	mustVerify(t, v, "old labels")
}

// Without the reference index, and one record damaged so it cannot be
// built, no labels are derived (they could not spread, and a later run
// would find nothing left to spread) and the rules stay as they were; once
// the damaged record is gone, the next open derives and spreads them.
func TestRederiveWaitsForTheIndex(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n"+
		`{"resourceType":"Claim","id":"cl","status":"active","diagnosis":[{"sequence":1,"diagnosisReference":{"reference":"Condition/c1"}}]}`+"\n"+
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"}}`+"\n")
	bad := findFHIR(t, v, "Observation/o1").ID
	v.Close()
	editDB(t, v.dir, func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketRefs); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketTargets); err != nil {
			return err
		}
		return flipLastByte(tx.Bucket(bucketChunks), chunkKey(bad, 0))
	})
	newerLists(t)
	w, err := Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep := w.Rederived(); rep == nil || rep.NoIndex == nil || rep.Records != 0 {
		t.Fatalf("report %+v, want the index missing and nothing relabelled", rep)
	}
	if ls := findFHIR(t, w, "Condition/c1").Labels; len(ls) != 0 {
		t.Errorf("Condition/c1 relabelled %v though its label could not spread", ls)
	}
	if err := w.Remove(bad); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w, err = Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if rep := w.Rederived(); rep == nil || rep.NoIndex != nil || rep.Records != 1 || rep.Propagated != 1 {
		t.Errorf("report once the damage is gone %+v", rep)
	}
	for _, key := range []string{"Condition/c1", "Claim/cl"} {
		if ls := findFHIR(t, w, key).Labels; !slices.Equal(ls, []record.Label{record.SUD}) {
			t.Errorf("%s: %v, want [SUD]", key, ls)
		}
	}
}

// Deriving under the same lists gives real records nothing an import did
// not: fhir.ResourceLabels reads what the importer reads.
func TestRederiveSameListsAddsNothingSynthea(t *testing.T) {
	files := syntheaFiles(t)
	v := newTestVault(t)
	for _, f := range files[:min(3, len(files))] {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Import(f, fh, nil)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	labelRules = func() string { return "test-same-lists" }
	t.Cleanup(func() { labelRules = fhir.LabelRules })
	if err := v.rederive(nil); err != nil {
		t.Fatal(err)
	}
	rep := v.Rederived()
	if rep.Checked < 100 || rep.Records != 0 || rep.Unreadable != 0 {
		t.Errorf("%d records checked, %d gained labels %v, %d unreadable; want none gaining", rep.Checked, rep.Records, rep.Gained, rep.Unreadable)
	}
}

// Another vault's sealed rules do not open here: the vault is refused as
// tampered, not derived again under a stranger's name.
func TestRederiveRulesOfAnotherVault(t *testing.T) {
	a, b := newTestVault(t), newTestVault(t)
	a.Close()
	b.Close()
	var theirs []byte
	editDB(t, b.dir, func(tx *bbolt.Tx) error { theirs = bytes.Clone(tx.Bucket(bucketMeta).Get(keyLabelRules)); return nil })
	editDB(t, a.dir, func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyLabelRules, theirs) })
	if _, err := Open(a.dir, a.id, Options{}); err == nil {
		t.Fatal("another vault's rules accepted")
	}
}

// Records received from a patient keep the labels they came with: the
// patient's vault labelled them, under its own lists.
func TestRederiveLeavesReceivedRecords(t *testing.T) {
	v := newTestVault(t)
	plain := []byte(`{"resourceType":"Condition","id":"rc","code":{"text":"newly-listed"}}`)
	n := NewRecord{Category: record.Problems, Title: "Condition", FHIR: &FHIRInfo{Type: "Condition", ID: "rc", Version: 1}}
	m, err := v.AddCiphertext(bytes.NewReader(receivedFile(t, v, plain)), n,
		Received{Size: int64(len(plain)), From: mustIdentity(t).ID(), SourceID: record.NewID()})
	if err != nil {
		t.Fatal(err)
	}
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n")
	v.Close()
	newerLists(t)
	w, err := Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if rep := w.Rederived(); rep.Checked != 1 || rep.Records != 1 {
		t.Errorf("report %+v, want the imported record alone checked and relabelled", rep)
	}
	got, err := w.Show(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != 0 {
		t.Errorf("received record relabelled %v", got.Labels)
	}
}

// A run whose transaction fails (here the ledger's stored hashes lack the
// last entry's, so no entry can follow it) ends without failing Open: the
// patient can still list, export and verify; the rules stay as they were,
// so the next open tries again.
func TestRederiveFailureDoesNotLockOut(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n")
	v.Close()
	editDB(t, v.dir, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("ledger")).Bucket([]byte("hashes"))
		k, _ := b.Cursor().Last()
		return b.Delete(k)
	})
	newerLists(t)
	openEach(t, v, 2, func(i int, w *Vault) {
		rep := w.Rederived()
		if rep == nil || rep.Failed == nil || rep.Records != 0 {
			t.Errorf("open %d: report %+v, want a failure and nothing relabelled", i+1, rep)
		}
		if ms, err := w.List(Filter{}); err != nil || len(ms) != 1 || len(ms[0].Labels) != 0 {
			t.Errorf("open %d: list %v %v", i+1, ms, err)
		}
	})
}

// openEach opens the closed vault v n times, calling f with each.
func openEach(t *testing.T, v *Vault, n int, f func(i int, w *Vault)) {
	t.Helper()
	for i := range n {
		w, err := Open(v.dir, v.id, Options{})
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		f(i, w)
		w.Close()
	}
}

// makeFormat2 turns v into a format 2 vault: no rules stored, hand removals
// not kept.
func makeFormat2(t *testing.T, v *Vault) {
	t.Helper()
	if err := v.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Delete(keyLabelRules); err != nil {
			return err
		}
		return putFormat(tx, formatKept)
	}); err != nil {
		t.Fatal(err)
	}
}

// forgetHandRemoved clears a record's HandRemoved, as a format 2 vault
// never kept it (the ledger keeps the hand label entry).
func forgetHandRemoved(t *testing.T, v *Vault, id record.ID) {
	t.Helper()
	if err := v.update(func(tx *bbolt.Tx) error {
		m, err := v.meta1(tx, id)
		if err != nil {
			return err
		}
		m.HandRemoved = nil
		return v.putMetaEvent(tx, m, Event{Action: ledger.ActionLabel, Reason: "test-format2"})
	}); err != nil {
		t.Fatal(err)
	}
}

// In a format 2 vault, a referrer whose labels the patient changed by hand
// (here: removed SUD, which format 2 did not keep) and that gets a label
// through a reference is named for the patient to check, as the record the
// label came from would be.
func TestRederiveFormat2NamesHandChangedReferrer(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n"+
		`{"resourceType":"Claim","id":"cl","status":"active","diagnosis":[{"sequence":1,"diagnosisReference":{"reference":"Condition/c1"}}]}`+"\n")
	cl := findFHIR(t, v, "Claim/cl").ID
	// The patient had SUD on the Claim, removed it by hand (format 2: not kept).
	if _, _, err := v.SetLabels(cl, []record.Label{record.SUD}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.SetLabels(cl, nil, []record.Label{record.SUD}); err != nil {
		t.Fatal(err)
	}
	forgetHandRemoved(t, v, cl)
	makeFormat2(t, v)
	newerLists(t)
	if err := v.rederive(nil); err != nil {
		t.Fatal(err)
	}
	rep := v.Rederived()
	if rep.Propagated != 1 {
		t.Fatalf("report %+v, want the Claim relabelled through its reference", rep)
	}
	if got := findFHIR(t, v, "Claim/cl").Labels; !slices.Equal(got, []record.Label{record.SUD}) {
		t.Fatalf("Claim labels %v", got)
	}
	if !slices.Contains(rep.HandChanged, cl) {
		t.Errorf("Claim whose SUD was removed by hand in a format 2 vault got SUD back through a reference, and is not named: HandChanged %v", rep.HandChanged)
	}
}

// Each record is named once, however many of its versions' labels reach it.
func TestRederiveNamesEachRecordOnce(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c","code":{"text":"newly-a"}}`+"\n")
	importString(t, v, "b.ndjson", `{"resourceType":"Condition","id":"c","code":{"text":"newly-b"}}`+"\n")
	if _, _, err := v.SetLabels(findFHIR(t, v, "Condition/c").ID, []record.Label{record.MH}, nil); err != nil {
		t.Fatal(err)
	}
	makeFormat2(t, v)
	newerListsMarking(t, map[string]record.Label{"newly-a": record.SUD, "newly-b": record.HIV})
	if err := v.rederive(nil); err != nil {
		t.Fatal(err)
	}
	rep := v.Rederived()
	uniq := slices.Clone(rep.HandChanged)
	slices.SortFunc(uniq, func(a, b record.ID) int { return bytes.Compare(a[:], b[:]) })
	uniq = slices.Compact(uniq)
	if len(rep.HandChanged) != len(uniq) {
		t.Errorf("HandChanged has %d entries for %d records: %v", len(rep.HandChanged), len(uniq), rep.HandChanged)
	}
}

// A record whose hand removals two other versions' content undoes counts
// once.
func TestRederiveCountsEachRecordOnce(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c","code":{"text":"plain"}}`+"\n")
	first := findFHIR(t, v, "Condition/c").ID
	if _, _, err := v.SetLabels(first, []record.Label{record.SUD, record.HIV}, nil); err != nil {
		t.Fatal(err)
	}
	importString(t, v, "b.ndjson", `{"resourceType":"Condition","id":"c","code":{"text":"newly-a"}}`+"\n")
	importString(t, v, "c.ndjson", `{"resourceType":"Condition","id":"c","code":{"text":"newly-b"}}`+"\n")
	// Remove both by hand from every version (all three have HandRemoved).
	if _, _, err := v.SetLabels(first, nil, []record.Label{record.SUD, record.HIV}); err != nil {
		t.Fatal(err)
	}
	// Only v1 keeps the removals; v2 and v3 as if imported after them.
	for _, m := range versionsOf(t, v, "Condition", "c") {
		if m.ID != first {
			forgetHandRemoved(t, v, m.ID)
		}
	}
	newerListsMarking(t, map[string]record.Label{"newly-a": record.SUD, "newly-b": record.HIV})
	if err := v.rederive(nil); err != nil {
		t.Fatal(err)
	}
	if rep := v.Rederived(); rep.Overrode != 1 {
		t.Errorf("Overrode %d, but one record (version 1) had hand removals undone", rep.Overrode)
	}
}

// A reference index entry whose record is gone (damage; verify reports it)
// is passed over: the run completes and the others are relabelled.
func TestRederivePassesOverDanglingReferrer(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n"+
		`{"resourceType":"Claim","id":"cl","status":"active","diagnosis":[{"sequence":1,"diagnosisReference":{"reference":"Condition/c1"}}]}`+"\n")
	cl := findFHIR(t, v, "Claim/cl").ID
	v.Close()
	editDB(t, v.dir, func(tx *bbolt.Tx) error { return tx.Bucket(bucketRecords).Delete(cl[:]) })
	newerLists(t)
	openEach(t, v, 2, func(i int, w *Vault) {
		rep := w.Rederived()
		if rep != nil && rep.Failed != nil {
			t.Errorf("open %d: run failed: %v", i+1, rep.Failed)
		}
		if ls := findFHIR(t, w, "Condition/c1").Labels; !slices.Equal(ls, []record.Label{record.SUD}) {
			t.Errorf("open %d: Condition/c1 labels %v, want [SUD]", i+1, ls)
		}
	})
}

// An unchanged re-export of an MH Encounter, named by fullUrl in a Bundle,
// passes its labels on from the vault (spreadVault): the Claim the patient
// took MH off stays as she left it.
func TestImportUnchangedReexportKeepsReferrerRemoval(t *testing.T) {
	const (
		e  = `{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"},"reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
		cl = `{"resourceType":"Claim","id":"c","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
	)
	v := newTestVault(t)
	importString(t, v, "a.ndjson", e+"\n"+cl+"\n")
	if _, _, err := v.SetLabels(findFHIR(t, v, "Claim/c").ID, nil, []record.Label{record.MH}); err != nil {
		t.Fatal(err)
	}
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"http://ehr.example/fhir/Encounter/e","resource":` + e + `}]}`
	st := importString(t, v, "b.json", bundle)
	m := findFHIR(t, v, "Claim/c")
	if len(m.Labels) != 0 || st.RelabelledHand != 0 {
		t.Errorf("Claim after an unchanged re-export of its MH Encounter: labels %v, removed %v, %d hand removals undone", m.Labels, m.HandRemoved, st.RelabelledHand)
	}
	mustVerify(t, v, "unchanged re-export")
}

// A new version of the Claim itself is new content: it inherits MH from its
// Encounter, and since labels cover every version, the first version gets
// MH back though the patient had removed it there; the import says so.
func TestImportNewReferrerVersionCoversEveryVersion(t *testing.T) {
	const (
		e   = `{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"},"reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
		cl  = `{"resourceType":"Claim","id":"c","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
		cl2 = `{"resourceType":"Claim","id":"c","status":"cancelled","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
	)
	v := newTestVault(t)
	importString(t, v, "a.ndjson", e+"\n"+cl+"\n")
	first := findFHIR(t, v, "Claim/c").ID
	if _, _, err := v.SetLabels(first, nil, []record.Label{record.MH}); err != nil {
		t.Fatal(err)
	}
	st := importString(t, v, "b.ndjson", e+"\n"+cl2+"\n")
	for _, m := range versionsOf(t, v, "Claim", "c") {
		if !slices.Equal(m.Labels, []record.Label{record.MH}) || len(m.HandRemoved) != 0 {
			t.Errorf("Claim version %d: labels %v, removed %v; want [MH], none", m.FHIR.Version, m.Labels, m.HandRemoved)
		}
	}
	if st.RelabelledHand != 1 {
		t.Errorf("%d hand removals undone reported, want 1", st.RelabelledHand)
	}
	mustVerify(t, v, "new referrer version")
}

// claimOfTwo imports two Conditions whose content the newer lists label
// (newly-a: SUD, newly-b: MH) and a Claim referencing both, from which the
// patient removed SUD and MH by hand.
func claimOfTwo(t *testing.T) (*Vault, record.ID) {
	t.Helper()
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c1","code":{"text":"newly-a"}}`+"\n"+
		`{"resourceType":"Condition","id":"c2","code":{"text":"newly-b"}}`+"\n"+
		`{"resourceType":"Claim","id":"cl","status":"active","diagnosis":[{"sequence":1,"diagnosisReference":{"reference":"Condition/c1"}},{"sequence":2,"diagnosisReference":{"reference":"Condition/c2"}}]}`+"\n")
	cl := findFHIR(t, v, "Claim/cl").ID
	if _, _, err := v.SetLabels(cl, nil, []record.Label{record.SUD, record.MH}); err != nil {
		t.Fatal(err)
	}
	newerListsMarking(t, map[string]record.Label{"newly-a": record.SUD, "newly-b": record.MH})
	return v, cl
}

// A Claim reached from two Conditions, one in a run cut short and one in
// the run that completes it, counts once: the records a run counted are
// kept with its report.
func TestRederiveCutShortCountsRecordOnce(t *testing.T) {
	v, cl := claimOfTwo(t)
	rep := cutShortThenComplete(t, v, func(raw []byte) bool { return bytes.Contains(raw, []byte("newly-")) })
	m, err := v.Show(cl)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Labels, []record.Label{record.MH, record.SUD}) && !slices.Equal(m.Labels, []record.Label{record.SUD, record.MH}) {
		t.Fatalf("Claim labels %v", m.Labels)
	}
	if rep.Propagated != 1 || rep.Overrode != 1 {
		t.Errorf("after a run cut short: Propagated %d, Overrode %d for one Claim; want 1, 1", rep.Propagated, rep.Overrode)
	}
	v.view(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketMeta).Cursor().Seek(keyRederivingIDs); k != nil && bytes.HasPrefix(k, keyRederivingIDs) {
			t.Error("the records the run cut short counted are still stored after the run that completed it")
		}
		return nil
	})
	mustVerify(t, v, "after a run cut short and one that completed it")
}

// cutShortThenComplete derives labels in batches of one record, cuts the
// run short (a panic, as a kill) at the second record whose content counts
// says to count, then runs it again to completion and returns its report.
func cutShortThenComplete(t *testing.T, v *Vault, counts func(raw []byte) bool) *Rederivation {
	t.Helper()
	rederiveBatch = 1
	t.Cleanup(func() { rederiveBatch = 256 })
	inner := resourceLabels
	seen := 0
	resourceLabels = func(raw []byte, u string) ([]record.Label, error) {
		if counts(raw) {
			if seen++; seen == 2 {
				panic("cut short")
			}
		}
		return inner(raw, u)
	}
	func() {
		defer func() { recover() }()
		v.rederive(nil)
	}()
	resourceLabels = inner
	v.rederived = nil
	if err := v.rederive(nil); err != nil {
		t.Fatal(err)
	}
	return v.Rederived()
}
