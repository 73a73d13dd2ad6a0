package fhir

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/medvault/medvault/vault/record"
)

// The rules' name is stable within a build and says the derivation
// revision; a vault compares it to decide whether to derive labels again.
func TestLabelRules(t *testing.T) {
	r := LabelRules()
	if !regexp.MustCompile(`^r[0-9]+-[0-9a-f]{24}$`).MatchString(r) {
		t.Fatalf("LabelRules() = %q", r)
	}
	if LabelRules() != r {
		t.Fatal("LabelRules changes between calls")
	}
}

// The name changes with a list's rules or the resource types, and not with
// comments, blank lines or display texts (a vault derives every record's
// labels again when it changes).
func TestRulesNameFollowsRules(t *testing.T) {
	base := fstest.MapFS{
		"resourcetypes.txt":   {Data: []byte("# types\nCondition\nObservation\n")},
		"valuesets/mh.txt":    {Data: []byte("# MH\nhttp://snomed.info/sct|35489007|Depressive disorder\n")},
		"valuesets/sud.txt":   {Data: []byte("http://snomed.info/sct|7200002|Alcoholism\n!http://snomed.info/sct|1|x\n")},
		"valuesets/README.md": {Data: []byte("about the lists\n")},
	}
	name := func(edit func(fstest.MapFS)) string {
		t.Helper()
		fsys := fstest.MapFS{}
		for k, f := range base {
			fsys[k] = &fstest.MapFile{Data: slices.Clone(f.Data)}
		}
		if edit != nil {
			edit(fsys)
		}
		n, err := rulesName(fsys)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	set := func(file, data string) func(fstest.MapFS) {
		return func(fsys fstest.MapFS) { fsys[file] = &fstest.MapFile{Data: []byte(data)} }
	}
	r := name(nil)
	for what, edit := range map[string]func(fstest.MapFS){
		"a comment":   set("valuesets/mh.txt", "# Mental health, revised\n\nhttp://snomed.info/sct|35489007|Depressive disorder\n"),
		"a display":   set("valuesets/mh.txt", "# MH\nhttp://snomed.info/sct|35489007|Depression\n"),
		"the README":  set("valuesets/README.md", "other words\n"),
		"indentation": set("resourcetypes.txt", "# types\n  Condition\nObservation  \n"),
	} {
		if got := name(edit); got != r {
			t.Errorf("changing %s changed the name", what)
		}
	}
	for what, edit := range map[string]func(fstest.MapFS){
		"a code added":        set("valuesets/mh.txt", "http://snomed.info/sct|35489007|Depressive disorder\nhttp://snomed.info/sct|191736004|Obsessive-compulsive disorder\n"),
		"an exclusion undone": set("valuesets/sud.txt", "http://snomed.info/sct|7200002|Alcoholism\nhttp://snomed.info/sct|1|x\n"),
		"a system":            set("valuesets/mh.txt", "http://hl7.org/fhir/sid/icd-10-cm|35489007|Depressive disorder\n"),
		"a resource type":     set("resourcetypes.txt", "Condition\nObservation\nClaim\n"),
		"a list moved": func(fsys fstest.MapFS) {
			fsys["valuesets/hiv.txt"] = fsys["valuesets/mh.txt"]
			delete(fsys, "valuesets/mh.txt")
		},
	} {
		if got := name(edit); got == r {
			t.Errorf("changing %s left the name as it was", what)
		}
	}
}

// ResourceLabels gives a stored resource the labels its own content gives
// it at import (here PHQ-9 item 9 as its own Observation), and nothing it
// would inherit from resources it references; content that does not parse
// is an error.
func TestResourceLabels(t *testing.T) {
	item9 := `{"resourceType":"Observation","id":"item9","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44260-8"}]},"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ETH"}]}}`
	got, err := ResourceLabels([]byte(item9), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []record.Label{record.MH, record.SUD}; !reflect.DeepEqual(got, want) {
		t.Errorf("item 9 with meta.security ETH: %v, want %v", got, want)
	}
	panel := `{"resourceType":"Observation","id":"panel","status":"final","code":{"text":"panel"},"hasMember":[{"reference":"Observation/item9"}]}`
	if got, err := ResourceLabels([]byte(panel), ""); err != nil || len(got) != 0 {
		t.Errorf("panel: %v %v, want none", got, err)
	}
	noID := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44260-8"}]}}`
	if got, err := ResourceLabels([]byte(noID), "urn:uuid:4b6f7a1c-0d5e-4f1a-9c2b-3e8d7f6a5b4c"); err != nil || !reflect.DeepEqual(got, []record.Label{record.MH}) {
		t.Errorf("resource known by its fullUrl: %v %v", got, err)
	}
	for _, bad := range []string{`{`, `[]`, `{"resourceType":"NoSuchType","id":"x"}`} {
		if _, err := ResourceLabels([]byte(bad), ""); err == nil {
			t.Errorf("%s: no error", bad)
		} else if !errors.Is(err, ErrNotJSON) && !errors.Is(err, ErrNotFHIR) && !errors.Is(err, ErrUnknownType) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
