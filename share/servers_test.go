package share

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// Tests of resources with one type and id from two servers (an id is
// unique on one server only: vault's seriesOf), from a review of 4750a67.

func importString(t *testing.T, v *vault.Vault, name, data string) {
	t.Helper()
	if _, err := v.Import(name, strings.NewReader(data), nil); err != nil {
		t.Fatalf("import %s: %v", name, err)
	}
}

func findTitle(t *testing.T, v *vault.Vault, title string) *vault.Meta {
	t.Helper()
	ms, err := v.List(vault.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Title == title {
			return m
		}
	}
	t.Fatalf("no record titled %q", title)
	return nil
}

// grantTitles returns the titles of the records a grant of scope sc and
// labels covers, sorted.
func grantTitles(t *testing.T, v *vault.Vault, sc Scope, labels ...record.Label) []string {
	t.Helper()
	infos, err := RecordInfos(v)
	if err != nil {
		t.Fatal(err)
	}
	g, err := IssueGrant(v.Owner(), GrantParams{Audience: seedSigner(0x02).ID(), Vault: VaultID(v.VaultID()),
		Scope: sc, Labels: labels, Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range Select(g, infos).Items {
		got = append(got, mustShow(t, v, id).Title)
	}
	slices.Sort(got)
	return got
}

// Removing a label by hand from the hospital's Condition/1 must not remove
// it from the clinic's Condition/1, another resource: SetLabels applied the
// removal to every record of the type and id (otherVersions), so the
// clinic's depression lost MH, was marked hand-removed, and went out under
// a problems grant that names no MH. A label added by hand still reaches
// the other server's resource (labels spread by type and id, erring
// toward withholding), and is counted as such, not as a version.
func TestHandRemovalStaysOnItsServer(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	importString(t, patient, "hospital.json", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"https://hospital.example/fhir/Condition/1","resource":{"resourceType":"Condition","id":"1","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F51.01"}],"text":"Primary insomnia"}}}]}`)
	importString(t, patient, "clinic.json", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"https://clinic.example/r4/Condition/1","resource":{"resourceType":"Condition","id":"1","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F32.9"}],"text":"Major depressive disorder"}}}]}`)
	ins := findTitle(t, patient, "Primary insomnia")
	dep := findTitle(t, patient, "Major depressive disorder")
	if !slices.Contains(dep.Labels, record.MH) {
		t.Fatalf("the depression is not MH: %v", dep.Labels)
	}
	// The patient judges the hospital's insomnia not sensitive.
	_, others, err := patient.SetLabels(ins.ID, nil, []record.Label{record.MH})
	if err != nil {
		t.Fatal(err)
	}
	if others != (vault.Relabelled{}) {
		t.Errorf("removing MH from the hospital's record changed others: %+v", others)
	}
	if ins = mustShow(t, patient, ins.ID); slices.Contains(ins.Labels, record.MH) || !slices.Contains(ins.HandRemoved, record.MH) {
		t.Errorf("the insomnia: labels %v, hand-removed %v", ins.Labels, ins.HandRemoved)
	}
	dep = mustShow(t, patient, dep.ID)
	if !slices.Contains(dep.Labels, record.MH) || len(dep.HandRemoved) != 0 {
		t.Errorf("the clinic's depression lost MH when the hospital's insomnia had it removed: labels %v, hand-removed %v", dep.Labels, dep.HandRemoved)
	}
	if got := grantTitles(t, patient, Scope{Categories: []record.Category{record.Problems}}); !slices.Equal(got, []string{"Primary insomnia"}) {
		t.Errorf("a problems grant without MH covers %q", got)
	}
	// Additions still cross servers, and say so.
	if _, others, err = patient.SetLabels(ins.ID, []record.Label{record.SUD}, nil); err != nil {
		t.Fatal(err)
	}
	if want := (vault.Relabelled{SameID: 1}); others != want {
		t.Errorf("adding SUD: others %+v, want %+v", others, want)
	}
	if dep = mustShow(t, patient, dep.ID); !slices.Contains(dep.Labels, record.SUD) {
		t.Errorf("the clinic's Condition/1 did not gain SUD: %v", dep.Labels)
	}
}
