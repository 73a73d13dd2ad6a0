package vault

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/record"
)

// A label added by hand reaches the records that reference the resource,
// whatever the order: a Claim imported before its Encounter was labelled MH
// by hand ends MH, as one imported after it does, and so does the EOB that
// references the Claim (a billing grant without MH must not share either).
// A record the reference index knows nothing of is left alone, and so is a
// record whose label the patient removed by hand, for labels not added now.
func TestHandLabelReachesEarlierReferrers(t *testing.T) {
	const (
		enc   = `{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"}}`
		claim = `{"resourceType":"Claim","id":"c","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
		eob   = `{"resourceType":"ExplanationOfBenefit","id":"x","status":"active","claim":{"reference":"Claim/c"}}`
		other = `{"resourceType":"Claim","id":"o","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/unrelated"}]}]}`
	)
	find := findFHIR

	for _, order := range []string{"label, then import the claim", "import the claim, then label"} {
		t.Run(order, func(t *testing.T) {
			v := newTestVault(t)
			importString(t, v, "enc.ndjson", enc+"\n")
			if order == "import the claim, then label" {
				importString(t, v, "claim.ndjson", claim+"\n"+eob+"\n"+other+"\n")
			}
			if _, _, err := v.SetLabels(find(t, v, "Encounter/e").ID, []record.Label{record.MH}, nil); err != nil {
				t.Fatal(err)
			}
			if order == "label, then import the claim" {
				importString(t, v, "claim.ndjson", claim+"\n"+eob+"\n"+other+"\n")
			}
			checkAllMH(t, v, order, "Encounter/e", "Claim/c", "ExplanationOfBenefit/x")
			if ls := find(t, v, "Claim/o").Labels; len(ls) != 0 {
				t.Errorf("%s: unrelated Claim/o labelled %v", order, ls)
			}
			mustVerify(t, v, order)
		})
	}

	// Only the labels added travel: SUD added to the Encounter does not put
	// back the MH the patient removed from the Claim.
	v := newTestVault(t)
	importString(t, v, "all.ndjson", enc+"\n"+claim+"\n"+eob+"\n")
	e := find(t, v, "Encounter/e")
	if _, others, err := v.SetLabels(e.ID, []record.Label{record.MH}, nil); err != nil || others.Referrers != 2 {
		t.Fatalf("+MH on the Encounter: %v, %d referrers relabelled, want 2 (the Claim and the EOB)", err, others.Referrers)
	}
	if _, _, err := v.SetLabels(find(t, v, "Claim/c").ID, nil, []record.Label{record.MH}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.SetLabels(e.ID, []record.Label{record.SUD}, nil); err != nil {
		t.Fatal(err)
	}
	if got := find(t, v, "Claim/c").Labels; !slices.Equal(got, []record.Label{record.SUD}) {
		t.Errorf("Claim/c after -MH on it and +SUD on its Encounter: %v, want [SUD]", got)
	}
	if got := find(t, v, "ExplanationOfBenefit/x").Labels; !slices.Equal(got, []record.Label{record.MH, record.SUD}) {
		t.Errorf("EOB/x: %v, want [MH SUD]", got)
	}
	mustVerify(t, v, "removed by hand")

	// The spread stops at a record that had the label already, as an
	// import's does: the Claim is MH of its own (an MH diagnosis), the EOB
	// inherited MH and the patient removed it; MH added to the Encounter
	// does not reach the EOB through the Claim.
	const mhClaim = `{"resourceType":"Claim","id":"c","status":"active","diagnosis":[{"sequence":1,"diagnosisCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}}],"item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
	v = newTestVault(t)
	importString(t, v, "all.ndjson", enc+"\n"+mhClaim+"\n"+eob+"\n")
	if got := find(t, v, "ExplanationOfBenefit/x").Labels; !slices.Equal(got, []record.Label{record.MH}) {
		t.Fatalf("EOB/x after import: %v, want [MH]", got)
	}
	if _, _, err := v.SetLabels(find(t, v, "ExplanationOfBenefit/x").ID, nil, []record.Label{record.MH}); err != nil {
		t.Fatal(err)
	}
	if _, others, err := v.SetLabels(find(t, v, "Encounter/e").ID, []record.Label{record.MH}, nil); err != nil || others.Referrers != 0 {
		t.Fatalf("+MH on the Encounter: %v, %d referrers relabelled, want 0", err, others.Referrers)
	}
	if got := find(t, v, "ExplanationOfBenefit/x").Labels; len(got) != 0 {
		t.Errorf("EOB/x: %v after MH was removed from it by hand and added to the Encounter, want none", got)
	}
	mustVerify(t, v, "stops where the label was")
}

// A label added by hand while an import runs waits for it: the import has
// read the labels of the records it references, and its own records are
// hidden until it ends, so a label added in between would reach neither.
func TestHandLabelWaitsForImport(t *testing.T) {
	const (
		enc   = `{"resourceType":"Encounter","id":"e","status":"finished"}`
		claim = `{"resourceType":"Claim","id":"c","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
	)
	v := newTestVault(t)
	importString(t, v, "enc.ndjson", enc+"\n")
	ms, _ := v.List(Filter{})
	encID := ms[0].ID
	labelled := make(chan error, 1)
	testImportDies = func(p string) bool {
		if p != "indexed" {
			return false
		}
		testImportDies = nil
		// The import's records are written and hidden: label now, and
		// give the label time to finish if nothing holds it back.
		go func() {
			_, _, err := v.SetLabels(encID, []record.Label{record.MH}, nil)
			labelled <- err
		}()
		select {
		case err := <-labelled:
			labelled <- err
		case <-time.After(300 * time.Millisecond):
		}
		return false
	}
	t.Cleanup(func() { testImportDies = nil })
	importString(t, v, "claim.ndjson", claim+"\n")
	if err := <-labelled; err != nil {
		t.Fatal(err)
	}
	ms, _ = v.List(Filter{})
	for _, m := range ms {
		if !slices.Equal(m.Labels, []record.Label{record.MH}) {
			t.Errorf("%s/%s: labels %v, want [MH]", m.FHIR.Type, m.FHIR.ID, m.Labels)
		}
	}
	mustVerify(t, v, "label during import")
}

// A record reached through two referenced records that gained different
// labels gets both: the spread carries on from each record the labels it
// gained, and reaching a record once with some of them must not stop the
// others on their way to it.
func TestHandLabelSpreadsEachGainedLabel(t *testing.T) {
	const (
		enc = `{"resourceType":"Encounter","id":"e","status":"finished"}`
		ca  = `{"resourceType":"Claim","id":"a","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
		cb  = `{"resourceType":"Claim","id":"b","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
		eob = `{"resourceType":"ExplanationOfBenefit","id":"x","status":"active","claim":{"reference":"Claim/a"},"related":[{"claim":{"reference":"Claim/b"}}]}`
	)
	v := newTestVault(t)
	importString(t, v, "all.ndjson", enc+"\n"+ca+"\n"+cb+"\n"+eob+"\n")
	id := func(key string) record.ID {
		t.Helper()
		return findFHIR(t, v, key).ID
	}
	set := func(key string, add, rm []record.Label) *Meta {
		t.Helper()
		m, _, err := v.SetLabels(id(key), add, rm)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	both := []record.Label{record.MH, record.SUD}
	// Claim/a is MH, Claim/b SUD, and the patient took both off the EOB.
	set("Claim/a", []record.Label{record.MH}, nil)
	set("Claim/b", []record.Label{record.SUD}, nil)
	if got := set("ExplanationOfBenefit/x", nil, both).Labels; len(got) != 0 {
		t.Fatalf("EOB/x: %v, want none", got)
	}
	// MH and SUD on the Encounter: Claim/a gains SUD and Claim/b MH, and
	// each passes on what it gained to the EOB.
	set("Encounter/e", both, nil)
	for _, key := range []string{"Claim/a", "Claim/b", "ExplanationOfBenefit/x"} {
		m, err := v.Show(id(key))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(m.Labels, both) {
			t.Errorf("%s: %v, want %v", key, m.Labels, both)
		}
	}
	mustVerify(t, v, "two paths")
}

// A label waiting for an import holds up no other import: the node runs
// commands at once, and an import may read a pipe that pauses ('producer |
// medvault import -'). A label that waits too long fails, changing nothing.
func TestHandLabelWaitingHoldsUpNoImport(t *testing.T) {
	const (
		enc   = `{"resourceType":"Encounter","id":"e","status":"finished"}`
		claim = `{"resourceType":"Claim","id":"c","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
		obs   = `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"}}`
	)
	v := newTestVault(t)
	importString(t, v, "enc.ndjson", enc+"\n")
	ms, _ := v.List(Filter{})
	encID := ms[0].ID

	// An import reading a pipe that has paused.
	pr, pw := io.Pipe()
	imported := make(chan error, 1)
	go func() {
		_, err := v.Import("pipe", pr, nil)
		imported <- err
	}()
	if _, err := io.WriteString(pw, claim+"\n"); err != nil { // read: the import runs
		t.Fatal(err)
	}

	// A label that gives up fails with ErrImportRunning and changes nothing.
	defer func(d time.Duration) { labelWait = d }(labelWait)
	labelWait = 20 * time.Millisecond
	if _, _, err := v.SetLabels(encID, []record.Label{record.MH}, nil); !errors.Is(err, ErrImportRunning) || !errors.Is(err, ErrLocked) {
		t.Fatalf("label during a paused import: %v, want ErrImportRunning", err)
	}

	// One that waits for it does not stop another import from running.
	labelWait = time.Hour
	labelled := make(chan error, 1)
	go func() {
		_, _, err := v.SetLabels(encID, []record.Label{record.MH}, nil)
		labelled <- err
	}()
	time.Sleep(50 * time.Millisecond) // the label is waiting
	other := make(chan error, 1)
	go func() {
		_, err := v.Import("other", strings.NewReader(obs+"\n"), nil)
		other <- err
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a hang, not a measure of speed
		t.Fatal("an import waits for a label that waits for a paused import")
	}
	pw.Close()
	if err := <-imported; err != nil {
		t.Fatal(err)
	}
	if err := <-labelled; err != nil {
		t.Fatal(err)
	}
	ms, _ = v.List(Filter{})
	for _, m := range ms {
		want := []record.Label{record.MH}
		if m.FHIR.Type == "Observation" {
			want = nil
		}
		if !slices.Equal(m.Labels, want) {
			t.Errorf("%s/%s: labels %v, want %v", m.FHIR.Type, m.FHIR.ID, m.Labels, want)
		}
	}
	mustVerify(t, v, "label waits")
}

// findFHIR returns the stored record of the FHIR resource key ("Type/id").
func findFHIR(t *testing.T, v *Vault, key string) *Meta {
	t.Helper()
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.FHIR != nil && m.FHIR.Type+"/"+m.FHIR.ID == key {
			return m
		}
	}
	t.Fatalf("%s not stored", key)
	return nil
}

// A label the patient removed from a record by hand is put back when it
// reaches the record anew through a reference, by hand or by an import (a
// sensitive record stays out unless named): the record no longer lists it
// as removed, so show does not contradict itself, and the patient is told
// how many such records there were. Records beyond it gain it too.
func TestHandRemovedBackThroughReferences(t *testing.T) {
	const (
		enc   = `{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"}}`
		mhEnc = `{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"},"reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
		claim = `{"resourceType":"Claim","id":"c","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
		eob   = `{"resourceType":"ExplanationOfBenefit","id":"x","status":"active","claim":{"reference":"Claim/c"}}`
	)
	find := findFHIR
	mh := []record.Label{record.MH}
	// MH on the Encounter reaches the Claim and the EOB; the patient takes
	// it off both, then off the Encounter.
	setup := func(t *testing.T) *Vault {
		v := newTestVault(t)
		importString(t, v, "all.ndjson", enc+"\n"+claim+"\n"+eob+"\n")
		for _, step := range []struct {
			key     string
			add, rm []record.Label
		}{{"Encounter/e", mh, nil}, {"Claim/c", nil, mh}, {"ExplanationOfBenefit/x", nil, mh}, {"Encounter/e", nil, mh}} {
			if _, _, err := v.SetLabels(find(t, v, step.key).ID, step.add, step.rm); err != nil {
				t.Fatal(err)
			}
		}
		for _, key := range []string{"Claim/c", "ExplanationOfBenefit/x"} {
			if m := find(t, v, key); len(m.Labels) != 0 || !slices.Equal(m.HandRemoved, mh) {
				t.Fatalf("%s after -MH by hand: labels %v, removed %v", key, m.Labels, m.HandRemoved)
			}
		}
		return v
	}
	check := func(t *testing.T, v *Vault, when string) {
		t.Helper()
		for _, key := range []string{"Claim/c", "ExplanationOfBenefit/x"} {
			if m := find(t, v, key); !slices.Equal(m.Labels, mh) || len(m.HandRemoved) != 0 {
				t.Errorf("%s %s: labels %v, removed by hand %v; want [MH], none", key, when, m.Labels, m.HandRemoved)
			}
		}
		mustVerify(t, v, when)
	}

	t.Run("label again by hand", func(t *testing.T) {
		v := setup(t)
		_, others, err := v.SetLabels(find(t, v, "Encounter/e").ID, mh, nil)
		if err != nil {
			t.Fatal(err)
		}
		if others.Referrers != 2 || others.Overrode != 2 {
			t.Errorf("+MH on the Encounter again: %d referrers relabelled, %d of them removed by hand; want 2, 2", others.Referrers, others.Overrode)
		}
		check(t, v, "after MH was added to its Encounter again")
	})

	t.Run("import a labelled version", func(t *testing.T) {
		v := setup(t)
		st := importString(t, v, "enc2.ndjson", mhEnc+"\n")
		// The Encounter's first version (its labels cover every version),
		// the Claim and the EOB.
		if st.Relabelled != 3 || st.RelabelledHand != 3 {
			t.Errorf("import relabelled %d earlier records, %d removed by hand; want 3, 3", st.Relabelled, st.RelabelledHand)
		}
		check(t, v, "after an import brought an MH version of its Encounter")
	})

	t.Run("an unrelated label", func(t *testing.T) {
		v := setup(t)
		_, others, err := v.SetLabels(find(t, v, "Encounter/e").ID, []record.Label{record.SUD}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if others.Overrode != 0 {
			t.Errorf("+SUD on the Encounter: %d records had a hand removal undone, want 0", others.Overrode)
		}
		if m := find(t, v, "Claim/c"); !slices.Equal(m.Labels, []record.Label{record.SUD}) || !slices.Equal(m.HandRemoved, mh) {
			t.Errorf("Claim/c after +SUD on its Encounter: labels %v, removed %v; want [SUD], [MH]", m.Labels, m.HandRemoved)
		}
	})
}
