package fhir

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/medvault/medvault/vault/record"
)

// Sentinel errors. Every error returned by Reader.Next other than io.EOF
// is a *ParseError wrapping one of these, so callers can branch with
// errors.Is and still show the file and entry.
var (
	ErrNotJSON      = errors.New("not valid JSON")
	ErrNotFHIR      = errors.New("not a FHIR R4 resource, bundle or NDJSON file")
	ErrUnknownType  = errors.New("unknown FHIR R4 resourceType")
	ErrNoID         = errors.New("resource has no id")
	ErrBadID        = errors.New("resource id is not a valid FHIR id")
	ErrNoResource   = errors.New("bundle entry has no resource")
	ErrBadFullURL   = errors.New("bundle entry fullUrl is invalid")
	ErrTooLarge     = errors.New("resource larger than the size limit")
	ErrTooMany      = errors.New("file holds more resources than the limit")
	ErrTruncated    = errors.New("file is truncated")
	ErrDuplicateKey = errors.New("JSON object has a duplicate member name")
	ErrTooDeep      = errors.New("JSON nested too deeply")
	ErrRead         = errors.New("read failed")
	ErrWriterClosed = errors.New("writer is closed")
	ErrInvalidRaw   = errors.New("raw resource is not a JSON object")
	ErrInternal     = errors.New("internal error in embedded FHIR tables")
)

// ParseError reports why a file could not be imported, and where. It never
// contains resource content: only the caller's file name, positions, and
// a fixed message.
type ParseError struct {
	File   string // the name passed to NewReader
	Index  int    // 0-based bundle entry index or NDJSON resource ordinal; -1 when not about one entry
	Line   int    // 1-based line of the entry's start; 0 when unknown
	Offset int64  // byte offset in the file; -1 when unknown
	Err    error  // wraps a sentinel above
}

func (e *ParseError) Error() string {
	s := "fhir: " + strconv.Quote(e.File)
	if e.Index >= 0 {
		// Counted from 1 for people, as lines are.
		s += ": entry " + strconv.Itoa(e.Index+1)
	}
	switch {
	case e.Line > 0:
		s += " (line " + strconv.Itoa(e.Line) + ")"
	case e.Offset >= 0:
		s += " (byte " + strconv.FormatInt(e.Offset, 10) + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *ParseError) Unwrap() error { return e.Err }

// Limits bound what one file may hold. The zero value of a field means the
// default.
type Limits struct {
	// MaxResourceSize is the largest single resource, in bytes (default
	// 64 MiB). A bare resource file and an NDJSON line are bounded by it,
	// and so is every value inside a Bundle. A Bundle whose "entry" member
	// comes before its "resourceType" must fit in it as a whole.
	MaxResourceSize int
	// MaxResources is the most resources one file may yield (default 1,000,000).
	MaxResources int
}

// Default limits.
const (
	DefaultMaxResourceSize = 64 << 20
	DefaultMaxResources    = 1_000_000
)

func (l Limits) withDefaults() Limits {
	if l.MaxResourceSize <= 0 {
		l.MaxResourceSize = DefaultMaxResourceSize
	}
	if l.MaxResources <= 0 {
		l.MaxResources = DefaultMaxResources
	}
	return l
}

// Coding is one FHIR Coding: a code in a code system.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

func (c Coding) String() string { return c.System + "|" + c.Code }

// LabelReason says why a resource carries a label, so a patient can see
// (and correct) it: "meta.security ETH", "code http://snomed.info/sct|5602001",
// "references Condition/123".
type LabelReason struct {
	Label  record.Label `json:"label"`
	Reason string       `json:"reason"`
}

// Resource is one FHIR resource read from a file, with the few indexed
// fields medvault needs. Raw holds its exact input bytes; everything else
// is derived from Raw (and, for Labels, from the other resources of the
// batch by Propagate).
type Resource struct {
	Raw     []byte // the resource's JSON exactly as it appeared in the input
	Type    string // resourceType, one of the R4 resource types
	ID      string // logical id; "" only for a bundle entry identified by FullURL
	FullURL string // Bundle.entry.fullUrl; "" for NDJSON and bare resources

	Title    string    // short human title, e.g. "Hemoglobin A1c"; control characters removed
	Date     time.Time // the clinically relevant date for the type, UTC; zero if none
	Category record.Category
	Labels   []record.Label // sorted, no duplicates
	Why      []LabelReason  // one reason per label (the first found)

	Status        string   // clinicalStatus code, else status, lower-cased; "" if none
	Subject       string   // subject/patient/beneficiary reference, as written
	Code          []Coding // the primary code (code, vaccineCode, medicationCodeableConcept)
	Codes         []Coding // every coding from the clinical code elements, primary code first
	CategoryCodes []Coding // codings of the category element(s)
	Security      []Coding // meta.security codings as found
	References    []string // every Reference.reference, in order, without duplicates or "#local" ones

	// Updated is meta.lastUpdated (zero if absent or not a valid instant)
	// and VersionID meta.versionId ("" if absent): which of two versions
	// of a resource is the later, whatever order they arrived in.
	Updated   time.Time
	VersionID string

	Index  int   // 0-based entry index in the bundle, or ordinal in the NDJSON file
	Line   int   // 1-based line where the resource starts; 0 when unknown
	Offset int64 // byte offset of Raw in the file
}

// Key returns "Type/id", the resource's relative reference, or "" without id.
func (r *Resource) Key() string {
	if r.ID == "" {
		return ""
	}
	return r.Type + "/" + r.ID
}

// HasLabel reports whether r carries l.
func (r *Resource) HasLabel(l record.Label) bool {
	for _, x := range r.Labels {
		if x == l {
			return true
		}
	}
	return false
}

// addLabel adds l with a reason; it reports whether l was new.
func (r *Resource) addLabel(l record.Label, reason string) bool {
	if r.HasLabel(l) {
		return false
	}
	r.Labels = append(r.Labels, l)
	sortLabels(r.Labels)
	r.Why = append(r.Why, LabelReason{Label: l, Reason: reason})
	return true
}

// sortLabels orders labels as record.Labels() does.
func sortLabels(ls []record.Label) {
	order := record.Labels()
	rank := func(l record.Label) int {
		for i, x := range order {
			if x == l {
				return i
			}
		}
		return len(order)
	}
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && rank(ls[j]) < rank(ls[j-1]); j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

func wrapf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
