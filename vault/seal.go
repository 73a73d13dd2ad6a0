package vault

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// Meta describes a record. It is stored sealed (see sealMeta); nothing in it
// is ever written to the database in the clear.
type Meta struct {
	ID       record.ID
	Title    string
	Category record.Category
	Labels   []record.Label
	// HandRemoved are the labels the patient removed by hand (label ID
	// -L) and has not added back: deriving labels again from the record's
	// content, after the value lists change, does not put them back. A
	// label that reaches the record through a reference does, and leaves
	// this list (Meta.inherit).
	HandRemoved []record.Label
	Date        time.Time // clinical date, zero if unknown
	Added       time.Time
	FileName    string
	Size        int64  // plaintext bytes
	Source      Source // how the record entered the vault
	FHIR        *FHIRInfo
	// Status is a FHIR resource's status or clinicalStatus code, "" if none.
	Status string
	// From is the patient who shared this record (provider vaults only).
	From identity.ID
	// Grant is the grant ID under which a shared record arrived.
	Grant []byte
	// SourceID is a shared record's ID in the patient's vault.
	SourceID record.ID
	// ContentDigest is the SHA-256 of the stored age ciphertext.
	ContentDigest [32]byte
	// HeaderDigest is the SHA-256 of its age header and payload nonce,
	// zero if not known (records stored before it was kept). They make
	// the key that authenticates every payload chunk, so checking them
	// binds the whole file to this record without hashing the payload.
	HeaderDigest [32]byte
	Chunks       uint32
}

// FHIRInfo is the index of a FHIR resource stored as a record.
type FHIRInfo struct {
	Type    string
	ID      string
	FullURL string `json:",omitempty"` // Bundle.entry.fullUrl, kept for export
	// FullURLs are the other fullUrls later imports brought the resource
	// under, unchanged (so not imported again): references by them find
	// this record, through the reference index's targets, which verify
	// rebuilds from FullURL and these.
	FullURLs []string `json:",omitempty"`
	// ContentKey is the keyed hash of the resource's bytes under which the
	// de-duplication index lists it; sealed here so verify can check the
	// index without decrypting content.
	ContentKey []byte `json:",omitempty"`
	// Version is 1 for the first content seen under Type/ID from its
	// server (as far as FullURL names one: serverBase), then 2, 3, ...
	Version int
	// Updated (meta.lastUpdated, RFC 3339, UTC) and VersionID
	// (meta.versionId) are the source's own word on which version is the
	// later (see Newer); empty when the resource did not say, or when it
	// was imported by a build that did not keep them.
	Updated   string `json:",omitempty"`
	VersionID string `json:",omitempty"`
}

// Newer reports whether f is a later version of its resource than g: by
// meta.lastUpdated when both have one and they differ; else by
// meta.versionId when both are whole numbers and differ; else by the order
// the vault received them (Version). A history Bundle lists the newest
// version first, and a portal download may be older than the last one
// imported: the order of arrival says nothing then.
func (f *FHIRInfo) Newer(g *FHIRInfo) bool {
	if tf, tg := parseUpdated(f.Updated), parseUpdated(g.Updated); !tf.IsZero() && !tg.IsZero() && !tf.Equal(tg) {
		return tf.After(tg)
	}
	if vf, err := strconv.ParseUint(f.VersionID, 10, 63); err == nil {
		if vg, err := strconv.ParseUint(g.VersionID, 10, 63); err == nil && vf != vg {
			return vf > vg
		}
	}
	return f.Version > g.Version
}

func parseUpdated(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// fullURLs returns every fullUrl under which references find the record.
func (f *FHIRInfo) fullURLs() []string {
	if f.FullURL == "" {
		return f.FullURLs
	}
	return append([]string{f.FullURL}, f.FullURLs...)
}

// Source says how a record entered the vault.
type Source string

// Sources of records.
const (
	SourceAdd    Source = "add"
	SourceImport Source = "import"
	SourceFetch  Source = "fetch"
)

// HasLabel reports whether the record carries l.
func (m *Meta) HasLabel(l record.Label) bool {
	for _, x := range m.Labels {
		if x == l {
			return true
		}
	}
	return false
}

// metaPad rounds sealed metadata up to a multiple of this many bytes so its
// length says little about the title or file name.
const metaPad = 256

const metaDomain = "medvault/record-meta/v1\x00"

type metaV1 struct {
	V        int             `json:"v"`
	Title    string          `json:"title,omitempty"`
	Category record.Category `json:"category"`
	Labels   []record.Label  `json:"labels,omitempty"`
	Removed  []record.Label  `json:"removed,omitempty"`
	Date     *time.Time      `json:"date,omitempty"`
	Added    time.Time       `json:"added"`
	FileName string          `json:"file,omitempty"`
	Size     int64           `json:"size"`
	Source   Source          `json:"source"`
	FHIR     *FHIRInfo       `json:"fhir,omitempty"`
	Status   string          `json:"status,omitempty"`
	From     []byte          `json:"from,omitempty"`
	Grant    []byte          `json:"grant,omitempty"`
	SourceID []byte          `json:"source_id,omitempty"`
	Digest   []byte          `json:"digest"`
	Header   []byte          `json:"header,omitempty"`
	Chunks   uint32          `json:"chunks"`
}

// sealMeta encrypts m with XChaCha20-Poly1305 under the vault's metadata key;
// the additional data binds it to its record ID, so moving sealed metadata to
// another key fails to decrypt.
func (v *Vault) sealMeta(m *Meta) ([]byte, error) {
	mv := metaV1{V: 1, Title: m.Title, Category: m.Category, Labels: m.Labels, Removed: m.HandRemoved, Added: m.Added.UTC(),
		FileName: m.FileName, Size: m.Size, Source: m.Source, FHIR: m.FHIR, Status: m.Status, Grant: m.Grant,
		Digest: m.ContentDigest[:], Chunks: m.Chunks}
	if m.HeaderDigest != ([32]byte{}) {
		mv.Header = m.HeaderDigest[:]
	}
	if !m.Date.IsZero() {
		d := m.Date.UTC()
		mv.Date = &d
	}
	if !m.From.IsZero() {
		mv.From = m.From[:]
		mv.SourceID = m.SourceID[:]
	}
	plain, err := json.Marshal(mv)
	if err != nil {
		return nil, err
	}
	// Pad with spaces inside the JSON value (after the object: JSON allows
	// trailing whitespace, and json.Unmarshal ignores it).
	if r := len(plain) % metaPad; r != 0 {
		plain = append(plain, make([]byte, metaPad-r)...)
		for i := len(plain) - (metaPad - r); i < len(plain); i++ {
			plain[i] = ' '
		}
	}
	out := v.seal(plain, v.metaAD(m.ID))
	clear(plain)
	return out, nil
}

// seal encrypts plain with the metadata key, bound to additional data ad:
// a random nonce, then the ciphertext. Record metadata, kept objects,
// partial receives and the label rules are all sealed so.
func (v *Vault) seal(plain, ad []byte) []byte {
	nonce := make([]byte, v.meta.NonceSize(), v.meta.NonceSize()+len(plain)+v.meta.Overhead())
	rand.Read(nonce)
	return v.meta.Seal(nonce, nonce, plain, ad)
}

// Why unseal refused a value.
var (
	errSealTruncated = errors.New("truncated")
	errSealForged    = errors.New("does not authenticate")
)

// sealFault words unseal's refusal as the errors of openMeta and
// openObject always have: "is truncated", "does not authenticate".
func sealFault(err error) string {
	if errors.Is(err, errSealTruncated) {
		return "is truncated"
	}
	return "does not authenticate"
}

// unseal opens what seal made under ad. sealed may be a bbolt slice:
// nothing returned aliases it.
func (v *Vault) unseal(sealed, ad []byte) ([]byte, error) {
	ns := v.meta.NonceSize()
	if len(sealed) < ns+v.meta.Overhead() {
		return nil, errSealTruncated
	}
	plain, err := v.meta.Open(nil, sealed[:ns], sealed[ns:], ad)
	if err != nil {
		return nil, errSealForged
	}
	return plain, nil
}

func (v *Vault) metaAD(id record.ID) []byte {
	return append([]byte(metaDomain), id[:]...)
}

// openMeta decrypts sealed metadata. sealed may be a bbolt slice: nothing
// returned aliases it.
func (v *Vault) openMeta(id record.ID, sealed []byte) (*Meta, error) {
	plain, err := v.unseal(sealed, v.metaAD(id))
	if err != nil {
		return nil, fmt.Errorf("%w: metadata of record %s %s", ErrTampered, id, sealFault(err))
	}
	defer clear(plain)
	var mv metaV1
	if err := json.Unmarshal(plain, &mv); err != nil || mv.V != 1 || len(mv.Digest) != 32 || (mv.Header != nil && len(mv.Header) != 32) {
		return nil, fmt.Errorf("%w: metadata of record %s is malformed", ErrTampered, id)
	}
	m := &Meta{ID: id, Title: mv.Title, Category: mv.Category, Labels: mv.Labels, HandRemoved: mv.Removed, Added: mv.Added,
		FileName: mv.FileName, Size: mv.Size, Source: mv.Source, FHIR: mv.FHIR, Status: mv.Status, Grant: mv.Grant, Chunks: mv.Chunks}
	if mv.Date != nil {
		m.Date = *mv.Date
	}
	if len(mv.From) > 0 {
		if len(mv.From) != len(m.From) {
			return nil, fmt.Errorf("%w: metadata of record %s is malformed", ErrTampered, id)
		}
		copy(m.From[:], mv.From)
		if len(mv.SourceID) == len(m.SourceID) {
			copy(m.SourceID[:], mv.SourceID)
		}
	}
	copy(m.ContentDigest[:], mv.Digest)
	copy(m.HeaderDigest[:], mv.Header)
	return m, nil
}

// Active reports whether a record holds now, as the emergency summary
// reads it. A FHIR resource is active when its type and status say so
// (fhir.Current): a Condition active, recurrence or relapse; a
// MedicationRequest active or on-hold; an allergy not inactive or
// resolved; an advance directive in force; and so on. A Medication
// resource is never active by its own status, which is about the product:
// see Vault.MedicationUses. A file added by hand has no status: it is
// active. The patient filed it, and keeps or removes it: a medication list
// kept for emergencies is what an emergency needs, and leaving it out
// would make the patient name it in every grant.
func (m *Meta) Active() bool {
	if m.FHIR == nil {
		return true
	}
	return fhir.Current(m.FHIR.Type, m.Status)
}

// Voided reports whether a FHIR resource's status says it never held:
// entered in error, refuted, or (an immunization) not done.
func (m *Meta) Voided() bool {
	return m.Status == "entered-in-error" || m.Status == "refuted" || m.Status == "not-done"
}
