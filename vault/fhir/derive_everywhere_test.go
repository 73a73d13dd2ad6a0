package fhir

import (
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

// TestLabelsFromEveryCoding: each resource carries a listed code in an
// element that makes no Resource.Codes (a backbone element, a contained
// resource, the entries of a Bundle filed as one record, a meta.security
// label of a contained resource): labels come from every coding.
func TestLabelsFromEveryCoding(t *testing.T) {
	const icd = `"http://hl7.org/fhir/sid/icd-10-cm"`
	const rx = `"http://www.nlm.nih.gov/research/umls/rxnorm"`
	cases := []struct {
		name string
		want record.Label
		res  string
	}{
		{"nested document Bundle", record.HIV, `{"resourceType":"Bundle","id":"doc1","type":"document","entry":[{"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Condition","id":"c1","code":{"coding":[{"system":` + icd + `,"code":"B20"}]}}}]}`},
		{"FamilyMemberHistory.condition.code", record.GDIS, `{"resourceType":"FamilyMemberHistory","id":"f1","status":"completed","patient":{"reference":"Patient/p"},"relationship":{"coding":[{"code":"FTH"}]},"condition":[{"code":{"coding":[{"system":` + icd + `,"code":"G10"}]}}]}`},
		{"Medication.ingredient.itemCodeableConcept", record.SUD, `{"resourceType":"Medication","id":"m1","ingredient":[{"itemCodeableConcept":{"coding":[{"system":` + rx + `,"code":"352364"}]}}]}`},
		{"contained Medication ingredient", record.SUD, `{"resourceType":"MedicationRequest","id":"mr1","status":"active","intent":"order","subject":{"reference":"Patient/p"},"contained":[{"resourceType":"Medication","id":"med","ingredient":[{"itemCodeableConcept":{"coding":[{"system":` + rx + `,"code":"352364"}]}}]}],"medicationReference":{"reference":"#med"}}`},
		{"DeviceRequest.codeCodeableConcept", record.SEX, `{"resourceType":"DeviceRequest","id":"d1","status":"active","intent":"order","subject":{"reference":"Patient/p"},"codeCodeableConcept":{"coding":[{"system":` + rx + `,"code":"1605257"}]}}`},
		{"Claim.item.detail.productOrService", record.SUD, `{"resourceType":"Claim","id":"cl1","status":"active","patient":{"reference":"Patient/p"},"item":[{"sequence":1,"productOrService":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/ex-USCLS","code":"99999"}]},"detail":[{"sequence":1,"productOrService":{"coding":[{"system":"https://bluebutton.cms.gov/resources/codesystem/hcpcs","code":"H0020"}]}}]}]}`},
		{"ClinicalImpression.finding.itemCodeableConcept", record.MH, `{"resourceType":"ClinicalImpression","id":"ci1","status":"completed","subject":{"reference":"Patient/p"},"finding":[{"itemCodeableConcept":{"coding":[{"system":` + icd + `,"code":"F32.9"}]}}]}`},
		{"Goal.target.measure", record.MH, `{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","subject":{"reference":"Patient/p"},"description":{"text":"feel better"},"target":[{"measure":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"detailInteger":5}]}`},
		{"CarePlan.activity.detail.productCodeableConcept", record.SUD, `{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/p"},"activity":[{"detail":{"status":"in-progress","productCodeableConcept":{"coding":[{"system":` + rx + `,"code":"352364"}]}}}]}`},
		{"Composition.section.section.code", record.MH, `{"resourceType":"Composition","id":"co1","status":"final","type":{"text":"x"},"date":"2020-01-01","title":"t","author":[{"display":"a"}],"section":[{"title":"outer","section":[{"title":"inner","code":{"coding":[{"system":"http://loinc.org","code":"44249-1"}]}}]}]}`},
		{"RiskAssessment.prediction.outcome", record.MH, `{"resourceType":"RiskAssessment","id":"ra1","status":"final","subject":{"reference":"Patient/p"},"prediction":[{"outcome":{"coding":[{"system":` + icd + `,"code":"F32.9"}]}}]}`},
		{"meta.security of a contained resource", record.HIV, `{"resourceType":"ExplanationOfBenefit","id":"e1","status":"active","patient":{"reference":"Patient/p"},"contained":[{"resourceType":"Condition","id":"c","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},"code":{"text":"withheld"}}]}`},
		{"contained QuestionnaireResponse answer", record.HIV, `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"contained":[{"resourceType":"QuestionnaireResponse","id":"q","status":"completed","item":[{"linkId":"1","answer":[{"valueCoding":{"system":` + icd + `,"code":"B20"}}]}]}]}`},
	}
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	for i, c := range cases {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"resource":` + c.res + `}`)
	}
	b.WriteString(`]}`)
	rs, err := ReadAll(strings.NewReader(b.String()), "gaps.json", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	Propagate(rs)
	for i, c := range cases {
		r := rs[i]
		if !r.HasLabel(c.want) {
			t.Errorf("%-48s %s/%s category=%s labels=%v: want %s", c.name, r.Type, r.ID, r.Category, r.Labels, c.want)
		}
	}
	// Codes that are no clinical coding label nothing: a unit (a
	// Quantity's system and code), an identifier's value, text.
	quiet := `{"resourceType":"Observation","id":"q","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},` +
		`"identifier":[{"system":` + icd + `,"value":"F32.9"}],"valueQuantity":{"value":1,"system":"http://unitsofmeasure.org","code":"mg/dL"},"note":[{"text":"HIV B20 F32.9"}]}`
	rs, err = ReadAll(strings.NewReader(quiet), "quiet.json", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs[0].Labels) != 0 {
		t.Errorf("an Observation with no listed coding got labels %v", rs[0].Labels)
	}
}
