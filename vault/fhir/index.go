package fhir

import (
	"bytes"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// validID reports whether s matches the FHIR R4 id datatype:
// [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// maxTitle bounds Resource.Title, in runes.
const maxTitle = 200

// maxURL bounds fullUrl and kept reference strings, in bytes.
const maxURL = 4096

// indexer extracts a Resource from raw bytes. It keeps scratch space, so
// one indexer serves a whole file.
type indexer struct {
	t   *tables
	v   validator
	top object
}

// codeFields are the elements whose CodeableConcept (or array of them)
// codings go into Resource.Codes. The first ones present among
// primaryFields also make Resource.Code.
var primaryFields = []string{"code", "vaccineCode", "medicationCodeableConcept"}

var codeFields = []string{
	"code", "vaccineCode", "medicationCodeableConcept",
	"valueCodeableConcept", "reasonCode", "type", "conclusionCode",
	"procedureCode", "description", "scope", "topic", "serviceType",
}

// nestedCodeFields are element.child pairs holding codes inside backbone
// elements: Observation.component, Claim/EOB diagnosis, procedure and
// item, AllergyIntolerance.reaction, CarePlan.activity.detail,
// Condition.evidence, Composition.section, DocumentReference.context.
var nestedCodeFields = [][2]string{
	{"component", "code"}, {"component", "valueCodeableConcept"},
	{"diagnosis", "diagnosisCodeableConcept"},
	{"procedure", "procedureCodeableConcept"},
	{"item", "productOrService"}, {"addItem", "productOrService"},
	{"reaction", "manifestation"}, {"reaction", "substance"},
	{"evidence", "code"}, {"section", "code"}, {"context", "event"},
}

// getter is a JSON object that can look up members by name: a jval, or
// an object whose members were listed once.
type getter interface{ get(name string) jval }

// member is one member of a listed object.
type member struct {
	name []byte
	esc  bool
	val  jval
}

// object lists an object's members once, so the many lookups the index
// makes at the top level of a resource do not rescan it each time.
type object []member

func listMembers(v jval, buf object) object {
	buf = buf[:0]
	v.members(func(name []byte, esc bool, val jval) bool {
		buf = append(buf, member{name, esc, val})
		return true
	})
	return buf
}

func (o object) get(name string) jval {
	for _, m := range o {
		if nameIs(m.name, m.esc, name) {
			return m.val
		}
	}
	return nil
}

// pathOf follows object members by name from g.
func pathOf(g getter, names ...string) jval {
	v := g.get(names[0])
	if v == nil {
		return nil
	}
	return v.path(names[1:]...)
}

// index validates raw and builds its Resource. fullURL is the bundle
// entry's fullUrl ("" outside bundles).
func (ix *indexer) index(raw []byte, fullURL string) (*Resource, error) {
	if err := ix.v.validate(raw); err != nil {
		switch err {
		case errDupKey:
			return nil, ErrDuplicateKey
		case errDepth:
			return nil, ErrTooDeep
		case errUTF8:
			return nil, wrapf(ErrNotJSON, "invalid UTF-8")
		}
		return nil, ErrNotJSON
	}
	if !jval(raw).isObject() {
		return nil, wrapf(ErrNotFHIR, "resource is not a JSON object")
	}
	ix.top = listMembers(jval(raw), ix.top)
	v := ix.top
	typ, ok := v.get("resourceType").str()
	if !ok {
		return nil, wrapf(ErrNotFHIR, "resource has no resourceType string")
	}
	if !ix.t.types[typ] {
		return nil, ErrUnknownType
	}
	r := &Resource{Raw: raw, Type: typ, FullURL: fullURL}
	if idv := v.get("id"); idv != nil {
		id, ok := idv.str()
		if !ok || !validID(id) {
			return nil, ErrBadID
		}
		r.ID = id
	}
	if r.ID == "" && r.FullURL == "" {
		return nil, ErrNoID
	}

	r.Security = codings(pathOf(v, "meta", "security"), nil)
	if s, ok := pathOf(v, "meta", "lastUpdated").str(); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			r.Updated = t.UTC()
		}
	}
	if s, ok := pathOf(v, "meta", "versionId").str(); ok && len(s) <= 64 {
		r.VersionID = s
	}
	for _, f := range []string{"subject", "patient", "beneficiary"} {
		if s := pathOf(v, f, "reference").string(); s != "" {
			r.Subject = s
			break
		}
	}
	if typ == "Patient" && r.Subject == "" && r.ID != "" {
		r.Subject = "Patient/" + r.ID
	}

	r.Code, r.Codes = collectCodes(v, nil, nil)
	if typ == "QuestionnaireResponse" {
		r.Codes = questionnaireCodes(v, r.Codes)
	}
	// Codes of contained resources count for labels: an EOB may contain
	// the Condition it pays for. Contained resources may not themselves
	// contain resources, so one level is enough.
	v.get("contained").elems(func(c jval) bool {
		if c.isObject() {
			_, r.Codes = collectCodes(c, nil, r.Codes)
		}
		return true
	})
	r.CategoryCodes = categoryCodings(v.get("category"))
	r.References = collectRefs(raw)
	r.Date = resourceDate(typ, v)
	r.Status = resourceStatus(v)
	r.Title = cleanTitle(title(typ, v))
	r.Category = CategoryOf(typ, r.CategoryCodes, r.Codes)
	security := r.Security
	if typ == "Consent" {
		// A consent that restricts records labelled PSY, say, tells
		// that there are such records: it carries their labels.
		security = consentLabels(v.get("provision"), 0, slices.Clone(security))
	}
	// Labels come from every coding in the resource, not only from the
	// elements that make its Codes: a sensitive code sits in elements no
	// list of them covers (FamilyMemberHistory.condition.code,
	// Medication.ingredient, Claim.item.detail, a Goal's target, the
	// entries of a Bundle filed as one record, a contained resource).
	labelCodes := append(append([]Coding(nil), r.Codes...), r.CategoryCodes...)
	for _, m := range v {
		if !nameIs(m.name, m.esc, "meta") {
			labelCodes, security = allCodings(m.val, labelCodes, security)
		}
	}
	applyLabels(ix.t, r, labelCodes, security)
	return r, nil
}

// allCodings appends every Coding in v, at any depth, to codes: each object
// with a system and a code string (a Coding; a Quantity's unit, too, which
// no list names). The meta.security codings of resources inside v
// (contained ones, a Bundle's entries) are appended to security; the rest
// of their meta (tags, profiles) is not read. The validator has bounded
// v's depth.
func allCodings(v jval, codes, security []Coding) ([]Coding, []Coding) {
	switch {
	case v.isObject():
		var sys, code jval
		v.members(func(name []byte, esc bool, val jval) bool {
			switch {
			case nameIs(name, esc, "system"):
				sys = val
			case nameIs(name, esc, "code"):
				code = val
				if !val.isObject() && !val.isArray() {
					return true
				}
				codes, security = allCodings(val, codes, security)
			case nameIs(name, esc, "meta"):
				security = codings(val.get("security"), security)
			default:
				codes, security = allCodings(val, codes, security)
			}
			return true
		})
		if s, ok := sys.str(); ok {
			if c, ok := code.str(); ok && strings.TrimSpace(c) != "" {
				codes = append(codes, Coding{System: strings.TrimSpace(s), Code: strings.TrimSpace(c)})
			}
		}
	case v.isArray():
		v.elems(func(e jval) bool {
			codes, security = allCodings(e, codes, security)
			return true
		})
	}
	return codes, security
}

// collectCodes appends the codings of v's code elements to all; it
// returns the primary code's codings separately.
func collectCodes(v getter, primary, all []Coding) ([]Coding, []Coding) {
	for _, f := range primaryFields {
		if c := conceptCodings(v.get(f), nil); len(c) > 0 {
			primary = c
			break
		}
	}
	for _, f := range codeFields {
		all = conceptCodings(v.get(f), all)
	}
	for _, nf := range nestedCodeFields {
		v.get(nf[0]).each(func(e jval) {
			all = conceptCodings(e.get(nf[1]), all)
		})
	}
	v.get("activity").each(func(a jval) {
		d := a.get("detail")
		all = conceptCodings(d.get("code"), all)
		all = conceptCodings(d.get("reasonCode"), all)
	})
	return primary, all
}

// consentLabels appends the security labels a Consent's provision and its
// nested provisions name (provision.securityLabel, at any depth up to
// maxItemDepth).
func consentLabels(p jval, depth int, out []Coding) []Coding {
	if depth > maxItemDepth {
		return out
	}
	p.each(func(p jval) {
		out = codings(p.get("securityLabel"), out)
		out = consentLabels(p.get("provision"), depth+1, out)
	})
	return out
}

// maxItemDepth bounds how deep questionnaireCodes follows nested items.
const maxItemDepth = 32

// questionnaireCodes appends what a QuestionnaireResponse says in codes,
// which it holds in none of the elements collectCodes reads: the LOINC form
// its questionnaire canonical names (http://loinc.org/q/CODE), each item's
// linkId when it is a LOINC code (forms built from LOINC panels use the
// question's code as its linkId), and every answer's valueCoding, at any
// depth. A PHQ-9 filed as a QuestionnaireResponse is then labelled as one
// filed as Observations is.
func questionnaireCodes(v getter, out []Coding) []Coding {
	if q, ok := v.get("questionnaire").str(); ok {
		q, _, _ = strings.Cut(q, "|") // canonical|version
		if c, ok := strings.CutPrefix(q, "http://loinc.org/q/"); ok && isLOINC(c) {
			out = append(out, Coding{System: sysLOINC, Code: c})
		}
	}
	var walk func(items jval, depth int)
	walk = func(items jval, depth int) {
		if depth > maxItemDepth {
			return
		}
		items.each(func(it jval) {
			if id, ok := it.get("linkId").str(); ok && isLOINC(id) {
				out = append(out, Coding{System: sysLOINC, Code: id})
			}
			it.get("answer").each(func(a jval) {
				out = codings(a.get("valueCoding"), out)
				walk(a.get("item"), depth+1)
			})
			walk(it.get("item"), depth+1)
		})
	}
	walk(v.get("item"), 0)
	return out
}

// isLOINC reports whether s has the form of a LOINC code: one to five
// digits, a hyphen and the mod 10 (Luhn) check digit of those digits.
func isLOINC(s string) bool {
	num, check, ok := strings.Cut(s, "-")
	if !ok || len(num) < 1 || len(num) > 5 || len(check) != 1 || check[0] < '0' || check[0] > '9' {
		return false
	}
	sum := 0
	for i := range len(num) {
		d := num[len(num)-1-i]
		if d < '0' || d > '9' {
			return false
		}
		n := int(d - '0')
		if i%2 == 0 {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return int(check[0]-'0') == (10-sum%10)%10
}

// conceptCodings appends the codings of a CodeableConcept, an array of
// them, a Coding, or an array of Codings.
func conceptCodings(v jval, out []Coding) []Coding {
	v.each(func(cc jval) {
		if c := cc.get("coding"); c != nil {
			out = codings(c, out)
			return
		}
		if cc.get("code") != nil || cc.get("system") != nil {
			out = codings(cc, out)
		}
	})
	return out
}

// codings appends the Coding objects of v (one object or an array).
func codings(v jval, out []Coding) []Coding {
	v.each(func(c jval) {
		cd := Coding{
			System:  strings.TrimSpace(c.get("system").string()),
			Code:    strings.TrimSpace(c.get("code").string()),
			Display: c.get("display").string(),
		}
		if cd.Code != "" {
			out = append(out, cd)
		}
	})
	return out
}

// categoryCodings reads the category element: CodeableConcept(s) in most
// resources, plain code strings in AllergyIntolerance (kept as Codings
// without system).
func categoryCodings(v jval) []Coding {
	out := conceptCodings(v, nil)
	v.elems(func(e jval) bool {
		if s, ok := e.str(); ok && s != "" {
			out = append(out, Coding{Code: s})
		}
		return true
	})
	return out
}

// References returns what Resource.References is for a resource whose
// bytes are raw: every Reference.reference, in order, without duplicates,
// local ("#id"), conditional or overlong ones. It only scans raw, without
// validating it: for bytes an earlier Next returned as Resource.Raw (a
// vault record's content), it gives what that Next gave, far faster than
// parsing them again.
func References(raw []byte) []string { return collectRefs(raw) }

// collectRefs returns every Reference.reference string found anywhere in
// raw (including contained resources), in order, without duplicates.
// Local references ("#id"), conditional ones ("Patient?identifier=...")
// and ones longer than maxURL are skipped: they cannot name another
// resource of the batch.
func collectRefs(raw []byte) []string {
	var out []string
	var seen map[string]bool
	eachReference(raw, func(_, _ int, s string) {
		if s == "" || s[0] == '#' || strings.ContainsRune(s, '?') || len(s) > maxURL {
			return
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	})
	return out
}

// eachReference calls fn, in order, with the value of every "reference"
// member whose value is a string, at any depth of raw (validated JSON),
// and where that string's token starts and ends in raw. raw being valid,
// every string followed by ':' is a member name, so one linear pass finds
// them all.
func eachReference(raw []byte, fn func(start, end int, s string)) {
	for i := 0; i < len(raw); {
		if raw[i] != '"' {
			i++
			continue
		}
		end := skipString(raw, i)
		j := skipWS(raw, end)
		if j >= len(raw) || raw[j] != ':' {
			i = end // a string value
			continue
		}
		name := raw[i+1 : end-1]
		if !nameIs(name, bytes.IndexByte(name, '\\') >= 0, "reference") {
			i = j + 1
			continue
		}
		k := skipWS(raw, j+1)
		if k >= len(raw) || raw[k] != '"' {
			i = k
			continue
		}
		vend := skipString(raw, k)
		i = vend
		if s, ok := jval(raw[k:vend]).str(); ok {
			fn(k, vend, s)
		}
	}
}

// dateFields lists, per type, where the clinically relevant date lives,
// in order of preference. Dotted paths descend into objects.
var dateFields = map[string][]string{
	"Observation":              {"effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"},
	"DiagnosticReport":         {"effectiveDateTime", "effectivePeriod.start", "issued"},
	"Condition":                {"onsetDateTime", "onsetPeriod.start", "recordedDate"},
	"AllergyIntolerance":       {"onsetDateTime", "onsetPeriod.start", "recordedDate"},
	"Procedure":                {"performedDateTime", "performedPeriod.start"},
	"Immunization":             {"occurrenceDateTime", "recorded"},
	"MedicationRequest":        {"authoredOn"},
	"MedicationStatement":      {"effectiveDateTime", "effectivePeriod.start", "dateAsserted"},
	"MedicationAdministration": {"effectiveDateTime", "effectivePeriod.start"},
	"MedicationDispense":       {"whenHandedOver", "whenPrepared"},
	"Encounter":                {"period.start"},
	"EpisodeOfCare":            {"period.start"},
	"CarePlan":                 {"period.start", "created"},
	"CareTeam":                 {"period.start"},
	"Goal":                     {"startDate", "statusDate"},
	"Claim":                    {"billablePeriod.start", "created"},
	"ExplanationOfBenefit":     {"billablePeriod.start", "created"},
	"Coverage":                 {"period.start"},
	"Patient":                  {"birthDate"},
	"ImagingStudy":             {"started"},
	"DocumentReference":        {"date", "context.period.start"},
	"Composition":              {"date"},
	"Consent":                  {"dateTime"},
	"ServiceRequest":           {"occurrenceDateTime", "occurrencePeriod.start", "authoredOn"},
	"Appointment":              {"start"},
	"QuestionnaireResponse":    {"authored"},
	"FamilyMemberHistory":      {"date"},
	"Provenance":               {"recorded"},
}

var genericDateFields = []string{
	"effectiveDateTime", "effectivePeriod.start", "occurrenceDateTime", "occurrencePeriod.start",
	"performedDateTime", "performedPeriod.start", "period.start", "authoredOn", "recordedDate",
	"issued", "date", "created",
}

func resourceDate(typ string, v getter) time.Time {
	fields, ok := dateFields[typ]
	if !ok {
		fields = genericDateFields
	}
	for _, f := range fields {
		if s := pathOf(v, strings.Split(f, ".")...).string(); s != "" {
			if t, ok := ParseDate(s); ok {
				return t
			}
		}
	}
	return time.Time{}
}

// ParseDate parses a FHIR date, dateTime or instant ("2019", "2019-05",
// "2019-05-06", "2019-05-06T10:11:12.345+02:00") into UTC. Partial dates
// mean their first instant; a date without a time zone is read as UTC.
func ParseDate(s string) (time.Time, bool) {
	var layout string
	switch {
	case len(s) == 4:
		layout = "2006"
	case len(s) == 7:
		layout = "2006-01"
	case len(s) == 10:
		layout = "2006-01-02"
	case len(s) > 10 && s[10] == 'T':
		layout = "2006-01-02T15:04:05.999999999"
		if t := s[11:]; strings.HasSuffix(t, "Z") || strings.ContainsAny(t, "+-") {
			layout = time.RFC3339Nano
		}
	default:
		return time.Time{}, false
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// title builds a short human title for a resource.
func title(typ string, v getter) string {
	switch typ {
	case "Patient", "Practitioner", "RelatedPerson", "Person":
		if n := humanName(v.get("name")); n != "" {
			return typ + ": " + n
		}
		return typ
	case "Organization", "Location", "HealthcareService", "InsurancePlan", "Endpoint":
		if n := v.get("name").string(); n != "" {
			return n
		}
	case "Encounter":
		if t := conceptText(v.get("type")); t != "" {
			return t
		}
		if t := conceptText(v.get("reasonCode")); t != "" {
			return "Encounter: " + t
		}
	case "CarePlan":
		if t := v.get("title").string(); t != "" {
			return t
		}
		// Synthea puts the plan's kind in the last category.
		var last string
		v.get("category").elems(func(e jval) bool {
			if t := conceptText(e); t != "" {
				last = t
			}
			return true
		})
		if last != "" {
			return last
		}
	case "Goal":
		if t := conceptText(v.get("description")); t != "" {
			return t
		}
	case "ImagingStudy":
		if t := v.get("description").string(); t != "" {
			return t
		}
		if t := conceptText(v.get("procedureCode")); t != "" {
			return t
		}
	case "MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense":
		if t := conceptText(v.get("medicationCodeableConcept")); t != "" {
			return t
		}
		if t := pathOf(v, "medicationReference", "display").string(); t != "" {
			return t
		}
	case "Immunization":
		if t := conceptText(v.get("vaccineCode")); t != "" {
			return t
		}
	case "Claim", "ExplanationOfBenefit":
		name := "Claim"
		if typ == "ExplanationOfBenefit" {
			name = "Explanation of benefit"
		}
		var item string
		v.get("item").elems(func(e jval) bool {
			item = conceptText(e.get("productOrService"))
			return item == ""
		})
		if item != "" {
			return name + ": " + item
		}
		return name
	case "Coverage":
		if t := conceptText(v.get("type")); t != "" {
			return "Coverage: " + t
		}
		return "Coverage"
	case "DocumentReference":
		if t := v.get("description").string(); t != "" {
			return t
		}
		if t := conceptText(v.get("type")); t != "" {
			return t
		}
	case "Composition":
		if t := v.get("title").string(); t != "" {
			return t
		}
	case "Consent":
		if t := conceptText(v.get("category")); t != "" {
			return "Consent: " + t
		}
		return "Consent"
	case "Device":
		var n string
		v.get("deviceName").elems(func(e jval) bool {
			n = e.get("name").string()
			return n == ""
		})
		if n != "" {
			return n
		}
	case "MolecularSequence":
		return "Molecular sequence"
	}
	if t := conceptText(v.get("code")); t != "" {
		return t
	}
	return typ
}

// conceptText returns a CodeableConcept's text, else its first coding's
// display, else its first code. An array yields its first non-empty one.
func conceptText(v jval) string {
	var out string
	v.each(func(cc jval) {
		if out != "" {
			return
		}
		if t := cc.get("text").string(); t != "" {
			out = t
			return
		}
		for _, c := range codings(cc.get("coding"), nil) {
			if c.Display != "" {
				out = c.Display
				return
			}
		}
		if cs := codings(cc.get("coding"), nil); len(cs) > 0 {
			out = cs[0].Code
		}
	})
	return out
}

// humanName renders the official (else first) HumanName: its text, else
// given names and family name.
func humanName(v jval) string {
	var pick jval
	v.each(func(n jval) {
		if pick == nil || n.get("use").string() == "official" && pick.get("use").string() != "official" {
			pick = n
		}
	})
	if pick == nil {
		return ""
	}
	if t := pick.get("text").string(); t != "" {
		return t
	}
	var parts []string
	pick.get("prefix").elems(func(e jval) bool {
		if s := e.string(); s != "" && len(parts) < 1 {
			parts = append(parts, s)
		}
		return true
	})
	pick.get("given").elems(func(e jval) bool {
		if s := e.string(); s != "" {
			parts = append(parts, s)
		}
		return true
	})
	if f := pick.get("family").string(); f != "" {
		parts = append(parts, f)
	}
	return strings.Join(parts, " ")
}

// cleanTitle removes control and bidirectional-override characters (a
// title is printed on terminals: an escape sequence in a display string
// must not reach one), collapses spaces and bounds the length.
func cleanTitle(s string) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || isBidiControl(r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
			n++
		}
		if n >= maxTitle {
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

func isBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200E || r == 0x200F || r == 0x061C
}

// clinicalStatusSystems are the code systems of the clinicalStatus value
// sets of Condition and AllergyIntolerance (R4, required bindings).
var clinicalStatusSystems = map[string]bool{
	"http://terminology.hl7.org/CodeSystem/condition-clinical":          true,
	"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical": true,
}

// clinicalCoding picks the coding of a clinicalStatus to read: the first
// of the FHIR code system the element is bound to (a server may send its
// own local coding first, beside the required one), else the first.
func clinicalCoding(cs []Coding) Coding {
	for _, c := range cs {
		if clinicalStatusSystems[strings.TrimSpace(c.System)] {
			return c
		}
	}
	return cs[0]
}

// resourceStatus reads clinicalStatus (Condition, AllergyIntolerance: a
// CodeableConcept) or else status (a code), lower-cased; "" if neither. A
// verificationStatus of entered-in-error or refuted comes first: such a
// Condition or allergy is not the patient's, whatever else it says (and
// FHIR requires an entered-in-error Condition to have no clinicalStatus).
func resourceStatus(v getter) string {
	for _, c := range codings(pathOf(v, "verificationStatus", "coding"), nil) {
		if code := strings.ToLower(c.Code); code == "entered-in-error" || code == "refuted" {
			return code
		}
	}
	if cs := codings(pathOf(v, "clinicalStatus", "coding"), nil); len(cs) > 0 {
		return strings.ToLower(clinicalCoding(cs).Code)
	}
	s, _ := pathOf(v, "status").str()
	if len(s) > 64 {
		return ""
	}
	return strings.ToLower(s)
}
