package vault

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// On a real Synthea patient, whose references are all written as
// urn:uuid:<id>, a label added by hand to an Encounter reaches the same
// records whether the patient's data came as the Bundle (where the
// urn:uuid fullUrls resolve them) or as bulk-data NDJSON of the same
// resources (no fullUrls: the reference index keeps "urn:uuid:<id>" as
// written, and spreadAdded finds those referrers through referrerKeys).
// Before, the NDJSON Encounter's label reached no Claim or EOB.
func TestHandLabelReachesUUIDReferrersSynthea(t *testing.T) {
	files := syntheaFiles(t)
	var file string
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "Milan_Beatty_") {
			file = f
		}
	}
	if file == "" {
		t.Skip("Milan_Beatty's bundle not in " + sharedFHIR)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := fhir.ReadAll(bytes.NewReader(data), file, fhir.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var nd bytes.Buffer
	for _, r := range rs {
		if err := json.Compact(&nd, r.Raw); err != nil {
			t.Fatal(err)
		}
		nd.WriteByte('\n')
	}
	bundle, ndjson := newTestVault(t), newTestVault(t)
	importString(t, bundle, filepath.Base(file), string(data))
	importString(t, ndjson, "Milan.ndjson", nd.String())

	labelled := func(v *Vault) []string {
		ms, err := v.List(Filter{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			if m.HasLabel(record.GDIS) {
				out = append(out, m.FHIR.Type+"/"+m.FHIR.ID)
			}
		}
		slices.Sort(out)
		return out
	}
	if got := labelled(bundle); len(got) != 0 {
		t.Fatalf("GDIS before labelling: %v", got)
	}
	// Label by hand, in both vaults, each Encounter in turn until one
	// reaches referrers in the Bundle's vault.
	ms, err := bundle.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.FHIR.Type != "Encounter" {
			continue
		}
		_, others, err := bundle.SetLabels(m.ID, []record.Label{record.GDIS}, nil)
		if err != nil {
			t.Fatal(err)
		}
		nm := findFHIR(t, ndjson, "Encounter/"+m.FHIR.ID)
		_, nothers, err := ndjson.SetLabels(nm.ID, []record.Label{record.GDIS}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if nothers.Referrers != others.Referrers {
			t.Errorf("Encounter/%s: %d referrers gained GDIS from the NDJSON, %d from the Bundle", m.FHIR.ID, nothers.Referrers, others.Referrers)
		}
		if others.Referrers > 0 {
			break
		}
	}
	want, got := labelled(bundle), labelled(ndjson)
	if len(want) < 2 {
		t.Fatalf("labelling an Encounter reached no referrer in the Bundle's vault: %v", want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("labelled GDIS from the NDJSON: %v\nfrom the Bundle: %v", got, want)
	}
}
