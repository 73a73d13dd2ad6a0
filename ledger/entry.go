package ledger

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Hash is a SHA-256 hash: a leaf hash, an interior node of the Merkle tree,
// a tree root, or a commitment. It has the layout of tlog.Hash.
type Hash [HashSize]byte

// HashSize is the size of a Hash in bytes.
const HashSize = tlog.HashSize

// String returns the standard base64 form of h, as used in checkpoints.
func (h Hash) String() string { return tlog.Hash(h).String() }

// Limits of the entry encoding. Encoders refuse and decoders reject any
// value beyond them, so a decoded entry is never larger than MaxEntrySize.
const (
	MaxActorLen   = 64       // bytes of Entry.Actor
	MaxSubjects   = 4096     // elements of Entry.Subjects
	MaxSubjectLen = 64       // bytes of one subject ID (at least 1)
	GrantLen      = 32       // bytes of a non-empty Entry.Grant
	MaxPurposeLen = 32       // bytes of Entry.Purpose
	MaxReasonLen  = 64       // bytes of Entry.Reason
	MaxRequestLen = 64 << 10 // bytes of Entry.Request
	MaxEntrySize  = 1 + 8 + 1 + 1 + 1 + MaxActorLen + 2 + MaxSubjects*(1+MaxSubjectLen) + 1 + GrantLen + 1 + MaxPurposeLen + 1 + MaxReasonLen + HashSize + 4 + MaxRequestLen
	entryVersion  = 1
)

// Action says what happened. The zero value is invalid, so an entry whose
// action was forgotten cannot be appended.
type Action uint8

// The actions. Their numeric values are part of the format: never renumber.
const (
	ActionInit    Action = 1  // the vault and its key were created
	ActionAdd     Action = 2  // a record was added
	ActionRemove  Action = 3  // a record was removed (crypto-shredded)
	ActionRead    Action = 4  // the owner read a record's content or metadata
	ActionExport  Action = 5  // records were exported out of the vault
	ActionImport  Action = 6  // records were imported (e.g. a FHIR bundle)
	ActionLabel   Action = 7  // a record's sensitivity labels were changed
	ActionGrant   Action = 8  // a grant was issued
	ActionRevoke  Action = 9  // a grant was revoked
	ActionServe   Action = 10 // records were served to a provider under a grant
	ActionReceive Action = 11 // a provider stored records shared with them
	ActionDeny    Action = 12 // a request was refused before its action was known
	ActionUnlock  Action = 13 // the identity was unlocked (passphrase accepted)
	ActionContact Action = 14 // a contact was pinned, re-pinned or removed
	ActionKeep    Action = 15 // a provider kept what a patient's node sent (a grant, a receipt, ...)
)

var actionNames = [...]string{
	ActionInit:    "init",
	ActionAdd:     "add",
	ActionRemove:  "remove",
	ActionRead:    "read",
	ActionExport:  "export",
	ActionImport:  "import",
	ActionLabel:   "label",
	ActionGrant:   "grant",
	ActionRevoke:  "revoke",
	ActionServe:   "serve",
	ActionReceive: "receive",
	ActionDeny:    "deny",
	ActionUnlock:  "unlock",
	ActionContact: "contact",
	ActionKeep:    "keep",
}

// Valid reports whether a is one of the defined actions.
func (a Action) Valid() bool { return a >= ActionInit && int(a) < len(actionNames) }

// String returns the lowercase name of a ("read"), or "action(N)".
func (a Action) String() string {
	if a.Valid() {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Actions returns every defined action in numeric order.
func Actions() []Action {
	as := make([]Action, 0, len(actionNames)-1)
	for a := ActionInit; a.Valid(); a++ {
		as = append(as, a)
	}
	return as
}

// ParseAction parses the name of an action, case-insensitively.
func ParseAction(s string) (Action, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for a := ActionInit; a.Valid(); a++ {
		if actionNames[a] == t {
			return a, nil
		}
	}
	return 0, fmt.Errorf("ledger: unknown action %q: %w", s, ErrMalformed)
}

// Outcome says how an action ended. The zero value is invalid.
type Outcome uint8

// The outcomes. Their numeric values are part of the format.
const (
	OutcomeOK     Outcome = 1 // done
	OutcomeDenied Outcome = 2 // refused by policy (Entry.Reason says why)
	OutcomeFailed Outcome = 3 // attempted, failed (Entry.Reason says why)
)

var outcomeNames = [...]string{OutcomeOK: "ok", OutcomeDenied: "denied", OutcomeFailed: "failed"}

// Valid reports whether o is one of the defined outcomes.
func (o Outcome) Valid() bool { return o >= OutcomeOK && int(o) < len(outcomeNames) }

// String returns the lowercase name of o ("denied"), or "outcome(N)".
func (o Outcome) String() string {
	if o.Valid() {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// ParseOutcome parses the name of an outcome, case-insensitively.
func ParseOutcome(s string) (Outcome, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for o := OutcomeOK; o.Valid(); o++ {
		if outcomeNames[o] == t {
			return o, nil
		}
	}
	return 0, fmt.Errorf("ledger: unknown outcome %q: %w", s, ErrMalformed)
}

// Entry is one event of the access log. Its binary encoding (see
// FORMAT.md) is canonical: every valid Entry has exactly one encoding, and
// UnmarshalBinary accepts nothing else.
//
// Empty byte slices and strings are encoded as absent; decoding yields nil.
type Entry struct {
	Time     time.Time // when; encoded as int64 Unix nanoseconds (1678..2262), decoded in UTC
	Actor    []byte    // opaque ID of whoever acted (a libp2p peer ID's bytes), ≤ MaxActorLen
	Action   Action    // what was done; must be valid
	Subjects [][]byte  // opaque IDs acted on (16-byte record IDs, 32-byte grant IDs), ≤ MaxSubjects, each 1..MaxSubjectLen bytes
	Grant    []byte    // the grant the action was done under: GrantLen bytes or empty
	Purpose  string    // purpose of use ("TREAT"), ≤ MaxPurposeLen printable ASCII without spaces
	Outcome  Outcome   // how it ended; must be valid
	Reason   string    // machine-readable reason code ("expired"), ≤ MaxReasonLen, same alphabet as Purpose
	Commit   Hash      // commitment to the stored state this entry produced, or zero
	Request  []byte    // an external actor's signed request, verbatim, ≤ MaxRequestLen bytes
}

// MarshalBinary returns the canonical encoding of e. It fails with
// ErrMalformed if a field is out of range.
func (e *Entry) MarshalBinary() ([]byte, error) {
	n, err := e.encodedLen()
	if err != nil {
		return nil, err
	}
	return e.appendBinary(make([]byte, 0, n)), nil
}

// AppendBinary appends the canonical encoding of e to b.
func (e *Entry) AppendBinary(b []byte) ([]byte, error) {
	if _, err := e.encodedLen(); err != nil {
		return b, err
	}
	return e.appendBinary(b), nil
}

func entryErr(field, problem string) error {
	return fmt.Errorf("ledger: entry %s %s: %w", field, problem, ErrMalformed)
}

// encodedLen validates e and returns the length of its encoding.
func (e *Entry) encodedLen() (int, error) {
	if e.Time.IsZero() {
		return 0, entryErr("time", "is zero")
	}
	if ns := e.Time.UnixNano(); !time.Unix(0, ns).Equal(e.Time) {
		return 0, entryErr("time", "is outside the years 1678..2262")
	}
	if len(e.Actor) > MaxActorLen {
		return 0, entryErr("actor", "is too long")
	}
	if !e.Action.Valid() {
		return 0, entryErr("action", "is not defined")
	}
	if !e.Outcome.Valid() {
		return 0, entryErr("outcome", "is not defined")
	}
	if len(e.Subjects) > MaxSubjects {
		return 0, entryErr("subjects", "are too many")
	}
	n := 1 + 8 + 1 + 1 + 1 + len(e.Actor) + 2
	for _, s := range e.Subjects {
		if len(s) == 0 || len(s) > MaxSubjectLen {
			return 0, entryErr("subject", "has a bad length")
		}
		n += 1 + len(s)
	}
	if len(e.Grant) != 0 && len(e.Grant) != GrantLen {
		return 0, entryErr("grant", "has a bad length")
	}
	if !validCode(e.Purpose, MaxPurposeLen) {
		return 0, entryErr("purpose", "is too long or not printable ASCII")
	}
	if !validCode(e.Reason, MaxReasonLen) {
		return 0, entryErr("reason", "is too long or not printable ASCII")
	}
	if len(e.Request) > MaxRequestLen {
		return 0, entryErr("request", "is too long")
	}
	n += 1 + len(e.Grant) + 1 + len(e.Purpose) + 1 + len(e.Reason) + HashSize + 4 + len(e.Request)
	return n, nil
}

func (e *Entry) appendBinary(b []byte) []byte {
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = append(b, byte(e.Action), byte(e.Outcome))
	b = append(b, byte(len(e.Actor)))
	b = append(b, e.Actor...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Subjects)))
	for _, s := range e.Subjects {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	b = append(b, byte(len(e.Grant)))
	b = append(b, e.Grant...)
	b = append(b, byte(len(e.Purpose)))
	b = append(b, e.Purpose...)
	b = append(b, byte(len(e.Reason)))
	b = append(b, e.Reason...)
	b = append(b, e.Commit[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Request)))
	b = append(b, e.Request...)
	return b
}

// validCode reports whether s is at most max bytes of printable ASCII
// without spaces (0x21..0x7e).
func validCode[T string | []byte](s T, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// UnmarshalBinary decodes the canonical encoding of an entry. It rejects
// (with ErrMalformed) unknown versions, out-of-range fields, truncated input
// and trailing bytes. The decoded entry shares no memory with data.
func (e *Entry) UnmarshalBinary(data []byte) error {
	var d entryDecoder
	d.b = data
	d.alloc = true
	if err := d.decode(); err != nil {
		return err
	}
	if len(d.b) != 0 {
		return entryErr("encoding", "has trailing bytes")
	}
	*e = d.e
	return nil
}

// checkEntry validates the canonical encoding of an entry without
// allocating. It is used by Verify on the hot path.
func checkEntry(data []byte) error {
	var d entryDecoder
	d.b = data
	if err := d.decode(); err != nil {
		return err
	}
	if len(d.b) != 0 {
		return entryErr("encoding", "has trailing bytes")
	}
	return nil
}

type entryDecoder struct {
	b     []byte
	alloc bool // build d.e; otherwise only validate
	e     Entry
}

var errTruncated = entryErr("encoding", "is truncated")

func (d *entryDecoder) u8() (byte, error) {
	if len(d.b) < 1 {
		return 0, errTruncated
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v, nil
}

func (d *entryDecoder) bytes(n int) ([]byte, error) {
	if len(d.b) < n {
		return nil, errTruncated
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v, nil
}

// field reads a length-prefixed field; it returns a copy (or nil when
// empty) if d.alloc is set.
func (d *entryDecoder) field(lenBytes, max int, name string) ([]byte, error) {
	var n int
	switch lenBytes {
	case 1:
		v, err := d.u8()
		if err != nil {
			return nil, err
		}
		n = int(v)
	case 4:
		v, err := d.bytes(4)
		if err != nil {
			return nil, err
		}
		u := binary.BigEndian.Uint32(v)
		if u > uint32(max) {
			return nil, entryErr(name, "is too long")
		}
		n = int(u)
	}
	if n > max {
		return nil, entryErr(name, "is too long")
	}
	v, err := d.bytes(n)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if !d.alloc {
		return v, nil
	}
	return append([]byte(nil), v...), nil
}

func (d *entryDecoder) decode() error {
	ver, err := d.u8()
	if err != nil {
		return err
	}
	if ver != entryVersion {
		return entryErr("version", "is not supported")
	}
	t, err := d.bytes(8)
	if err != nil {
		return err
	}
	ns := int64(binary.BigEndian.Uint64(t))
	ao, err := d.bytes(2)
	if err != nil {
		return err
	}
	action, outcome := Action(ao[0]), Outcome(ao[1])
	if !action.Valid() {
		return entryErr("action", "is not defined")
	}
	if !outcome.Valid() {
		return entryErr("outcome", "is not defined")
	}
	actor, err := d.field(1, MaxActorLen, "actor")
	if err != nil {
		return err
	}
	cnt, err := d.bytes(2)
	if err != nil {
		return err
	}
	nsub := int(binary.BigEndian.Uint16(cnt))
	if nsub > MaxSubjects {
		return entryErr("subjects", "are too many")
	}
	if nsub > len(d.b)/2 { // each subject takes at least 2 bytes: bound allocation
		return errTruncated
	}
	var subjects [][]byte
	if d.alloc && nsub > 0 {
		subjects = make([][]byte, nsub)
	}
	for i := 0; i < nsub; i++ {
		s, err := d.field(1, MaxSubjectLen, "subject")
		if err != nil {
			return err
		}
		if len(s) == 0 {
			return entryErr("subject", "is empty")
		}
		if d.alloc {
			subjects[i] = s
		}
	}
	grant, err := d.field(1, GrantLen, "grant")
	if err != nil {
		return err
	}
	if len(grant) != 0 && len(grant) != GrantLen {
		return entryErr("grant", "has a bad length")
	}
	purpose, err := d.field(1, MaxPurposeLen, "purpose")
	if err != nil {
		return err
	}
	if !validCode(purpose, MaxPurposeLen) {
		return entryErr("purpose", "is not printable ASCII")
	}
	reason, err := d.field(1, MaxReasonLen, "reason")
	if err != nil {
		return err
	}
	if !validCode(reason, MaxReasonLen) {
		return entryErr("reason", "is not printable ASCII")
	}
	commit, err := d.bytes(HashSize)
	if err != nil {
		return err
	}
	request, err := d.field(4, MaxRequestLen, "request")
	if err != nil {
		return err
	}
	if !d.alloc {
		return nil
	}
	d.e = Entry{
		Time:     time.Unix(0, ns).UTC(),
		Actor:    actor,
		Action:   action,
		Subjects: subjects,
		Grant:    grant,
		Purpose:  string(purpose),
		Outcome:  outcome,
		Reason:   string(reason),
		Request:  request,
	}
	copy(d.e.Commit[:], commit)
	return nil
}
