package share

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/medvault/medvault/vault/record"
)

// EmergencySummary is the name of the derived scope: allergies, active
// medications, active problems, immunizations and advance directives.
const EmergencySummary = "emergency-summary"

// categoryBits fixes the bit of each category in a grant's category mask.
// The order is part of the v1 format and never changes; new categories take
// new bits.
var categoryBits = []record.Category{
	record.Demographics,      // bit 0
	record.Allergies,         // bit 1
	record.Problems,          // bit 2
	record.Medications,       // bit 3
	record.Immunizations,     // bit 4
	record.Vitals,            // bit 5
	record.Labs,              // bit 6
	record.Imaging,           // bit 7
	record.Procedures,        // bit 8
	record.Encounters,        // bit 9
	record.CarePlans,         // bit 10
	record.Notes,             // bit 11
	record.SocialHistory,     // bit 12
	record.Devices,           // bit 13
	record.Billing,           // bit 14
	record.Genomics,          // bit 15
	record.AdvanceDirectives, // bit 16
	record.Other,             // bit 17
}

// labelBits fixes the bit of each sensitivity label in a grant's label mask.
var labelBits = []record.Label{
	record.MH,   // bit 0
	record.SUD,  // bit 1
	record.SEX,  // bit 2
	record.HIV,  // bit 3
	record.STD,  // bit 4
	record.GDIS, // bit 5
	record.SDV,  // bit 6
}

const (
	allCategoryBits = uint32(1)<<18 - 1
	allLabelBits    = uint8(1)<<7 - 1

	scopeFlagEmergency = 0x01
	allScopeFlags      = scopeFlagEmergency
)

// categoryBit returns c's bit in the category mask (see categoryBits; a
// test checks the two agree). A switch, because Select calls it once per
// record.
func categoryBit(c record.Category) (uint32, bool) {
	var i uint
	switch c {
	case record.Demographics:
		i = 0
	case record.Allergies:
		i = 1
	case record.Problems:
		i = 2
	case record.Medications:
		i = 3
	case record.Immunizations:
		i = 4
	case record.Vitals:
		i = 5
	case record.Labs:
		i = 6
	case record.Imaging:
		i = 7
	case record.Procedures:
		i = 8
	case record.Encounters:
		i = 9
	case record.CarePlans:
		i = 10
	case record.Notes:
		i = 11
	case record.SocialHistory:
		i = 12
	case record.Devices:
		i = 13
	case record.Billing:
		i = 14
	case record.Genomics:
		i = 15
	case record.AdvanceDirectives:
		i = 16
	case record.Other:
		i = 17
	default:
		return 0, false
	}
	return 1 << i, true
}

func labelBit(l record.Label) (uint8, bool) {
	i := slices.Index(labelBits, l)
	if i < 0 {
		return 0, false
	}
	return 1 << uint(i), true
}

func categoriesFromMask(m uint32) []record.Category {
	var cs []record.Category
	for i, c := range categoryBits {
		if m&(1<<uint(i)) != 0 {
			cs = append(cs, c)
		}
	}
	return cs
}

func labelsFromMask(m uint8) []record.Label {
	var ls []record.Label
	for i, l := range labelBits {
		if m&(1<<uint(i)) != 0 {
			ls = append(ls, l)
		}
	}
	return ls
}

// Scope says which records a grant covers: whole categories, single
// records by ID, and the derived emergency summary. A record is in scope
// when any of the three covers it; sensitivity labels are checked on top
// (see Grant.Covers).
type Scope struct {
	Categories       []record.Category
	Records          []record.ID
	EmergencySummary bool
}

// IsEmpty reports whether s covers nothing.
func (s Scope) IsEmpty() bool {
	return len(s.Categories) == 0 && len(s.Records) == 0 && !s.EmergencySummary
}

// String returns the scope as the comma-separated list ParseScope reads,
// categories in canonical order, then emergency-summary, then record IDs in
// ascending order.
func (s Scope) String() string {
	var parts []string
	m, _ := categoryMask(s.Categories)
	for _, c := range categoriesFromMask(m) {
		parts = append(parts, string(c))
	}
	if s.EmergencySummary {
		parts = append(parts, EmergencySummary)
	}
	ids := slices.Clone(s.Records)
	sortIDs(ids)
	for _, id := range slices.Compact(ids) {
		parts = append(parts, id.String())
	}
	return strings.Join(parts, ",")
}

// ParseScope parses a comma-separated list of category names,
// "emergency-summary" and record IDs (32 hex digits), as the CLI's --scope
// flag takes them. Duplicates are allowed and removed.
func ParseScope(s string) (Scope, error) {
	var sc Scope
	if len(s) > 64<<10 {
		return Scope{}, fmt.Errorf("%w: scope list too long", ErrInvalidParams)
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		switch {
		case part == "":
			continue
		case part == EmergencySummary:
			sc.EmergencySummary = true
		case record.Category(part).Valid():
			if !slices.Contains(sc.Categories, record.Category(part)) {
				sc.Categories = append(sc.Categories, record.Category(part))
			}
		case len(part) == 32:
			id, err := record.ParseID(part)
			if err != nil {
				return Scope{}, fmt.Errorf("%w %q", ErrUnknownCategory, part)
			}
			if !slices.Contains(sc.Records, id) {
				sc.Records = append(sc.Records, id)
			}
		default:
			if len(part) > 40 {
				part = part[:40] + "..."
			}
			return Scope{}, fmt.Errorf("%w %q (known: %s, %s, or a record ID)", ErrUnknownCategory, part, categoryList(), EmergencySummary)
		}
	}
	return sc, nil
}

func categoryList() string {
	s := make([]string, len(categoryBits))
	for i, c := range categoryBits {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

func categoryMask(cs []record.Category) (uint32, error) {
	var m uint32
	for _, c := range cs {
		b, ok := categoryBit(c)
		if !ok {
			q := string(c)
			if len(q) > 40 {
				q = q[:40] + "..."
			}
			return 0, fmt.Errorf("%w %q", ErrUnknownCategory, q)
		}
		m |= b
	}
	return m, nil
}

func labelMask(ls []record.Label) (uint8, error) {
	var m uint8
	for _, l := range ls {
		b, ok := labelBit(l)
		if !ok {
			q := string(l)
			if len(q) > 40 {
				q = q[:40] + "..."
			}
			return 0, fmt.Errorf("%w %q", ErrUnknownLabel, q)
		}
		m |= b
	}
	return m, nil
}

func sortIDs(ids []record.ID) {
	slices.SortFunc(ids, func(a, b record.ID) int { return bytes.Compare(a[:], b[:]) })
}

// RecordInfo is what the decision needs to know about one record. The
// vault fills it from the record's (decrypted) metadata.
type RecordInfo struct {
	ID       record.ID
	Category record.Category
	Labels   []record.Label
	// Active marks a record that holds now (vault.Meta.Active): a
	// medication taken, a problem present, an allergy not resolved, an
	// advance directive in force. The emergency summary includes only
	// active records.
	Active bool
	// UsedBy holds, for a Medication resource, whose own status is about
	// the product, the labels of each current medication record that
	// references it (vault.Vault.MedicationUses); Active is set when there
	// is one. The emergency summary includes the Medication only when the
	// grant names every label of one of them, so it never goes out without
	// a record that makes it current: alone, it would tell of a
	// prescription the grant withholds.
	UsedBy [][]record.Label
	// Voided marks a resource entered in error, refuted or not done, and
	// Superseded one stored again in a later version: the emergency summary
	// includes neither.
	Voided, Superseded bool
}

// scope is the canonical, decoded form of a grant's scope and labels.
type scope struct {
	cats      uint32
	labels    uint8
	emergency bool
	records   []record.ID // ascending, unique
}

func (s *scope) namesRecord(id record.ID) bool {
	_, ok := slices.BinarySearchFunc(s.records, id, func(a, b record.ID) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// inEmergencySummary reports whether a record belongs to the derived
// emergency-summary scope: an active record of category allergies,
// medications, problems, immunizations or advance-directives, neither
// voided nor superseded, and, for a Medication, with a current record
// that references it and whose labels the grant names.
func (s *scope) inEmergencySummary(r *RecordInfo) bool {
	if !r.Active || r.Voided || r.Superseded {
		return false
	}
	switch r.Category {
	case record.Allergies, record.Medications, record.Problems, record.Immunizations, record.AdvanceDirectives:
		return len(r.UsedBy) == 0 || slices.ContainsFunc(r.UsedBy, s.namesLabels)
	}
	return false
}

// namesLabels reports whether the grant names every label of ls; an
// unknown label is never named.
func (s *scope) namesLabels(ls []record.Label) bool {
	for _, l := range ls {
		b, ok := labelBit(l)
		if !ok || s.labels&b == 0 {
			return false
		}
	}
	return true
}

// covers is THE per-item rule, shared by Decide, Select and Grant.Covers:
//
//  1. the record is in scope when the grant names its ID, or names its
//     category, or includes the emergency summary and the record belongs to
//     it; otherwise ReasonOutOfScope;
//  2. then every label of the record must be named by the grant, even when
//     the grant names the record by ID; an unknown label is never named;
//     otherwise ReasonLabelExcluded.
func (s *scope) covers(r *RecordInfo) Reason {
	in := s.namesRecord(r.ID)
	if !in {
		if b, ok := categoryBit(r.Category); ok && s.cats&b != 0 {
			in = true
		}
	}
	if !in && s.emergency && s.inEmergencySummary(r) {
		in = true
	}
	if !in {
		return ReasonOutOfScope
	}
	if !s.namesLabels(r.Labels) {
		return ReasonLabelExcluded
	}
	return ReasonAllowed
}

// Denial is one record refused, and why.
type Denial struct {
	ID     record.ID
	Reason Reason
}

// Selection is the result of Select.
type Selection struct {
	// Items are the records the grant covers, in ascending ID order.
	Items []record.ID
	// Withheld are records in scope that the grant does not cover because
	// of a sensitivity label it does not name, in ascending ID order. The
	// CLI shows them in grant --dry-run ("2 records labelled MH are not
	// included; add --label MH to include them").
	Withheld []Denial
}

// LabelCount is how many records carry a label.
type LabelCount struct {
	Label record.Label
	N     int
}

// WithheldLabels counts, per label in record.Labels order, the withheld
// records that carry it, leaving out the labels in named (the grant's:
// those did not keep them out). labels gives a record's labels.
func (s Selection) WithheldLabels(labels func(record.ID) []record.Label, named []record.Label) []LabelCount {
	by := map[record.Label]int{}
	for _, d := range s.Withheld {
		for _, l := range labels(d.ID) {
			if !slices.Contains(named, l) {
				by[l]++
			}
		}
	}
	var out []LabelCount
	for _, l := range record.Labels() {
		if by[l] > 0 {
			out = append(out, LabelCount{l, by[l]})
		}
	}
	return out
}

// Select returns exactly the records among recs that g covers, applying the
// same per-item rule as Decide. It does not check times, revocation or
// signatures: it answers "what would this grant share?". When an ID occurs
// more than once in recs, it is covered only if every occurrence is.
func Select(g *Grant, recs []RecordInfo) Selection {
	var sel Selection
	if g == nil {
		return sel
	}
	// verdict holds an ID as two big-endian words, so sorting compares
	// integers and moves no pointers.
	type verdict struct {
		hi, lo   uint64
		excluded bool // label-excluded, else allowed
	}
	// Only records in scope (allowed or withheld) need sorting; out-of-scope
	// ones matter only if their ID also occurs in scope.
	in := make([]verdict, 0, 64)
	nOut := 0
	outs := make([]bool, len(recs))
	for i := range recs {
		r := g.sc.covers(&recs[i])
		if r == ReasonOutOfScope {
			outs[i] = true
			nOut++
			continue
		}
		id := &recs[i].ID
		in = append(in, verdict{binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(id[8:]), r != ReasonAllowed})
	}
	if len(in) == 0 {
		return sel
	}
	var outOfScope map[record.ID]bool
	if nOut > 0 {
		set := newIDSet(len(in))
		for i, o := range outs {
			if !o {
				set.add(recs[i].ID)
			}
		}
		for i, o := range outs {
			if o && set.has(recs[i].ID) {
				if outOfScope == nil {
					outOfScope = make(map[record.ID]bool)
				}
				outOfScope[recs[i].ID] = true
			}
		}
	}
	// Sort by ID, label-excluded before allowed, so the first verdict of a
	// group is the most restrictive.
	slices.SortFunc(in, func(a, b verdict) int {
		if c := cmp.Compare(a.hi, b.hi); c != 0 {
			return c
		}
		if c := cmp.Compare(a.lo, b.lo); c != 0 {
			return c
		}
		switch {
		case a.excluded == b.excluded:
			return 0
		case a.excluded:
			return -1
		}
		return 1
	})
	for i := 0; i < len(in); {
		j := i + 1
		for j < len(in) && in[j].hi == in[i].hi && in[j].lo == in[i].lo {
			j++
		}
		var id record.ID
		binary.BigEndian.PutUint64(id[:8], in[i].hi)
		binary.BigEndian.PutUint64(id[8:], in[i].lo)
		switch {
		case outOfScope[id]:
		case !in[i].excluded:
			sel.Items = append(sel.Items, id)
		default:
			sel.Withheld = append(sel.Withheld, Denial{id, ReasonLabelExcluded})
		}
		i = j
	}
	return sel
}

// idSet is a small open-addressing hash set of record IDs, for Select's
// duplicate check. Record IDs are random, so their first 8 bytes hash them.
type idSet struct {
	slots []record.ID
	used  []bool
	mask  uint64
}

func newIDSet(n int) *idSet {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	return &idSet{slots: make([]record.ID, size), used: make([]bool, size), mask: uint64(size - 1)}
}

func idHash(id record.ID) uint64 {
	// Mix, so that crafted (non-random) IDs cannot all land in one slot
	// cheaply; a collision costs only probing, never correctness.
	h := uint64(id[0]) | uint64(id[1])<<8 | uint64(id[2])<<16 | uint64(id[3])<<24 |
		uint64(id[4])<<32 | uint64(id[5])<<40 | uint64(id[6])<<48 | uint64(id[7])<<56
	h ^= uint64(id[8]) | uint64(id[9])<<8 | uint64(id[10])<<16 | uint64(id[11])<<24 |
		uint64(id[12])<<32 | uint64(id[13])<<40 | uint64(id[14])<<48 | uint64(id[15])<<56
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

func (s *idSet) add(id record.ID) {
	for i := idHash(id) & s.mask; ; i = (i + 1) & s.mask {
		if !s.used[i] {
			s.used[i], s.slots[i] = true, id
			return
		}
		if s.slots[i] == id {
			return
		}
	}
}

func (s *idSet) has(id record.ID) bool {
	for i := idHash(id) & s.mask; s.used[i]; i = (i + 1) & s.mask {
		if s.slots[i] == id {
			return true
		}
	}
	return false
}
