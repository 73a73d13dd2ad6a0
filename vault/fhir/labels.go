package fhir

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/medvault/medvault/vault/record"
)

//go:embed valuesets/*.txt resourcetypes.txt
var embedded embed.FS

// Canonical code system URIs.
const (
	sysSNOMED = "http://snomed.info/sct"
	sysICD10  = "http://hl7.org/fhir/sid/icd-10-cm"
	sysICD9   = "http://hl7.org/fhir/sid/icd-9-cm"
	sysLOINC  = "http://loinc.org"
	sysRxNorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysCPT    = "http://www.ama-assn.org/go/cpt"
	sysHCPCS  = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
	sysActV3  = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// systemAliases maps the spellings found in real exports onto the
// canonical URIs above. WHO ICD-10 shares ICD-10-CM's lists: the ranges
// used are the same in both, and codes that exist in only one of them
// simply never occur in the other.
var systemAliases = map[string]string{
	sysSNOMED:                         sysSNOMED,
	"http://snomed.info/sct/":         sysSNOMED,
	"urn:oid:2.16.840.1.113883.6.96":  sysSNOMED,
	sysICD10:                          sysICD10,
	"http://hl7.org/fhir/sid/icd-10":  sysICD10,
	"urn:oid:2.16.840.1.113883.6.90":  sysICD10,
	"urn:oid:2.16.840.1.113883.6.3":   sysICD10,
	sysICD9:                           sysICD9,
	"http://hl7.org/fhir/sid/icd-9":   sysICD9,
	"urn:oid:2.16.840.1.113883.6.103": sysICD9,
	"urn:oid:2.16.840.1.113883.6.2":   sysICD9,
	sysLOINC:                          sysLOINC,
	"urn:oid:2.16.840.1.113883.6.1":   sysLOINC,
	sysRxNorm:                         sysRxNorm,
	"urn:oid:2.16.840.1.113883.6.88":  sysRxNorm,
	sysCPT:                            sysCPT,
	"urn:oid:2.16.840.1.113883.6.12":  sysCPT,
	// HCPCS Level II, as HL7 terminology names it, with the https
	// spelling and CMS Blue Button's (CARIN claims).
	sysHCPCS: sysHCPCS,
	"https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": sysHCPCS,
	"urn:oid:2.16.840.1.113883.6.285":                          sysHCPCS,
	"https://bluebutton.cms.gov/resources/codesystem/hcpcs":    sysHCPCS,
	sysActV3:                                            sysActV3,
	"http://hl7.org/fhir/v3/ActCode":                    sysActV3,
	"urn:oid:2.16.840.1.113883.5.4":                     sysActV3,
	"http://hl7.org/fhir/v3/ActCode/":                   sysActV3,
	"http://terminology.hl7.org/CodeSystem/v3-ActCode/": sysActV3,
}

func canonicalSystem(s string) string {
	if c, ok := systemAliases[strings.TrimSpace(s)]; ok {
		return c
	}
	return ""
}

func isICD(sys string) bool { return sys == sysICD10 || sys == sysICD9 }

// normCode normalises a code for comparison: ICD codes lose their dot
// and are upper-cased; other codes are only trimmed.
func normCode(sys, code string) string {
	code = strings.TrimSpace(code)
	if isICD(sys) {
		code = strings.ToUpper(strings.ReplaceAll(code, ".", ""))
	}
	return code
}

// securityLabels maps HL7 v3 ActCode sensitivity codes found in
// meta.security onto medvault's labels. Codes outside this table (for
// example confidentiality codes R and V, or COGN and DVD) are kept in
// Resource.Security but add no label.
var securityLabels = map[string][]record.Label{
	// mental health
	"MH":            {record.MH},
	"PSY":           {record.MH},
	"PSYTHPN":       {record.MH},
	"HIPAAPsyNotes": {record.MH},
	"EMOTDIS":       {record.MH},
	// behavioral health covers both mental health and substance use
	"BH": {record.MH, record.SUD},
	// substance use
	"SUD":        {record.SUD},
	"ETH":        {record.SUD},
	"ETHUD":      {record.SUD},
	"OPIOIDUD":   {record.SUD},
	"42CFRPart2": {record.SUD},
	"DRGIS":      {record.SUD},
	// ALC is not a v3 ActCode (alcohol is ETHUD); accepted because the
	// product brief names it and an extra label only hides more.
	"ALC": {record.SUD},
	// sexuality and reproductive health
	"SEX":      {record.SEX},
	"PREGNANT": {record.SEX},
	"GENDER":   {record.SEX},
	// HIV and STD
	"HIV": {record.HIV},
	"STD": {record.STD},
	// genetics; sickle cell disease is a genetic disease
	"GDIS":   {record.GDIS},
	"SCA":    {record.GDIS},
	"SICKLE": {record.GDIS},
	// abuse and violence
	"SDV": {record.SDV},
	"MST": {record.SDV},
	"VIO": {record.SDV},
}

// rule is one line of a value list.
type rule struct {
	label record.Label
	sys   string
	code  string // exact code, prefix (for "*") or low bound (for ranges), normalised
	hi    string // high bound of a range, normalised
	kind  byte   // '=' exact, '*' prefix, '-' range
	// at, when set, also asks a prefix or range rule's code for
	// characters at 1-based positions (an ICD-10-CM 6th character): all
	// of them.
	at      []charAt
	exclude bool
	line    string // "file:line" for reasons and errors
}

// charAt asks for the character ch at 1-based position pos.
type charAt struct {
	pos int
	ch  byte
}

func (r rule) match(code string) bool {
	for _, a := range r.at {
		if len(code) < a.pos || code[a.pos-1] != a.ch {
			return false
		}
	}
	switch r.kind {
	case '*':
		return strings.HasPrefix(code, r.code)
	case '-':
		if len(code) < len(r.code) {
			return false
		}
		p := code[:len(r.code)]
		return p >= r.code && p <= r.hi
	}
	return code == r.code
}

type codeKey struct{ sys, code string }

// tables holds everything the package loads from its embedded files.
type tables struct {
	types   map[string]bool
	exact   map[codeKey][]rule // exact codes
	pattern map[string][]rule  // prefix and range rules by system
}

var loadTables = sync.OnceValues(func() (*tables, error) { return parseTables(embedded) })

// parseTables reads the resource type list and every value list.
func parseTables(fsys embed.FS) (*tables, error) {
	t := &tables{types: map[string]bool{}, exact: map[codeKey][]rule{}, pattern: map[string][]rule{}}
	b, err := fsys.ReadFile("resourcetypes.txt")
	if err != nil {
		return nil, fmt.Errorf("read resourcetypes.txt: %w", err)
	}
	for _, ln := range strings.Split(string(b), "\n") {
		ln = strings.TrimSpace(ln)
		if ln == "" || ln[0] == '#' {
			continue
		}
		t.types[ln] = true
	}
	files, err := fsys.ReadDir("valuesets")
	if err != nil {
		return nil, fmt.Errorf("read valuesets: %w", err)
	}
	for _, f := range files {
		if path.Ext(f.Name()) != ".txt" {
			continue
		}
		label, err := record.ParseLabel(strings.TrimSuffix(f.Name(), ".txt"))
		if err != nil {
			return nil, fmt.Errorf("value list %s: %w", f.Name(), err)
		}
		b, err := fsys.ReadFile("valuesets/" + f.Name())
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		if err := t.addList(label, f.Name(), b); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *tables) addList(label record.Label, name string, b []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		ln := strings.TrimSpace(sc.Text())
		if ln == "" || ln[0] == '#' {
			continue
		}
		r := rule{label: label, line: fmt.Sprintf("%s:%d", name, n)}
		if ln[0] == '!' {
			r.exclude = true
			ln = ln[1:]
		}
		parts := strings.SplitN(ln, "|", 3)
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			return fmt.Errorf("value list %s: want system|code|display", r.line)
		}
		r.sys = canonicalSystem(parts[0])
		if r.sys == "" || r.sys != parts[0] {
			return fmt.Errorf("value list %s: unknown or non-canonical system", r.line)
		}
		code := parts[1]
		if base, conds, ok := strings.Cut(code, "@"); ok {
			// RULE@N=C[@N=C...]: the code's character at position N is C.
			code = base
			for _, cond := range strings.Split(conds, "@") {
				n, c, ok := strings.Cut(cond, "=")
				pos, err := strconv.Atoi(n)
				if !ok || err != nil || pos < 2 || pos > 8 || len(c) != 1 || !isICD(r.sys) || normCode(r.sys, c) == "" ||
					slices.ContainsFunc(r.at, func(a charAt) bool { return a.pos == pos }) {
					return fmt.Errorf("value list %s: bad position condition %q (want an ICD rule, then @N=C)", r.line, cond)
				}
				r.at = append(r.at, charAt{pos, normCode(r.sys, c)[0]})
			}
		}
		switch {
		case strings.HasSuffix(code, "*"):
			r.kind, r.code = '*', normCode(r.sys, strings.TrimSuffix(code, "*"))
		case isICD(r.sys) && strings.Count(code, "-") == 1:
			lo, hi, _ := strings.Cut(code, "-")
			r.kind, r.code, r.hi = '-', normCode(r.sys, lo), normCode(r.sys, hi)
			if len(r.code) != len(r.hi) || r.code > r.hi {
				return fmt.Errorf("value list %s: bad range", r.line)
			}
		default:
			r.kind, r.code = '=', normCode(r.sys, code)
		}
		if r.kind != '=' && !isICD(r.sys) {
			return fmt.Errorf("value list %s: prefix and range rules are for ICD codes only", r.line)
		}
		if len(r.at) > 0 && (r.kind == '=' || slices.ContainsFunc(r.at, func(a charAt) bool { return a.pos <= len(r.code) })) {
			return fmt.Errorf("value list %s: a position condition must follow a prefix or range, past it", r.line)
		}
		if r.code == "" {
			return fmt.Errorf("value list %s: empty code", r.line)
		}
		if r.kind == '=' {
			k := codeKey{r.sys, r.code}
			t.exact[k] = append(t.exact[k], r)
		} else {
			t.pattern[r.sys] = append(t.pattern[r.sys], r)
		}
	}
	return sc.Err()
}

// codeLabels returns the labels a coding carries, with the list line that
// gave each.
func (t *tables) codeLabels(c Coding, fn func(l record.Label, why string)) {
	sys := canonicalSystem(c.System)
	if sys == "" || sys == sysActV3 {
		return
	}
	code := normCode(sys, c.Code)
	if code == "" {
		return
	}
	var excluded []record.Label
	for _, r := range t.pattern[sys] {
		if r.exclude && r.match(code) {
			excluded = append(excluded, r.label)
		}
	}
	isExcluded := func(l record.Label) bool {
		for _, x := range excluded {
			if x == l {
				return true
			}
		}
		return false
	}
	for _, r := range t.exact[codeKey{sys, code}] {
		if !r.exclude && !isExcluded(r.label) {
			fn(r.label, "code "+sys+"|"+c.Code)
		}
	}
	for _, r := range t.pattern[sys] {
		if !r.exclude && r.match(code) && !isExcluded(r.label) {
			fn(r.label, "code "+sys+"|"+c.Code)
		}
	}
}

// LabelsOf returns the sensitivity labels implied by a set of codings and
// meta.security codings, sorted. It is what the reader applies to every
// resource; the vault may call it to re-derive labels.
func LabelsOf(codes, security []Coding) []record.Label {
	r := &Resource{}
	if t, err := loadTables(); err == nil {
		applyLabels(t, r, codes, security)
	}
	return r.Labels
}

// CodeLabels returns the labels one clinical coding carries.
func CodeLabels(c Coding) []record.Label { return LabelsOf([]Coding{c}, nil) }

// applyLabels adds to r the labels of security codings (honoured when
// present) and of clinical codings (derived in every case: a source that
// sets only a confidentiality code must not switch derivation off).
func applyLabels(t *tables, r *Resource, codes, security []Coding) {
	for _, c := range security {
		if canonicalSystem(c.System) != sysActV3 {
			continue
		}
		for _, l := range securityLabels[strings.TrimSpace(c.Code)] {
			r.addLabel(l, "meta.security "+c.Code)
		}
	}
	for _, c := range codes {
		t.codeLabels(c, func(l record.Label, why string) { r.addLabel(l, why) })
	}
}

// ValueListStats reports how many rules each label's list holds, for
// documentation and tests.
func ValueListStats() (map[record.Label]int, error) {
	t, err := loadTables()
	if err != nil {
		return nil, wrapf(ErrInternal, "%v", err)
	}
	out := map[record.Label]int{}
	for _, rs := range t.exact {
		for _, r := range rs {
			out[r.label]++
		}
	}
	for _, rs := range t.pattern {
		for _, r := range rs {
			out[r.label]++
		}
	}
	return out, nil
}

// ResourceTypes returns the FHIR R4 resource types the reader accepts, sorted.
func ResourceTypes() []string {
	t, err := loadTables()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(t.types))
	for k := range t.types {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// IsResourceType reports whether s is a FHIR R4 resource type.
func IsResourceType(s string) bool {
	t, err := loadTables()
	return err == nil && t.types[s]
}
