package fhir

import (
	"bytes"
	"io"
	"slices"

	"github.com/medvault/medvault/vault/record"
)

// ActCodeSystem is the code system of the sensitivity codes medvault
// writes into meta.security (HL7 v3 ActCode). Each label's code is its
// name: MH, SUD, SEX, HIV, STD, GDIS, SDV, which the reader maps back to
// the same label.
const ActCodeSystem = sysActV3

// The classifier extension of the HL7 FHIR Data Segmentation for Privacy
// guide (DS4P) names who assigned a security label. Export puts it, naming
// medvault, on every coding it adds: the label is the vault's (derived
// from codes, propagated from a referenced resource, or set by the
// patient), said of this one resource, and rule 2 of Propagate, which
// reads a source's label as a statement about the resource's code, leaves
// such codings out.
const (
	classifierURL  = "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-sec-label-classifier"
	classifierName = "medvault"
)

// AddSecurityLabels writes raw, one resource, to w with a meta.security
// coding {"system": ActCodeSystem, "code": <label>} for each label of ls
// its meta.security does not give it yet (as the reader reads it: an
// ActCode coding whose code maps to the label, "ETH" giving SUD, say),
// each with the DS4P classifier extension naming medvault.
// Codings already there stay as they are, where they are, and the new ones
// follow them; every other byte is written unchanged. raw must be a valid
// JSON object (a record's content is); nothing is written when it is not.
//
// Where the resource has no meta, one is put after its id (or its
// resourceType); a meta.security that is one Coding rather than an array
// becomes an array holding it. Anything else in their place (null, a
// string: not FHIR, and nothing the reader takes a label from) is
// replaced.
func AddSecurityLabels(w io.Writer, raw []byte, ls []record.Label) error {
	var v validator
	if err := v.validate(raw); err != nil || !jval(raw).isObject() {
		return ErrInvalidRaw
	}
	have := SecurityLabels(raw)
	var add []byte
	for _, l := range record.Labels() {
		if !slices.Contains(ls, l) || slices.Contains(have, l) {
			continue
		}
		if len(add) > 0 {
			add = append(add, ',')
		}
		add = append(add, `{"extension":[{"url":`...)
		add = appendJSONString(add, classifierURL)
		add = append(add, `,"valueReference":{"display":`...)
		add = appendJSONString(add, classifierName)
		add = append(add, `}}],"system":`...)
		add = appendJSONString(add, ActCodeSystem)
		add = append(add, `,"code":`...)
		add = appendJSONString(add, string(l))
		add = append(add, '}')
	}
	if len(add) == 0 {
		return writeAll(w, raw)
	}
	security := slices.Concat([]byte(`"security":[`), add, []byte{']'})
	ms, me := memberAt(raw, 0, "meta")
	switch {
	case ms < 0:
		// After the id, or the resourceType (the reader requires one).
		_, at := memberAt(raw, 0, "id")
		if at < 0 {
			_, at = memberAt(raw, 0, "resourceType")
		}
		if at < 0 {
			return ErrInvalidRaw
		}
		return writeAll(w, raw[:at], []byte(`,"meta":{`), security, []byte{'}'}, raw[at:])
	case raw[ms] != '{':
		return writeAll(w, raw[:ms], []byte{'{'}, security, []byte{'}'}, raw[me:])
	}
	ss, se := memberAt(raw, ms, "security")
	switch {
	case ss < 0 && skipWS(raw, ms+1) == me-1: // an empty meta
		return writeAll(w, raw[:ms+1], security, raw[ms+1:])
	case ss < 0:
		return writeAll(w, raw[:ms+1], security, []byte{','}, raw[ms+1:])
	case raw[ss] == '[' && skipWS(raw, ss+1) == se-1: // an empty array
		return writeAll(w, raw[:ss+1], add, raw[ss+1:])
	case raw[ss] == '[':
		return writeAll(w, raw[:se-1], []byte{','}, add, raw[se-1:])
	case raw[ss] == '{':
		return writeAll(w, raw[:ss], []byte{'['}, raw[ss:se], []byte{','}, add, []byte{']'}, raw[se:])
	}
	return writeAll(w, raw[:ss], []byte{'['}, add, []byte{']'}, raw[se:])
}

func writeAll(w io.Writer, parts ...[]byte) error {
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// SecurityLabels returns the labels the meta.security codings of raw, one
// resource, give it, as the reader reads them. raw must be valid JSON.
func SecurityLabels(raw []byte) []record.Label {
	return LabelsOf(nil, codings(pathOf(jval(raw), "meta", "security"), nil))
}

// memberAt finds member name of the object starting at b[at] and returns
// the start and end of its value; -1s when the object has no such member.
// b must be valid JSON.
func memberAt(b []byte, at int, name string) (vs, ve int) {
	if at >= len(b) || b[at] != '{' {
		return -1, -1
	}
	i := skipWS(b, at+1)
	for i < len(b) && b[i] == '"' {
		ke := skipString(b, i)
		if ke-1 < i+1 {
			break
		}
		n := b[i+1 : ke-1]
		j := skipWS(b, ke)
		if j >= len(b) || b[j] != ':' {
			break
		}
		j = skipWS(b, j+1)
		end := skipValue(b, j)
		if nameIs(n, bytes.IndexByte(n, '\\') >= 0, name) {
			return j, end
		}
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
	return -1, -1
}

// RewriteReferences writes raw, one resource, to w with each
// Reference.reference string whose value is a key of to replaced by its
// value, and returns how many it replaced. Every other byte is written
// unchanged. A reference written with escapes is compared unescaped.
func RewriteReferences(w io.Writer, raw []byte, to map[string]string) (int, error) {
	n, last := 0, 0
	var err error
	eachReference(raw, func(start, end int, s string) {
		r, ok := to[s]
		if !ok || err != nil {
			return
		}
		if err = writeAll(w, raw[last:start], appendJSONString(nil, r)); err == nil {
			last = end
			n++
		}
	})
	if err != nil {
		return n, err
	}
	return n, writeAll(w, raw[last:])
}

// assignedByVault reports whether the meta.security coding c carries the
// classifier extension AddSecurityLabels writes.
func assignedByVault(c jval) bool {
	found := false
	c.get("extension").elems(func(e jval) bool {
		found = e.get("url").string() == classifierURL && pathOf(e, "valueReference", "display").string() == classifierName
		return !found
	})
	return found
}

// sourceSecurity returns the meta.security codings of raw, as the reader
// reads them, but for those AddSecurityLabels wrote.
func sourceSecurity(raw []byte) []Coding {
	var out []Coding
	pathOf(jval(raw), "meta", "security").each(func(c jval) {
		if !assignedByVault(c) {
			out = codings(c, out)
		}
	})
	return out
}
