package record

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// ID identifies one record in a vault. It is 16 random bytes, chosen when
// the record is created, so it reveals nothing about the record.
type ID [16]byte

// NewID returns a fresh random record ID.
func NewID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic("medvault: crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
	}
	return id
}

// String returns the ID as 32 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses the hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("invalid record ID %q: want %d hex digits", s, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}

// Category is the one clinical category a record belongs to.
type Category string

// The categories of the product brief, in display order.
const (
	Demographics      Category = "demographics"
	Allergies         Category = "allergies"
	Problems          Category = "problems"
	Medications       Category = "medications"
	Immunizations     Category = "immunizations"
	Vitals            Category = "vitals"
	Labs              Category = "labs"
	Imaging           Category = "imaging"
	Procedures        Category = "procedures"
	Encounters        Category = "encounters"
	CarePlans         Category = "care-plans"
	Notes             Category = "notes"
	SocialHistory     Category = "social-history"
	Devices           Category = "devices"
	Billing           Category = "billing"
	Genomics          Category = "genomics"
	AdvanceDirectives Category = "advance-directives"
	Other             Category = "other"
)

// Categories lists every valid category in display order.
var categories = []Category{
	Demographics, Allergies, Problems, Medications, Immunizations, Vitals, Labs,
	Imaging, Procedures, Encounters, CarePlans, Notes, SocialHistory, Devices,
	Billing, Genomics, AdvanceDirectives, Other,
}

// Categories returns every valid category in display order.
func Categories() []Category { return slices.Clone(categories) }

// Valid reports whether c is one of the known categories.
func (c Category) Valid() bool { return slices.Contains(categories, c) }

// ParseCategory validates a category name given by a user.
func ParseCategory(s string) (Category, error) {
	c := Category(strings.ToLower(strings.TrimSpace(s)))
	if !c.Valid() {
		return "", fmt.Errorf("unknown category %q (known: %s)", s, joinCategories(categories))
	}
	return c, nil
}

func joinCategories(cs []Category) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// Label is a sensitivity label from the HL7 v3 ActCode system. A grant never
// includes a record carrying a label unless the grant names that label.
type Label string

// The sensitivity labels medvault knows.
const (
	MH   Label = "MH"   // mental health
	SUD  Label = "SUD"  // substance use disorder
	SEX  Label = "SEX"  // sexuality and reproductive health
	HIV  Label = "HIV"  // HIV/AIDS
	STD  Label = "STD"  // sexually transmitted disease
	GDIS Label = "GDIS" // genetic disease
	SDV  Label = "SDV"  // sexual assault, abuse or domestic violence
)

var labels = []Label{MH, SUD, SEX, HIV, STD, GDIS, SDV}

// Labels returns every known sensitivity label.
func Labels() []Label { return slices.Clone(labels) }

// Valid reports whether l is a known label.
func (l Label) Valid() bool { return slices.Contains(labels, l) }

// ParseLabel validates a label name given by a user (case-insensitive).
func ParseLabel(s string) (Label, error) {
	l := Label(strings.ToUpper(strings.TrimSpace(s)))
	if !l.Valid() {
		return "", fmt.Errorf("unknown sensitivity label %q (known: MH, SUD, SEX, HIV, STD, GDIS, SDV)", s)
	}
	return l, nil
}
