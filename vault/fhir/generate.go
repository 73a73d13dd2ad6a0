package fhir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// Generate writes n synthetic FHIR R4 resources as NDJSON to w, the same
// for the same seed. The data is invented (no real person) but realistic
// in shape: patients, each followed by encounters with vital signs, lab
// results and screening surveys, conditions (mostly ordinary, some
// sensitive: depression, opioid abuse, pregnancy, HIV, chlamydia),
// prescriptions (some with a reasonReference), immunizations, procedures,
// allergies and a claim per encounter, all linked by "Type/id" references.
// It is meant for benchmarks, tests and the demo.
func Generate(w io.Writer, n int, seed int64) error {
	if n < 0 {
		return errors.New("fhir: generate: negative resource count")
	}
	g := &generator{
		rng: rand.New(rand.NewPCG(uint64(seed), 0x6d65647661756c74)), // "medvault"
		bw:  bufio.NewWriterSize(w, 64<<10),
		n:   n,
	}
	for g.count < g.n && g.err == nil {
		g.patient()
	}
	if g.err != nil {
		return fmt.Errorf("fhir: generate: %w", g.err)
	}
	if err := g.bw.Flush(); err != nil {
		return fmt.Errorf("fhir: generate: %w", err)
	}
	return nil
}

type generator struct {
	rng   *rand.Rand
	bw    *bufio.Writer
	n     int
	count int
	err   error
	buf   []byte
}

type genCode struct{ system, code, display string }

var (
	genGiven  = []string{"Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam", "Maya", "Noah", "Olga", "Pavel"}
	genFamily = []string{"Alvarez", "Brown", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Patel"}

	genEncounterTypes = []genCode{
		{"http://snomed.info/sct", "185349003", "Encounter for check up"},
		{"http://snomed.info/sct", "185345009", "Encounter for symptom"},
		{"http://snomed.info/sct", "390906007", "Follow-up encounter"},
	}
	genVitals = []struct {
		genCode
		unit     string
		min, max float64
	}{
		{genCode{"http://loinc.org", "8302-2", "Body Height"}, "cm", 150, 195},
		{genCode{"http://loinc.org", "29463-7", "Body Weight"}, "kg", 50, 110},
		{genCode{"http://loinc.org", "8867-4", "Heart rate"}, "/min", 55, 100},
		{genCode{"http://loinc.org", "8310-5", "Body temperature"}, "Cel", 36.1, 37.6},
	}
	genLabs = []struct {
		genCode
		unit     string
		min, max float64
	}{
		{genCode{"http://loinc.org", "2339-0", "Glucose [Mass/volume] in Blood"}, "mg/dL", 70, 140},
		{genCode{"http://loinc.org", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"}, "%", 4.5, 8.5},
		{genCode{"http://loinc.org", "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"}, "mg/dL", 140, 260},
		{genCode{"http://loinc.org", "718-7", "Hemoglobin [Mass/volume] in Blood"}, "g/dL", 11, 17},
	}
	genSurveys = []struct {
		genCode
		max int
	}{
		{genCode{"http://loinc.org", "55758-7", "PHQ-2 total score"}, 6},
		{genCode{"http://loinc.org", "75626-2", "Total score [AUDIT-C]"}, 12},
	}
	genOrdinaryConditions = []genCode{
		{"http://snomed.info/sct", "59621000", "Essential hypertension"},
		{"http://snomed.info/sct", "444814009", "Viral sinusitis"},
		{"http://snomed.info/sct", "10509002", "Acute bronchitis"},
		{"http://snomed.info/sct", "15777000", "Prediabetes"},
		{"http://snomed.info/sct", "195662009", "Acute viral pharyngitis"},
	}
	genSensitiveConditions = []genCode{
		{"http://snomed.info/sct", "370143000", "Major depressive disorder"},
		{"http://snomed.info/sct", "5602001", "Opioid abuse"},
		{"http://snomed.info/sct", "72892002", "Normal pregnancy"},
		{"http://snomed.info/sct", "86406008", "Human immunodeficiency virus infection"},
		{"http://snomed.info/sct", "105629000", "Chlamydial infection"},
	}
	genMedications = []genCode{
		{"http://www.nlm.nih.gov/research/umls/rxnorm", "314076", "lisinopril 10 MG Oral Tablet"},
		{"http://www.nlm.nih.gov/research/umls/rxnorm", "310965", "Ibuprofen 200 MG Oral Tablet"},
		{"http://www.nlm.nih.gov/research/umls/rxnorm", "313782", "Acetaminophen 325 MG Oral Tablet"},
	}
	genVaccines = []genCode{
		{"http://hl7.org/fhir/sid/cvx", "140", "Influenza, seasonal, injectable, preservative free"},
		{"http://hl7.org/fhir/sid/cvx", "113", "Td (adult) preservative free"},
	}
	genAllergies = []genCode{
		{"http://snomed.info/sct", "91935009", "Allergy to peanuts"},
		{"http://snomed.info/sct", "300913006", "Shellfish allergy"},
	}
)

func (g *generator) uuid() string {
	a, b := g.rng.Uint64(), g.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x",
		a>>32, (a>>16)&0xffff, a&0xfff, 0x8000|(b>>48)&0x3fff, b&0xffffffffffff)
}

// emit writes one line; it stops once n resources are out.
func (g *generator) emit(b []byte) bool {
	if g.count >= g.n || g.err != nil {
		return false
	}
	if _, err := g.bw.Write(b); err != nil {
		g.err = err
		return false
	}
	if err := g.bw.WriteByte('\n'); err != nil {
		g.err = err
		return false
	}
	g.count++
	return true
}

func coding(b []byte, c genCode) []byte {
	return fmt.Appendf(b, `{"coding":[{"system":%q,"code":%q,"display":%q}],"text":%q}`, c.system, c.code, c.display, c.display)
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func (g *generator) patient() {
	pid := g.uuid()
	female := g.rng.IntN(2) == 0
	gender := "male"
	if female {
		gender = "female"
	}
	birth := time.Date(1940+g.rng.IntN(65), time.Month(1+g.rng.IntN(12)), 1+g.rng.IntN(28), 0, 0, 0, 0, time.UTC)
	given, family := genGiven[g.rng.IntN(len(genGiven))], genFamily[g.rng.IntN(len(genFamily))]
	b := fmt.Appendf(g.buf[:0], `{"resourceType":"Patient","id":%q,"meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},`+
		`"identifier":[{"system":"urn:oid:2.16.840.1.113883.19.5","value":"MRN%06d"}],"name":[{"use":"official","family":%q,"given":[%q]}],`+
		`"gender":%q,"birthDate":%q,"address":[{"city":"Springfield","country":"US"}]}`,
		pid, g.rng.IntN(1000000), family, given, gender, birth.Format("2006-01-02"))
	if !g.emit(b) {
		return
	}
	ref := "Patient/" + pid
	when := birth.AddDate(18+g.rng.IntN(10), 0, 0)
	if g.rng.IntN(4) == 0 {
		a := genAllergies[g.rng.IntN(len(genAllergies))]
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"AllergyIntolerance","id":%q,"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},"category":["food"],"code":`, g.uuid())
		b = coding(b, a)
		b = fmt.Appendf(b, `,"patient":{"reference":%q},"recordedDate":%q}`, ref, ts(when))
		g.emit(b)
	}
	for e := 0; e < 3+g.rng.IntN(6) && g.count < g.n; e++ {
		when = when.Add(time.Duration(30+g.rng.IntN(400)) * 24 * time.Hour)
		g.encounter(ref, female, when)
	}
}

func (g *generator) encounter(patient string, female bool, when time.Time) {
	eid := g.uuid()
	eref := "Encounter/" + eid
	typ := genEncounterTypes[g.rng.IntN(len(genEncounterTypes))]

	// A condition diagnosed at this encounter, sometimes a sensitive one.
	var cond *genCode
	switch x := g.rng.IntN(10); {
	case x < 3:
		c := genOrdinaryConditions[g.rng.IntN(len(genOrdinaryConditions))]
		cond = &c
	case x == 3:
		c := genSensitiveConditions[g.rng.IntN(len(genSensitiveConditions))]
		if c.code == "72892002" && !female {
			c = genSensitiveConditions[0]
		}
		cond = &c
	}
	b := fmt.Appendf(g.buf[:0], `{"resourceType":"Encounter","id":%q,"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"type":[`, eid)
	b = coding(b, typ)
	b = append(b, ']')
	if cond != nil {
		b = append(b, `,"reasonCode":[`...)
		b = coding(b, *cond)
		b = append(b, ']')
	}
	b = fmt.Appendf(b, `,"subject":{"reference":%q},"period":{"start":%q,"end":%q}}`, patient, ts(when), ts(when.Add(30*time.Minute)))
	if !g.emit(b) {
		return
	}
	at := ts(when)
	for _, v := range genVitals[:2+g.rng.IntN(len(genVitals)-1)] {
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"Observation","id":%q,"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital signs"}]}],"code":`, g.uuid())
		b = coding(b, v.genCode)
		b = fmt.Appendf(b, `,"subject":{"reference":%q},"encounter":{"reference":%q},"effectiveDateTime":%q,"valueQuantity":{"value":%.1f,"unit":%q,"system":"http://unitsofmeasure.org","code":%q}}`,
			patient, eref, at, v.min+g.rng.Float64()*(v.max-v.min), v.unit, v.unit)
		if !g.emit(b) {
			return
		}
	}
	var labIDs []string
	for _, l := range genLabs[:g.rng.IntN(len(genLabs)+1)] {
		id := g.uuid()
		labIDs = append(labIDs, id)
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"Observation","id":%q,"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory","display":"Laboratory"}]}],"code":`, id)
		b = coding(b, l.genCode)
		b = fmt.Appendf(b, `,"subject":{"reference":%q},"encounter":{"reference":%q},"effectiveDateTime":%q,"issued":%q,"valueQuantity":{"value":%.1f,"unit":%q,"system":"http://unitsofmeasure.org","code":%q}}`,
			patient, eref, at, ts(when.Add(2*time.Hour)), l.min+g.rng.Float64()*(l.max-l.min), l.unit, l.unit)
		if !g.emit(b) {
			return
		}
	}
	if len(labIDs) > 0 {
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"DiagnosticReport","id":%q,"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"LAB","display":"Laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"24323-8","display":"Comprehensive metabolic 2000 panel"}]},"subject":{"reference":%q},"encounter":{"reference":%q},"effectiveDateTime":%q,"issued":%q,"result":[`,
			g.uuid(), patient, eref, at, ts(when.Add(2*time.Hour)))
		for i, id := range labIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, `{"reference":"Observation/%s"}`, id)
		}
		b = append(b, "]}"...)
		if !g.emit(b) {
			return
		}
	}
	if typ.code == "185349003" && g.rng.IntN(3) == 0 {
		s := genSurveys[g.rng.IntN(len(genSurveys))]
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"Observation","id":%q,"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey","display":"Survey"}]}],"code":`, g.uuid())
		b = coding(b, s.genCode)
		b = fmt.Appendf(b, `,"subject":{"reference":%q},"encounter":{"reference":%q},"effectiveDateTime":%q,"valueQuantity":{"value":%d,"unit":"{score}","system":"http://unitsofmeasure.org","code":"{score}"}}`,
			patient, eref, at, g.rng.IntN(s.max+1))
		if !g.emit(b) {
			return
		}
	}
	var condID string
	if cond != nil {
		condID = g.uuid()
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"Condition","id":%q,"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"encounter-diagnosis"}]}],"code":`, condID)
		b = coding(b, *cond)
		b = fmt.Appendf(b, `,"subject":{"reference":%q},"encounter":{"reference":%q},"onsetDateTime":%q,"recordedDate":%q}`, patient, eref, at, at)
		if !g.emit(b) {
			return
		}
	}
	var rxID string
	if cond != nil && g.rng.IntN(2) == 0 || g.rng.IntN(6) == 0 {
		rxID = g.uuid()
		m := genMedications[g.rng.IntN(len(genMedications))]
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"MedicationRequest","id":%q,"status":"active","intent":"order","medicationCodeableConcept":`, rxID)
		b = coding(b, m)
		b = fmt.Appendf(b, `,"subject":{"reference":%q},"encounter":{"reference":%q},"authoredOn":%q`, patient, eref, at)
		if condID != "" {
			b = fmt.Appendf(b, `,"reasonReference":[{"reference":"Condition/%s"}]`, condID)
		}
		b = append(b, `,"dosageInstruction":[{"text":"1 tablet daily"}]}`...)
		if !g.emit(b) {
			return
		}
	}
	if g.rng.IntN(4) == 0 {
		v := genVaccines[g.rng.IntN(len(genVaccines))]
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"Immunization","id":%q,"status":"completed","vaccineCode":`, g.uuid())
		b = coding(b, v)
		b = fmt.Appendf(b, `,"patient":{"reference":%q},"encounter":{"reference":%q},"occurrenceDateTime":%q,"primarySource":true}`, patient, eref, at)
		if !g.emit(b) {
			return
		}
	}
	if typ.code == "185349003" {
		p := genCode{"http://snomed.info/sct", "428191000124101", "Documentation of current medications"}
		if g.rng.IntN(5) == 0 {
			p = genCode{"http://snomed.info/sct", "171207006", "Depression screening"}
		}
		b = fmt.Appendf(g.buf[:0], `{"resourceType":"Procedure","id":%q,"status":"completed","code":`, g.uuid())
		b = coding(b, p)
		b = fmt.Appendf(b, `,"subject":{"reference":%q},"encounter":{"reference":%q},"performedPeriod":{"start":%q,"end":%q}}`, patient, eref, at, ts(when.Add(15*time.Minute)))
		if !g.emit(b) {
			return
		}
	}
	// The claim for the encounter.
	b = fmt.Appendf(g.buf[:0], `{"resourceType":"Claim","id":%q,"status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},"use":"claim","patient":{"reference":%q},"billablePeriod":{"start":%q,"end":%q},"created":%q,"provider":{"display":"Springfield Clinic"},"priority":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/processpriority","code":"normal"}]},"insurance":[{"sequence":1,"focal":true,"coverage":{"display":"Private insurance"}}]`,
		g.uuid(), patient, at, ts(when.Add(30*time.Minute)), ts(when.Add(30*time.Minute)))
	if condID != "" {
		b = fmt.Appendf(b, `,"diagnosis":[{"sequence":1,"diagnosisReference":{"reference":"Condition/%s"}}]`, condID)
	}
	b = append(b, `,"item":[{"sequence":1,"productOrService":`...)
	b = coding(b, typ)
	b = fmt.Appendf(b, `,"encounter":[{"reference":%q}]}]`, eref)
	if rxID != "" {
		b = fmt.Appendf(b, `,"prescription":{"reference":"MedicationRequest/%s"}`, rxID)
	}
	b = fmt.Appendf(b, `,"total":{"value":%d.00,"currency":"USD"}}`, 50+g.rng.IntN(400))
	g.emit(b)
}
