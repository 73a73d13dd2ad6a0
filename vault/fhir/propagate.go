package fhir

import (
	"strconv"
	"strings"

	"github.com/medvault/medvault/vault/record"
)

// actorTypes never pass their labels on: every clinical resource
// references its Patient and practitioners, so a label on one of these
// would spread to a whole record set.
var actorTypes = map[string]bool{
	"Patient": true, "Practitioner": true, "PractitionerRole": true, "Organization": true,
	"Location": true, "HealthcareService": true, "RelatedPerson": true, "Person": true,
	"Group": true, "Endpoint": true,
}

// Propagate spreads sensitivity labels across a batch of resources and
// returns how many resources gained a label. Two rules apply until nothing
// changes:
//
//  1. A resource inherits every label of each resource it references
//     (resolved by fullUrl, such as "urn:uuid:...", or by "Type/id", from
//     relative or absolute references, ignoring "/_history/v"; a
//     "urn:uuid:X" that no fullUrl matches, as NDJSON has none, resolves
//     as "Type/X" would when the resources whose id is X have one type,
//     and to nothing when they have two: see UUIDReference). So an
//     Encounter whose reason is depression labels the Claim whose item
//     references that Encounter, and the ExplanationOfBenefit that
//     references the Claim; a MedicationRequest whose reasonReference or
//     encounter points at a labelled resource is labelled. References to
//     actor resources (Patient, Practitioner, Organization, ...) carry
//     nothing.
//  2. A resource whose primary code equals the primary code of a resource
//     labelled by its own meta.security receives those labels: a source
//     that marked one "F32.9" Condition as MH has said what that code means.
//     Codings a vault's export added (AddSecurityLabels) do not count: they
//     speak of the one resource.
//
// Propagation only adds labels; it never removes one. Its reach is the
// slice given: one import batch, plus whatever earlier resources the
// caller includes (for example the records a new batch references). A
// reference to a resource outside the slice propagates nothing. Two
// resources with one "Type/id" (versions) are two resources here, the
// first holding the key; the vault's import treats them as one resource
// (docs/DESIGN.md, "Labels across imports").
func Propagate(rs []*Resource) int {
	byKey := make(map[string]*Resource, 2*len(rs))
	for _, r := range rs {
		if r == nil {
			continue
		}
		if r.FullURL != "" {
			byKey[r.FullURL] = r
			if typ, id, ok := splitRESTful(r.FullURL); ok && typ == r.Type && id == r.ID {
				byKey[typ+"/"+id] = r
			}
		}
		if k := r.Key(); k != "" {
			if _, taken := byKey[k]; !taken {
				byKey[k] = r
			}
		}
	}
	// A urn:uuid no fullUrl matches names the one Type/id with that id.
	idType := map[string]string{} // id -> its type, "" when two types have it
	for _, r := range rs {
		if r == nil || !isUUID(r.ID) {
			continue
		}
		if t, ok := idType[r.ID]; !ok {
			idType[r.ID] = r.Type
		} else if t != r.Type {
			idType[r.ID] = ""
		}
	}
	changed := map[*Resource]bool{}

	// Rule 2: codes of explicitly labelled resources.
	codeLabels := map[codeKey][]record.Label{}
	for _, r := range rs {
		if r == nil {
			continue
		}
		own := securityOnly(r)
		if len(own) == 0 {
			continue
		}
		for _, c := range r.Code {
			k := codeKey{canonicalOrRaw(c.System), c.Code}
			codeLabels[k] = append(codeLabels[k], own...)
		}
	}
	if len(codeLabels) > 0 {
		for _, r := range rs {
			if r == nil {
				continue
			}
			for _, c := range r.Code {
				for _, l := range codeLabels[codeKey{canonicalOrRaw(c.System), c.Code}] {
					if r.addLabel(l, "same code as a resource labelled "+string(l)+" by its source") {
						changed[r] = true
					}
				}
			}
		}
	}

	// Rule 1: referrers inherit from referents, to a fixed point. The
	// reverse edges are built once; each resource re-enters the work list
	// only when it gains a label, and it can gain at most len(Labels())
	// labels, so the work is O(edges × labels).
	referrers := map[*Resource][]*Resource{}
	for _, r := range rs {
		if r == nil {
			continue
		}
		for _, ref := range r.References {
			t := resolve(byKey, idType, ref)
			if t == nil || t == r || actorTypes[t.Type] {
				continue
			}
			referrers[t] = append(referrers[t], r)
		}
	}
	var work []*Resource
	for _, r := range rs {
		if r != nil && len(r.Labels) > 0 {
			work = append(work, r)
		}
	}
	for len(work) > 0 {
		t := work[len(work)-1]
		work = work[:len(work)-1]
		for _, r := range referrers[t] {
			grew := false
			for _, l := range t.Labels {
				if r.addLabel(l, "references "+refName(t)) {
					grew = true
				}
			}
			if grew {
				changed[r] = true
				work = append(work, r)
			}
		}
	}
	return len(changed)
}

// securityOnly returns the labels r's own meta.security gives it, but for
// those of codings a vault's export added (AddSecurityLabels): they say
// what the vault knew of the one resource, not what its code means.
func securityOnly(r *Resource) []record.Label {
	if len(r.Security) == 0 {
		return nil
	}
	cs := r.Security
	if r.Raw != nil {
		cs = sourceSecurity(r.Raw)
	}
	var out []record.Label
	for _, c := range cs {
		if canonicalSystem(c.System) != sysActV3 {
			continue
		}
		out = append(out, securityLabels[strings.TrimSpace(c.Code)]...)
	}
	return out
}

func canonicalOrRaw(sys string) string {
	if c := canonicalSystem(sys); c != "" {
		return c
	}
	return sys
}

// resolve finds the resource a reference names within the batch; idType
// gives the type of the resources with a UUID id ("" for two types).
func resolve(byKey map[string]*Resource, idType map[string]string, ref string) *Resource {
	if t, ok := byKey[ref]; ok {
		return t
	}
	if strings.HasPrefix(ref, "urn:") {
		if id, ok := UUIDReference(ref); ok && idType[id] != "" {
			return byKey[idType[id]+"/"+id]
		}
		return nil
	}
	if typ, id, ok := splitRESTful(ref); ok {
		return byKey[typ+"/"+id]
	}
	return nil
}

func refName(r *Resource) string {
	if k := r.Key(); k != "" {
		return k
	}
	return r.FullURL
}

// The functions below give Propagate's rules one piece at a time, for a
// caller that keeps the batch somewhere other than in memory (the vault's
// import keeps it in a scratch file, so that a file of any size imports in
// bounded memory). Propagate stays the reference; the vault's tests compare
// the two on generated files.

// TargetKey is a key under which a reference can find a resource.
type TargetKey struct {
	Key string
	// Override is set when the resource takes the key even if an earlier
	// resource of the batch holds it (fullUrl and its "Type/id" form);
	// otherwise (the resource's own "Type/id") the first one keeps it.
	Override bool
}

// TargetKeys returns, in the order Propagate applies them, the keys under
// which references find r.
func TargetKeys(r *Resource) []TargetKey {
	var out []TargetKey
	if r.FullURL != "" {
		out = append(out, TargetKey{r.FullURL, true})
		if typ, id, ok := splitRESTful(r.FullURL); ok && typ == r.Type && id == r.ID {
			out = append(out, TargetKey{typ + "/" + id, true})
		}
	}
	if k := r.Key(); k != "" {
		out = append(out, TargetKey{k, false})
	}
	return out
}

// ReferenceKeys returns the keys a reference is resolved by: exact, the
// reference as written, and fallback, its "Type/id" form ("" when it has
// none or it is the same), which applies only when no resource holds exact.
func ReferenceKeys(ref string) (exact, fallback string) {
	if strings.HasPrefix(ref, "urn:") {
		return ref, ""
	}
	if typ, id, ok := splitRESTful(ref); ok && typ+"/"+id != ref {
		return ref, typ + "/" + id
	}
	return ref, ""
}

// UUIDReference reports whether ref is "urn:uuid:" and a UUID, and returns
// the UUID. When no fullUrl matches such a reference (NDJSON has none, and
// bulk exports still write them), it names the resource of the batch with
// that id, as "Type/id" would, if all the resources with that id have one
// type; if two types do, it names none: no guess.
func UUIDReference(ref string) (id string, ok bool) {
	id, ok = strings.CutPrefix(ref, "urn:uuid:")
	return id, ok && isUUID(id)
}

// PassesLabels reports whether a resource of type typ passes its labels on
// to the resources that reference it (actors such as Patient do not).
func PassesLabels(typ string) bool { return !actorTypes[typ] }

// SourceLabels returns the labels r's own meta.security gives it: the
// labels rule 2 spreads to resources with the same primary code (not
// those of codings a vault's export added).
func SourceLabels(r *Resource) []record.Label { return securityOnly(r) }

// CodeKeys returns r's primary codes as rule 2 compares them, each as one
// string (the canonical system and the code, unambiguously joined).
func CodeKeys(r *Resource) []string {
	out := make([]string, 0, len(r.Code))
	for _, c := range r.Code {
		sys := canonicalOrRaw(c.System)
		out = append(out, strconv.Itoa(len(sys))+":"+sys+c.Code)
	}
	return out
}

// PlainKey reports whether key, a key of TargetKeys or ReferenceKeys, is
// a plain "Type/id" (the key a resource's own type and id give it), and
// returns its type and id.
func PlainKey(key string) (typ, id string, ok bool) {
	typ, id, ok = splitRESTful(key)
	return typ, id, ok && typ+"/"+id == key
}

// MayCarryLabels reports whether a reference can resolve to a resource of
// another batch that passes labels on: not a reference to a contained
// resource ("#id", which names a part of the referring resource), not a
// conditional reference ("Type?search", which no key of TargetKeys
// matches), and not a "Type/id" reference (relative or absolute) to an
// actor type. A caller that keeps references beyond one batch can skip the
// others: Propagate would find nothing through them.
func MayCarryLabels(ref string) bool {
	if strings.HasPrefix(ref, "#") || strings.Contains(ref, "?") {
		return false
	}
	if strings.HasPrefix(ref, "urn:") {
		return true
	}
	if typ, _, ok := splitRESTful(ref); ok {
		return !actorTypes[typ]
	}
	return true
}
