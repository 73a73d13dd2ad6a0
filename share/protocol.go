package share

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"filippo.io/age"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// Framer is a stream of typed, length-prefixed frames with a size limit on
// every read: a p2p.Stream over libp2p, or any io.ReadWriter wrapped by
// p2p/frame in tests.
type Framer interface {
	ReadFrame(limit int) (typ byte, payload []byte, err error)
	WriteFrame(typ byte, payload []byte) error
}

// Frame types of the share protocol (/medvault/share/1.4.0). See
// p2p/PROTOCOL.md, "Messages".
const (
	frameRequest  = 'Q' // provider: a signed Request
	frameHave     = 'H' // provider: patient record IDs it already holds (16 bytes each, ascending; see haveIDs)
	framePartial  = 'P' // provider: records it holds the start of (ID, payload offset)
	frameSeen     = 'S' // provider: the latest checkpoint of the patient's ledger it holds, or empty
	frameReceipt  = 'T' // patient: the receipt of the logged decision
	frameExtends  = 'U' // patient: proof that the receipt's checkpoint extends the seen one
	frameDenied   = 'D' // patient: the request was refused; payload is the reason code
	frameMeta     = 'M' // patient: metadata of the next record (JSON)
	frameChunk    = 'C' // patient: a piece of the record's age ciphertext
	frameEnd      = 'E' // patient: end of the record; empty
	frameWithheld = 'W' // patient: an admitted record it cannot send intact (ID, reason)
	frameDone     = 'Z' // patient: end of the response; uint32 count of records sent
	maxRequest    = 64 << 10
	haveIDs       = 1 << 16 // record IDs in a full have frame; a shorter one is the last
	maxHave       = 16 * haveIDs
	maxHeld       = 1 << 20 // record IDs all have frames may list (16 frames)
	// maxUnlisted bounds the records and withheld frames a provider
	// accepts under a receipt whose entry does not list them all (it
	// lists ledger.MaxSubjects and continues in entries the receipt does
	// not cover): each is remembered, so a patient's node must not make
	// the provider remember without limit.
	maxUnlisted   = maxHeld
	partialEntry  = 16 + 8
	maxPartial    = partialEntry * 4096 // what a node reads
	maxPartials   = 16                  // what a provider keeps per patient
	maxMeta       = 64 << 10
	maxReason     = 64 // the reason in a withheld frame
	maxFullURLs   = 8  // fullUrls of a record kept from its metadata (the patient's vault keeps 8)
	maxChunkFrame = 1 << 20
	maxReceipt    = 1 << 20 // a leaf may hold up to ledger.MaxSubjects IDs
	maxExtends    = (ledger.MaxProofHashes + 1) * ledger.HashSize
)

// Reasons of a withheld frame: the record's stored copy failed its
// integrity check; or the record was removed, or relabelled out of the
// grant, after the request was decided.
const (
	withheldDamaged   = "damaged"
	withheldWithdrawn = "withdrawn"
)

// unsentCut is the reason logged for admitted records not sent because
// the answer broke off: the connection failed, or the provider stopped
// reading or broke the protocol. Unlike the others it never reaches the
// provider.
const unsentCut = "cut"

// unsentHeld is the reason of the serve entry, outcome ok, that names the
// admitted records the node did not send because the provider listed them
// as held (its H frame): the decision's entry lists them, but nothing of
// them was read or sent. A provider fetching again under a grant is
// logged, and the log and 'medvault audit' say it received nothing again.
const unsentHeld = vault.ServeHeld

var errWithdrawn = errors.New("no longer covered by the grant")

// ErrProtocol reports a peer that broke the protocol.
var ErrProtocol = errors.New("share protocol violation")

// sharedMeta is the metadata the patient's node sends with each record.
type sharedMeta struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Category string   `json:"category"`
	Labels   []string `json:"labels,omitempty"`
	Date     string   `json:"date,omitempty"`
	Size     int64    `json:"size"`
	Status   string   `json:"status,omitempty"`
	FileName string   `json:"file,omitempty"`
	// Offset, when not zero, says the C frames carry the age payload from
	// this byte on, resuming a transfer the provider asked to resume.
	Offset int64           `json:"offset,omitempty"`
	FHIR   *sharedFHIRMeta `json:"fhir,omitempty"`
}

// sharedFHIRMeta is what the provider learns of a FHIR record's identity and
// version (vault.FHIRInfo).
type sharedFHIRMeta struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	FullURL string `json:"full_url,omitempty"`
	// FullURLs are the other fullUrls the patient's vault holds the
	// resource under (the same bytes from another server are stored once):
	// the provider then keeps it the current resource of each server, as
	// the patient's vault does. At most maxFullURLs are kept.
	FullURLs []string `json:"full_urls,omitempty"`
	Version  int      `json:"version"`
	// Updated and VersionID: the resource's meta.lastUpdated and
	// meta.versionId, so the provider orders versions as the patient does
	// (vault.FHIRInfo.Newer).
	Updated   string `json:"updated,omitempty"`
	VersionID string `json:"version_id,omitempty"`
}

// ServeConn answers one request on c from remote, the peer the connection
// authenticated. Every request, allowed or not, becomes one ledger entry
// (with the provider's signed request when it authenticated), written
// before any record is read. A request authenticated as the audience of a
// grant this vault's owner issued gets the receipt of that entry, then
// either the reason of a refusal or the admitted records, encrypted to its
// age recipient, skipping those it says it already holds. Any other request
// (undecodable, badly signed, under a grant the owner did not issue, or
// from a peer that is not the grant's audience) gets only the reason of its
// refusal: a receipt would show a stranger the ledger's size, and so the
// patient's activity, over time.
//
// now is the node's clock. It is read once the request has arrived, not
// when the stream opened: the request may take RequestTimeout to come in,
// and a grant that expired meanwhile must be refused as expired.
func ServeConn(v *vault.Vault, c Framer, remote identity.ID, now func() time.Time) (*Served, error) {
	sv := &Served{}
	err := serveConn(v, c, remote, now, sv)
	return sv, err
}

// Served says what ServeConn did.
type Served struct {
	Grant GrantID
	// Reason is ReasonAllowed, or why the request was refused, in full
	// for the patient's node to report: the ledger entry and the provider
	// get it as visibleReason, which does not tell out-of-scope,
	// not-found and label-excluded apart.
	Reason Reason
	Sent   int   // records sent
	Bytes  int64 // ciphertext bytes sent
	// Withheld lists admitted records not sent because their stored copy
	// failed its integrity check (vault.ErrTampered): 'medvault verify'
	// says more.
	Withheld []record.ID
	// Withdrawn lists admitted records not sent because they were
	// removed, or relabelled out of the grant, after the decision.
	Withdrawn []record.ID
	// Ended, if set, says why the transfer stopped before every admitted
	// record was sent: the grant was revoked, or expired, meanwhile.
	Ended Reason
	// Witnessed is what the checkpoint of this vault's ledger the
	// provider holds says about it: Ahead or Diverged mean this vault's
	// ledger is not the one the provider saw (nil: none was read).
	Witnessed *vault.Witnessed
}

func serveConn(v *vault.Vault, c Framer, remote identity.ID, now func() time.Time, sv *Served) (err error) {
	restore := requestPhase(c)
	defer restore()
	typ, p, err := c.ReadFrame(maxRequest)
	// A request frame the peer got wrong (over the limit, of another
	// type, type 0x00, or ended by the peer inside it) is refused as
	// malformed and logged, as a request that does not decode is. A
	// connection that fails (reset, timeout), or ends before a frame,
	// brought no request to refuse: a provider's network trouble must not
	// read as a refusal in the patient's audit. Over libp2p a broken
	// connection resets the stream; a truncated frame is a stream the
	// peer itself ended, cleanly, inside a frame.
	var badFrame error
	answerBad := false // the peer can still read the refusal
	switch {
	case err == nil && typ != frameRequest:
		badFrame, answerBad = fmt.Errorf("%w: expected a request frame", ErrProtocol), true
	case errors.Is(err, frame.ErrTooLarge):
		badFrame, answerBad = fmt.Errorf("read request: %w", err), true
	case errors.Is(err, frame.ErrBadType), errors.Is(err, frame.ErrTruncated):
		// The stream is reset (p2p.Stream does so on these).
		badFrame = fmt.Errorf("read request: %w", err)
	case err != nil:
		return fmt.Errorf("read request: %w", err)
	}
	var req *Request
	reqErr := badFrame
	if badFrame == nil {
		req, reqErr = DecodeRequest(p)
	}
	rawReq := bytes.Clone(p)
	var reason Reason
	var authenticated bool // as the audience of a grant the owner issued
	var g *Grant
	var rcpt age.Recipient
	adm, err := v.Admit(func(st *vault.AdmitState) (vault.Decision, error) {
		// The request's bytes are kept only once its signature checks out
		// as the grant audience's: otherwise any peer could fill the
		// ledger with 64 KiB of garbage per attempt.
		ev := vault.Event{Action: ledger.ActionServe, Actor: remote}
		deny := func(r Reason) (vault.Decision, error) {
			reason = r
			ev.Outcome, ev.Reason = ledger.OutcomeDenied, string(visibleReason(r))
			return vault.Decision{Event: ev}, nil
		}
		if reqErr != nil {
			if errors.Is(reqErr, ErrBadSignature) {
				return deny(ReasonBadRequestSignature)
			}
			return deny(ReasonMalformed)
		}
		gid := req.Grant()
		sv.Grant = gid
		ev.Grant = gid[:]
		gb, err := st.Object(vault.KindGrant, gid.String())
		if errors.Is(err, vault.ErrNotFound) {
			// Said as it is: no receipt goes with it (the request is
			// not authenticated), and the grant is the requester's.
			return deny(ReasonUnknownGrant)
		} else if err != nil {
			return vault.Decision{}, err
		}
		if g, err = DecodeGrant(gb); err != nil {
			return vault.Decision{}, err
		}
		ev.Purpose = string(g.Purpose())
		d := Decide(g, req, remote, now(), admitState(v, st))
		authenticated = d.Authenticated
		out := vault.Decision{Grant: gid}
		if d.Authenticated {
			n := [16]byte(req.Nonce())
			out.Nonce = &n
		}
		if !d.Allowed {
			if d.Authenticated && len(rawReq) <= ledger.MaxRequestLen {
				ev.Request = rawReq
			}
			reason = d.Reason
			// The entry goes to the provider in the receipt: it says
			// what D says, not which records are outside the grant.
			ev.Outcome, ev.Reason = ledger.OutcomeDenied, string(visibleReason(d.Reason))
			out.Event = ev
			return out, nil
		}
		if d.Authenticated && len(rawReq) <= ledger.MaxRequestLen {
			ev.Request = rawReq
		}
		if rcpt, err = recipientIn(st, remote); err != nil {
			reason = ReasonUnavailable
			if errors.Is(err, errNoCard) {
				reason = ReasonNoContact
			}
			ev.Outcome, ev.Reason = ledger.OutcomeDenied, string(reason)
			out.Event = ev
			return out, nil
		}
		reason = ReasonAllowed
		ev.Outcome = ledger.OutcomeOK
		// One entry holds at most ledger.MaxSubjects record IDs; the rest
		// go in continuation entries (same actor, grant and purpose, no
		// request bytes) right after it, in the same transaction.
		items := d.Items
		for first := true; first || len(items) > 0; first = false {
			n := min(len(items), ledger.MaxSubjects)
			e := ev
			if !first {
				e.Request = nil
			}
			e.Subjects = nil
			for _, id := range items[:n] {
				e.Subjects = append(e.Subjects, bytes.Clone(id[:]))
			}
			items = items[n:]
			if first {
				out.Event = e
			} else {
				out.More = append(out.More, e)
			}
		}
		out.Allowed = d.Items
		return out, nil
	})
	if err != nil {
		return err
	}
	sv.Reason = reason
	if badFrame != nil {
		// Nothing more can be read in step: refuse at once, without
		// reading frames 2 to 2c.
		if answerBad {
			return errors.Join(badFrame, c.WriteFrame(frameDenied, []byte(ReasonMalformed)))
		}
		return badFrame
	}
	// What the provider holds is read only now, and kept only for a
	// request the decision allowed: a peer that is not the grant's
	// audience makes the node hold nothing beyond its frame buffer,
	// which the resource manager counts.
	allowed := reason == ReasonAllowed
	// Only admitted records the provider holds are kept: what the have
	// frames list beyond them costs a frame buffer, not memory that
	// grows with the list.
	var admitted []record.ID
	if allowed {
		admitted = slices.SortedFunc(slices.Values(adm.Allowed), compareIDs)
	}
	have := map[record.ID]bool{}
	// The decision's entry lists every admitted record as served. An
	// answer that ends early on an error (the connection fails, the
	// provider stops reading or breaks the protocol, the vault cannot be
	// read) appends entries for the admitted records from adm.Allowed[next:]
	// that the provider does not hold, as a revocation does, so that the
	// log and 'medvault audit' say what the provider received. A record
	// being sent when it happens was not sent.
	next, unsentWhy := 0, unsentCut
	if allowed {
		defer func() {
			if err == nil {
				return
			}
			var unsent []record.ID
			for _, id := range adm.Allowed[next:] {
				if !have[id] {
					unsent = append(unsent, id)
				}
			}
			// Best effort: the error that ended the answer is the one to report.
			if lerr := logUnsent(v, remote, g, unsent, unsentWhy); lerr != nil {
				err = errors.Join(err, lerr)
			}
		}()
	}
	if err := readHave(c, func(id record.ID) {
		if _, ok := slices.BinarySearchFunc(admitted, id, compareIDs); ok {
			have[id] = true
		}
	}); err != nil {
		return err
	}
	typ, p, err = c.ReadFrame(maxPartial)
	if err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	if typ != framePartial || len(p)%partialEntry != 0 {
		return fmt.Errorf("%w: expected a partial frame", ErrProtocol)
	}
	resume := map[record.ID]int64{}
	for i := 0; allowed && i < len(p); i += partialEntry {
		if off := int64(binary.BigEndian.Uint64(p[i+16:])); off > 0 {
			resume[record.ID(p[i:i+16])] = off
		}
	}
	typ, seen, err := c.ReadFrame(ledger.MaxCheckpointSize)
	if err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	if typ != frameSeen {
		return fmt.Errorf("%w: expected a seen-checkpoint frame", ErrProtocol)
	}
	if !authenticated {
		// Refused, and logged, but no receipt: only the audience of a
		// grant learns anything of the ledger.
		return c.WriteFrame(frameDenied, []byte(visibleReason(reason)))
	}
	seen = bytes.Clone(seen) // the frame buffer is reused
	restore()                // the request is in: the answer gets the stream's life
	if err := c.WriteFrame(frameReceipt, encodeReceipt(&adm.Receipt)); err != nil {
		return err
	}
	w, err := v.LedgerExtension(seen, adm.Receipt.Checkpoint)
	if err != nil {
		return err
	}
	sv.Witnessed = w
	if err := c.WriteFrame(frameExtends, encodeExtension(w.Proof)); err != nil {
		return err
	}
	if reason != ReasonAllowed {
		return c.WriteFrame(frameDenied, []byte(visibleReason(reason)))
	}
	if err := logHeld(v, remote, g, adm.Allowed, have); err != nil {
		unsentWhy = string(ReasonUnavailable)
		return errors.Join(err, c.WriteFrame(frameDenied, []byte(ReasonUnavailable)))
	}
	sent := uint32(0)
	for i, id := range adm.Allowed {
		if have[id] {
			continue
		}
		// A revocation, or the expiry, stops the transfer before the
		// next record: the patient who revokes during a long fetch is
		// not made to wait for its end. (A record being sent when it
		// happens is finished.)
		if r, err := grantEnded(v, g, now()); r != ReasonAllowed || err != nil {
			var unsent []record.ID
			for _, id := range adm.Allowed[i:] {
				if !have[id] {
					unsent = append(unsent, id)
				}
			}
			if err != nil {
				r = ReasonUnavailable
			}
			if lerr := logUnsent(v, remote, g, unsent, string(r)); lerr != nil {
				err = errors.Join(err, lerr)
			}
			next = len(adm.Allowed) // logged
			sv.Ended = r
			return errors.Join(err, c.WriteFrame(frameDenied, []byte(r)))
		}
		out, err := v.Share(adm, id, rcpt, resume[id])
		if err == nil {
			// Relabelled, or superseded by a newer version, since the
			// decision (the node runs label, rm and import while it
			// serves): the rule is applied again to the metadata that
			// would go out.
			ri, serr := recordInfo(out.Meta, v.MedicationUses)
			if serr == nil {
				ri.Superseded, serr = v.Superseded(out.Meta)
			}
			if serr != nil || g.sc.covers(ri) != ReasonAllowed {
				err = errWithdrawn
			}
		}
		withheld := ""
		switch {
		case errors.Is(err, errWithdrawn) || errors.Is(err, vault.ErrNotFound):
			// Nothing of it was sent. The provider is told it was
			// withdrawn, not why: the reason is the patient's.
			withheld = withheldWithdrawn
			sv.Withdrawn = append(sv.Withdrawn, id)
		case errors.Is(err, vault.ErrTampered) || errors.Is(err, vault.ErrDecrypt):
			// This record's stored copy is damaged (its header is not
			// its own): nothing of it was sent. Say so and go on with
			// the others.
			withheld = withheldDamaged
			sv.Withheld = append(sv.Withheld, id)
		}
		if withheld != "" {
			// The decision's entry lists this record as served: a
			// second entry says it was not, so the log tells what
			// the provider actually received.
			if err := logWithheld(v, remote, g, id, withheld); err != nil {
				unsentWhy = string(ReasonUnavailable)
				return errors.Join(err, c.WriteFrame(frameDenied, []byte(ReasonUnavailable)))
			}
			next = i + 1
			if err := c.WriteFrame(frameWithheld, append(bytes.Clone(id[:]), withheld...)); err != nil {
				return err
			}
			continue
		}
		switch {
		case err != nil:
			// The vault cannot be read: end with a reason rather than
			// cut the stream. What was sent before is the provider's.
			unsentWhy = string(ReasonUnavailable)
			return errors.Join(fmt.Errorf("send record %s: %w", id, err), c.WriteFrame(frameDenied, []byte(ReasonUnavailable)))
		}
		n, err := sendRecord(c, out)
		if err != nil {
			return fmt.Errorf("send record %s: %w", id, err)
		}
		sent++
		next = i + 1
		sv.Sent, sv.Bytes = int(sent), sv.Bytes+n
	}
	return c.WriteFrame(frameDone, binary.BigEndian.AppendUint32(nil, sent))
}

// visibleReason is r as the provider is told it, in D and in the ledger
// entry its receipt carries: out-of-scope, not-found and label-excluded
// all read out-of-scope, since telling them apart would reveal records
// outside the grant (that one was deleted, or labelled sensitive).
func visibleReason(r Reason) Reason {
	switch r {
	case ReasonNotFound, ReasonLabelExcluded:
		return ReasonOutOfScope
	}
	return r
}

// readHave reads the have frames, calling fn for each record ID listed. The
// IDs come in strictly ascending order, haveIDs to a frame; a frame with
// fewer is the last, and all of them list at most maxHeld.
func readHave(c Framer, fn func(record.ID)) error {
	var prev []byte
	for total := 0; ; {
		typ, p, err := c.ReadFrame(maxHave)
		if err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		if typ != frameHave || len(p)%16 != 0 {
			return fmt.Errorf("%w: expected a have frame", ErrProtocol)
		}
		if total += len(p) / 16; total > maxHeld {
			return fmt.Errorf("%w: have frames list more than %d records", ErrProtocol, maxHeld)
		}
		for i := 0; i < len(p); i += 16 {
			id := p[i : i+16]
			if prev != nil && bytes.Compare(prev, id) >= 0 {
				return fmt.Errorf("%w: have frames are not in ascending order", ErrProtocol)
			}
			prev = append(prev[:0], id...)
			fn(record.ID(id))
		}
		if len(p) < maxHave {
			return nil
		}
	}
}

// writeHave sends the have frames for ids, sorted ascending: at most
// maxHeld of them, the lowest.
func writeHave(c Framer, ids []record.ID) error {
	ids = ids[:min(len(ids), maxHeld)]
	buf := make([]byte, 0, 16*min(len(ids), haveIDs))
	for {
		buf = buf[:0]
		n := min(len(ids), haveIDs)
		for _, id := range ids[:n] {
			buf = append(buf, id[:]...)
		}
		ids = ids[n:]
		if err := c.WriteFrame(frameHave, buf); err != nil {
			return err
		}
		if n < haveIDs {
			return nil
		}
	}
}

func compareIDs(a, b record.ID) int { return bytes.Compare(a[:], b[:]) }

// grantEnded says whether g still holds at now for the records not yet
// sent: ReasonAllowed, or ReasonRevoked or ReasonExpired.
func grantEnded(v *vault.Vault, g *Grant, now time.Time) (Reason, error) {
	id := g.ID()
	_, err := v.GetObject(vault.KindRevoked, id.String())
	switch {
	case err == nil:
		return ReasonRevoked, nil
	case !errors.Is(err, vault.ErrNotFound):
		return "", err
	case !now.Before(g.expiry): // this node's clock issued it: no skew
		return ReasonExpired, nil
	}
	return ReasonAllowed, nil
}

// logHeld appends the entries (outcome ok, reason held) that name the
// admitted records the provider holds, which are not sent again, in the
// decision's order.
func logHeld(v *vault.Vault, remote identity.ID, g *Grant, admitted []record.ID, have map[record.ID]bool) error {
	var held []record.ID
	for _, id := range admitted {
		if have[id] {
			held = append(held, id)
		}
	}
	return logNotSent(v, remote, g, held, ledger.OutcomeOK, unsentHeld)
}

// logUnsent appends the entries that say the admitted records ids were not
// sent, after all, and why: at most ledger.MaxSubjects to an entry.
func logUnsent(v *vault.Vault, remote identity.ID, g *Grant, ids []record.ID, reason string) error {
	return logNotSent(v, remote, g, ids, ledger.OutcomeFailed, reason)
}

func logNotSent(v *vault.Vault, remote identity.ID, g *Grant, ids []record.ID, outcome ledger.Outcome, reason string) error {
	gid := g.ID()
	for len(ids) > 0 {
		n := min(len(ids), ledger.MaxSubjects)
		e := vault.Event{Action: ledger.ActionServe, Actor: remote, Grant: gid[:], Purpose: string(g.Purpose()),
			Outcome: outcome, Reason: reason}
		for _, id := range ids[:n] {
			e.Subjects = append(e.Subjects, bytes.Clone(id[:]))
		}
		if err := v.Log(e); err != nil {
			return fmt.Errorf("log that %d records were not sent: %w", len(ids), err)
		}
		ids = ids[n:]
	}
	return nil
}

// logWithheld appends the ledger entry for an admitted record the node did
// not send: action serve, outcome failed, the record as subject and the
// withheld reason ("withdrawn" or "damaged") as the entry's reason.
func logWithheld(v *vault.Vault, remote identity.ID, g *Grant, id record.ID, reason string) error {
	return logUnsent(v, remote, g, []record.ID{id}, reason)
}

// recordInfo is what the per-item rule reads of a record. uses is the
// vault's MedicationUses, or its AdmitState's inside an admission.
func recordInfo(m *vault.Meta, uses func(*vault.Meta) ([][]record.Label, error)) (*RecordInfo, error) {
	u, err := uses(m)
	if err != nil {
		return nil, err
	}
	return &RecordInfo{ID: m.ID, Category: m.Category, Labels: m.Labels, Active: m.Active() || len(u) > 0, UsedBy: u, Voided: m.Voided()}, nil
}

// recordInfos is what the per-item rule reads of every record in ms. A FHIR
// resource stored in several versions is Superseded in all but its latest:
// the emergency summary must not list a problem, or a medication, that a
// newer version resolved or stopped.
func recordInfos(ms []*vault.Meta, uses func(*vault.Meta) ([][]record.Label, error)) ([]RecordInfo, error) {
	older := vault.Superseded(ms)
	out := make([]RecordInfo, len(ms))
	for i, m := range ms {
		ri, err := recordInfo(m, uses)
		if err != nil {
			return nil, err
		}
		out[i] = *ri
		out[i].Superseded = older[m.ID]
	}
	return out, nil
}

// admitState adapts the vault's admission view to the decision's State.
func admitState(v *vault.Vault, st *vault.AdmitState) State {
	return State{
		Owner: v.Owner().ID(),
		Vault: VaultID(v.VaultID()),
		Revoked: func(id GrantID) (bool, error) {
			return st.Revoked(id)
		},
		NonceSeen: func(id GrantID, n Nonce) (bool, error) {
			return st.NonceSeen(id, n), nil
		},
		Lookup: func(id record.ID) (RecordInfo, bool, error) {
			// A record asked for by ID is held to the same rule as one
			// the grant selects: an older version of a resource is
			// Superseded, so the emergency summary does not send a
			// problem a newer version resolved.
			m, ok, err := st.Record(id)
			if !ok || err != nil {
				return RecordInfo{}, ok, err
			}
			ri, err := recordInfo(m, st.MedicationUses)
			if err != nil {
				return RecordInfo{}, false, err
			}
			ri.Superseded, err = st.Superseded(m)
			return *ri, err == nil, err
		},
		All: func() ([]RecordInfo, error) {
			ms, err := st.Records()
			if err != nil {
				return nil, err
			}
			return recordInfos(ms, st.MedicationUses)
		},
	}
}

// errNoCard: recipientIn found no contact card for the ID.
var errNoCard = errors.New("no contact card")

// recipientIn finds the age recipient of a contact by ID, inside the
// admitting transaction, so a provider whose card is gone (removed, or
// replaced by one with another key) is logged as refused (no-contact)
// rather than served.
func recipientIn(st *vault.AdmitState, id identity.ID) (age.Recipient, error) {
	objs, err := st.Objects(vault.KindContact)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		c, err := DecodeCard(o.Value)
		if err == nil && c.ID() == id {
			return age.ParseX25519Recipient(c.Recipient().String())
		}
	}
	return nil, fmt.Errorf("%w for %s: cannot encrypt to them", errNoCard, id)
}

// chunkFramer turns a byte stream into chunk frames of up to 256 KiB.
type chunkFramer struct {
	c   Framer
	buf []byte
	n   int64
}

func newChunkFramer(c Framer) *chunkFramer {
	return &chunkFramer{c: c, buf: make([]byte, 0, 256<<10)}
}

func (f *chunkFramer) Write(p []byte) (int, error) {
	n := len(p)
	f.n += int64(n)
	for len(p) > 0 {
		// A whole frame's worth goes out as it lies, without a copy into
		// buf: what is buffered goes first, as a shorter frame. (A stored
		// record arrives as 256 KiB chunks after its short header, so
		// every chunk but the first is sent without a copy.)
		if len(p) >= cap(f.buf) {
			if err := f.flush(); err != nil {
				return 0, err
			}
			if err := f.c.WriteFrame(frameChunk, p[:cap(f.buf)]); err != nil {
				return 0, err
			}
			p = p[cap(f.buf):]
			continue
		}
		k := min(len(p), cap(f.buf)-len(f.buf))
		f.buf = append(f.buf, p[:k]...)
		p = p[k:]
		if len(f.buf) == cap(f.buf) {
			if err := f.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (f *chunkFramer) flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	err := f.c.WriteFrame(frameChunk, f.buf)
	f.buf = f.buf[:0]
	return err
}

// sendRecord sends a record Share prepared: M, its C frames, and E.
func sendRecord(c Framer, out *vault.Outgoing) (int64, error) {
	m := out.Meta
	sm := sharedMeta{ID: m.ID.String(), Title: m.Title, Category: string(m.Category), Size: m.Size, Status: m.Status, FileName: m.FileName, Offset: out.Offset}
	for _, l := range m.Labels {
		sm.Labels = append(sm.Labels, string(l))
	}
	if !m.Date.IsZero() {
		sm.Date = m.Date.UTC().Format(time.RFC3339)
	}
	if m.FHIR != nil {
		sm.FHIR = &sharedFHIRMeta{m.FHIR.Type, m.FHIR.ID, m.FHIR.FullURL, m.FHIR.FullURLs, m.FHIR.Version, m.FHIR.Updated, m.FHIR.VersionID}
	}
	mb, err := json.Marshal(sm)
	if err != nil {
		return 0, err
	}
	if err := c.WriteFrame(frameMeta, mb); err != nil {
		return 0, err
	}
	cf := newChunkFramer(c)
	_, err = out.WriteTo(cf)
	if err == nil {
		err = cf.flush()
	}
	if err != nil {
		return cf.n, err
	}
	return cf.n, c.WriteFrame(frameEnd, nil)
}

func encodeReceipt(r *vault.Receipt) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Checkpoint)))
	b = append(b, r.Checkpoint...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Index))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Leaf)))
	b = append(b, r.Leaf...)
	return append(b, r.Proof...)
}

// DecodeReceipt parses a receipt's wire form (see p2p/PROTOCOL.md).
func DecodeReceipt(b []byte) (*vault.Receipt, error) {
	r := &vault.Receipt{}
	take := func(n int) ([]byte, bool) {
		if n < 0 || len(b) < n {
			return nil, false
		}
		out := b[:n]
		b = b[n:]
		return out, true
	}
	l, ok := take(4)
	if !ok {
		return nil, fmt.Errorf("%w: receipt truncated", ErrMalformed)
	}
	cp, ok := take(int(binary.BigEndian.Uint32(l)))
	if !ok {
		return nil, fmt.Errorf("%w: receipt truncated", ErrMalformed)
	}
	ix, ok := take(8)
	if !ok {
		return nil, fmt.Errorf("%w: receipt truncated", ErrMalformed)
	}
	l, ok = take(4)
	if !ok {
		return nil, fmt.Errorf("%w: receipt truncated", ErrMalformed)
	}
	leaf, ok := take(int(binary.BigEndian.Uint32(l)))
	if !ok || int64(binary.BigEndian.Uint64(ix)) < 0 {
		return nil, fmt.Errorf("%w: receipt truncated", ErrMalformed)
	}
	r.Checkpoint, r.Index, r.Leaf, r.Proof = bytes.Clone(cp), int64(binary.BigEndian.Uint64(ix)), bytes.Clone(leaf), bytes.Clone(b)
	return r, nil
}

// ledgerVerifier checks checkpoints of patient's ledger.
func ledgerVerifier(patient identity.ID) (*ledger.Verifier, error) {
	return ledger.NewVerifier("medvault.ledger/"+patient.String(), patient.PublicKey())
}

// VerifyReceipt checks a receipt against the grant and the request it
// answers: the checkpoint is signed by the grant's issuer, the leaf is
// included in it, and the logged entry names this requester, this grant
// and exactly this request. It returns the logged entry.
func VerifyReceipt(r *vault.Receipt, g *Grant, req *Request) (*ledger.Entry, *ledger.Checkpoint, error) {
	vf, err := ledgerVerifier(g.Issuer())
	if err != nil {
		return nil, nil, err
	}
	cp, err := ledger.ParseCheckpoint(r.Checkpoint, vf)
	if err != nil {
		return nil, nil, fmt.Errorf("receipt checkpoint: %w", err)
	}
	var leaf ledger.Leaf
	if err := leaf.UnmarshalBinary(r.Leaf); err != nil {
		return nil, nil, fmt.Errorf("receipt leaf: %w", err)
	}
	var proof ledger.Proof
	if err := proof.UnmarshalBinary(r.Proof); err != nil {
		return nil, nil, fmt.Errorf("receipt proof: %w", err)
	}
	h, err := leaf.Hash()
	if err != nil {
		return nil, nil, err
	}
	if err := ledger.VerifyInclusion(cp, r.Index, h, proof); err != nil {
		return nil, nil, fmt.Errorf("receipt: %w", err)
	}
	e := &leaf.Entry
	gid := g.ID()
	me := req.Requester()
	if !bytes.Equal(e.Actor, me.Bytes()) || !bytes.Equal(e.Grant, gid[:]) || !bytes.Equal(e.Request, req.Bytes()) {
		return nil, nil, fmt.Errorf("%w: the receipt logs another request", ErrMalformed)
	}
	return e, cp, nil
}

// FetchResult says what a fetch did.
type FetchResult struct {
	Records int   // records received and stored
	Resumed int   // of which continued a cut transfer
	Kept    bool  // a record cut short was kept to resume (FetchConn failed)
	Bytes   int64 // ciphertext bytes received
	Entry   *ledger.Entry
	Index   int64 // the request's index in the patient's ledger
	// Withheld lists the patient's record IDs its node admitted but did
	// not send, because its copy failed its integrity check.
	Withheld []record.ID
	// Withdrawn lists those it admitted but did not send because the
	// patient removed them, or changed their labels, since the decision.
	Withdrawn []record.ID
	// Ledger says whether the patient's ledger extends the checkpoint
	// this vault saw last (a problem is kept as evidence and reported
	// once).
	Ledger *LedgerCheck
}

// FetchConn sends a signed request for every record in g's scope (minus
// those already held) on c and stores what arrives in v, the provider's
// vault, as it is: encrypted to the provider. It verifies the receipt before
// storing anything and stores it in the vault. A refusal returns an error
// wrapping the reason's sentinel (ErrRevoked, ErrExpired, ...). Records
// completed before a cut connection are kept, and so is the part of the
// record that was arriving; fetching again asks only for what is missing.
func FetchConn(v *vault.Vault, c Framer, g *Grant, now time.Time, progress func(records int, bytes int64)) (*FetchResult, error) {
	req, err := NewRequest(v.Owner(), RequestParams{Grant: g.ID(), All: true}, now)
	if err != nil {
		return nil, err
	}
	// What is held is listed once, below: a second fetch from this
	// patient waits for this one to end, and then lists what it stored.
	defer v.Receiving(g.Issuer())()
	held, err := v.ReceivedFrom(g.Issuer())
	if err != nil {
		return nil, err
	}
	// The latest checkpoint of the patient's ledger this vault saw, read
	// before the request goes out: the node logs the request on reading
	// it, so its receipt is at least as large as anything stored by then
	// (read later, a concurrent fetch's newer checkpoint could make this
	// one's receipt look like a rollback). The node proves that its
	// ledger extends it (see witness).
	seenCP, err := seenCheckpoint(v, g.Issuer())
	if err != nil {
		return nil, err
	}
	// At most maxHeld IDs are listed, the lowest: past that, records the
	// provider holds come again and are read and dropped (receiveRecord).
	if err := c.WriteFrame(frameRequest, req.Bytes()); err != nil {
		return nil, err
	}
	if err := writeHave(c, slices.SortedFunc(maps.Keys(held), compareIDs)); err != nil {
		return nil, err
	}
	// Records a cut connection left half-received: ask for the rest.
	parts, err := v.Partials(g.Issuer())
	if err != nil {
		return nil, err
	}
	// At most maxPartials per patient, the furthest along: a node that
	// always breaks off on a new record must not make them pile up.
	slices.SortFunc(parts, func(a, b *vault.Partial) int { return cmp.Compare(b.Stored, a.Stored) })
	for len(parts) > maxPartials {
		v.DropPartial(parts[len(parts)-1].ID) // best effort, as at Z
		parts = parts[:len(parts)-1]
	}
	partials := map[record.ID]*vault.Partial{}
	var pb []byte
	for _, p := range parts {
		partials[p.SourceID] = p
		pb = append(pb, p.SourceID[:]...)
		pb = binary.BigEndian.AppendUint64(pb, uint64(p.PayloadOffset()))
	}
	if err := c.WriteFrame(framePartial, pb); err != nil {
		return nil, err
	}
	var seenNote []byte
	if seenCP != nil {
		seenNote = seenCP.Note
	}
	if err := c.WriteFrame(frameSeen, seenNote); err != nil {
		return nil, err
	}
	typ, p, err := c.ReadFrame(maxReceipt)
	if err != nil {
		return nil, fmt.Errorf("read receipt: %w", err)
	}
	if typ == frameDenied {
		return nil, refusedUnreceipted(Reason(sanitizeReason(p)))
	}
	if typ != frameReceipt {
		return nil, fmt.Errorf("%w: expected a receipt", ErrProtocol)
	}
	rc, err := DecodeReceipt(p)
	if err != nil {
		return nil, err
	}
	entry, cp, err := VerifyReceipt(rc, g, req)
	if err != nil {
		return nil, err
	}
	gid := g.ID()
	keep := &vault.Event{Action: ledger.ActionKeep, Actor: g.Issuer(), Subjects: [][]byte{gid[:]}}
	if err := v.PutObject(vault.KindReceipt, fmt.Sprintf("%s/%020d", gid, rc.Index), p, keep); err != nil {
		return nil, err
	}
	typ, p, err = c.ReadFrame(maxExtends)
	if err != nil {
		return nil, fmt.Errorf("read receipt: %w", err)
	}
	if typ != frameExtends {
		return nil, fmt.Errorf("%w: expected an extension proof after the receipt", ErrProtocol)
	}
	proof, err := decodeExtension(p)
	if err != nil {
		return nil, err
	}
	lc, err := witness(v, g.Issuer(), seenCP, cp, proof, now)
	if err != nil {
		return nil, err
	}
	res := &FetchResult{Entry: entry, Index: rc.Index, Ledger: lc}
	// The receipt lists what the patient's node admitted (all of it when
	// fewer than ledger.MaxSubjects; beyond that, continuation entries the
	// receipt does not cover hold the rest, and any record is accepted,
	// up to maxUnlisted records and withheld frames).
	// Only an entry that logs the request as served admits anything: a
	// refusal (or any other action) that lists subjects admits none of
	// them, or the patient's node could hand over records its own signed
	// ledger says it refused.
	admitted := map[record.ID]bool{}
	served := entry.Action == ledger.ActionServe && entry.Outcome == ledger.OutcomeOK
	for _, s := range entry.Subjects {
		if len(s) == 16 && served {
			admitted[record.ID(s)] = true
		}
	}
	complete := !served || len(entry.Subjects) < ledger.MaxSubjects
	seen := map[record.ID]bool{}
	got := uint32(0) // records received whole, stored or already held
	accept := func(id record.ID) error {
		if seen[id] || (complete && !admitted[id]) {
			return fmt.Errorf("%w: record %s is not one the receipt admits, or came twice", ErrProtocol, id)
		}
		if !complete && len(seen) >= maxUnlisted {
			return fmt.Errorf("%w: more than %d records or withheld records under one receipt", ErrProtocol, maxUnlisted)
		}
		seen[id] = true
		return nil
	}
	for {
		typ, p, err := c.ReadFrame(maxMeta)
		if err != nil {
			return res, fmt.Errorf("connection lost after %d record(s): %w", res.Records, err)
		}
		switch typ {
		case frameDenied:
			// The reason goes to the provider's terminal: printable
			// ASCII only, as for a refusal before the receipt.
			r := Reason(sanitizeReason(p))
			return res, fmt.Errorf("the patient's node refused the request: %s: %w", r, r.Err())
		case frameDone:
			if len(p) != 4 || binary.BigEndian.Uint32(p) != got {
				return res, fmt.Errorf("%w: the end frame does not count the %d record(s) sent", ErrProtocol, got)
			}
			// A partial the patient did not continue is no longer
			// admitted (or is gone): drop it.
			// Best effort: a partial another fetch is resuming, or one
			// a failing disk keeps, is dropped by a later fetch.
			for _, p := range parts {
				if !seen[p.SourceID] {
					v.DropPartial(p.ID)
				}
			}
			return res, nil
		case frameMeta:
			if _, err := receiveRecord(v, c, g, p, res, held, partials, progress, accept); err != nil {
				return res, err
			}
			got++
		case frameWithheld:
			if len(p) < 16 || len(p) > 16+maxReason {
				return res, fmt.Errorf("%w: malformed withheld frame", ErrProtocol)
			}
			id := record.ID(p[:16])
			if err := accept(id); err != nil {
				return res, err
			}
			if string(p[16:]) == withheldWithdrawn {
				res.Withdrawn = append(res.Withdrawn, id)
			} else {
				res.Withheld = append(res.Withheld, id)
			}
		default:
			return res, fmt.Errorf("%w: unexpected frame %q", ErrProtocol, typ)
		}
	}
}

// refusedUnreceipted is the error for a refusal that came without a
// receipt: undecided (rate-limited), or a request the patient's node did not
// take as from the audience of a grant its owner issued (a grant it does
// not know, a peer or signer that is not the grant's audience). Either is
// a refusal, not a broken protocol: the error wraps the reason's sentinel,
// or ErrWrongAudience for a reason that has none of its own.
func refusedUnreceipted(r Reason) error {
	if r == ReasonRateLimited {
		return fmt.Errorf("the patient's node refused the request undecided: %w", ErrRateLimited)
	}
	err := r.Err()
	switch {
	case err == nil:
		return fmt.Errorf("%w: a refusal reading %q", ErrProtocol, r)
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrGrantMismatch):
		err = ErrWrongAudience
	}
	return fmt.Errorf("the patient's node refused the request, without a receipt: %s: %w", r, err)
}

// storeError says why the vault did not store record src. Bytes that do not
// decrypt are the patient's node breaking the protocol.
func storeError(src record.ID, err error) error {
	if errors.Is(err, vault.ErrDamaged) {
		return fmt.Errorf("%w: record %s arrived damaged: %w", ErrProtocol, src, err)
	}
	return fmt.Errorf("store record %s: %w", src, err)
}

// maxRecordSize bounds the size a record's metadata may state (1 PiB), so
// that the bound on its ciphertext cannot overflow.
const maxRecordSize = 1 << 50

func receiveRecord(v *vault.Vault, c Framer, g *Grant, mb []byte, res *FetchResult, held map[record.ID]bool, partials map[record.ID]*vault.Partial, progress func(int, int64), accept func(record.ID) error) (*vault.Meta, error) {
	var sm sharedMeta
	if err := json.Unmarshal(mb, &sm); err != nil {
		return nil, fmt.Errorf("%w: record metadata: %v", ErrProtocol, err)
	}
	src, err := record.ParseID(sm.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: record metadata: %v", ErrProtocol, err)
	}
	if err := accept(src); err != nil {
		return nil, err
	}
	// An age file is its plaintext plus a header and 16 bytes per 64 KiB:
	// refuse a stream far larger than the size the patient stated.
	if sm.Size < 0 || sm.Size > maxRecordSize {
		return nil, fmt.Errorf("%w: record metadata: size %d out of range", ErrProtocol, sm.Size)
	}
	maxBytes := sm.Size + sm.Size/(64<<10)*16 + 64<<10
	if held[src] {
		// Already stored whole; sent again because the have frames
		// could not list it. Read it and keep nothing.
		frames := &recordFrames{c: c, src: src, left: maxBytes, res: res}
		if _, err := io.Copy(io.Discard, frames); err != nil {
			if frames.broke != nil {
				return nil, frames.broke
			}
			return nil, fmt.Errorf("connection lost during record %s: %w", src, err)
		}
		return nil, nil
	}
	// A resumed record continues the partial one the provider holds, from
	// the offset it asked for; a record sent whole replaces it.
	part := partials[src]
	if sm.Offset != 0 {
		if part == nil || sm.Offset != part.PayloadOffset() {
			return nil, fmt.Errorf("%w: record %s resumes at an offset that was not asked for", ErrProtocol, src)
		}
		maxBytes -= part.Stored
	} else if part != nil {
		if err := v.DropPartial(part.ID); err != nil {
			return nil, err
		}
		part = nil
	}
	cat, err := record.ParseCategory(sm.Category)
	if err != nil {
		return nil, fmt.Errorf("%w: record metadata: %v", ErrProtocol, err)
	}
	// A record the disk cannot hold is refused before its first byte,
	// whatever size a peer states: the fetch stops here and keeps what
	// came before.
	if err := v.CheckRoom(maxBytes); err != nil {
		return nil, fmt.Errorf("record %s not fetched: %w", src, err)
	}
	n := vault.NewRecord{Title: sm.Title, Category: cat, FileName: sm.FileName}
	for _, l := range sm.Labels {
		lb, err := record.ParseLabel(l)
		if err != nil {
			return nil, fmt.Errorf("%w: record metadata: %v", ErrProtocol, err)
		}
		n.Labels = append(n.Labels, lb)
	}
	if sm.Date != "" {
		if n.Date, err = time.Parse(time.RFC3339, sm.Date); err != nil {
			return nil, fmt.Errorf("%w: record metadata: %v", ErrProtocol, err)
		}
	}
	if sm.FHIR != nil {
		n.FHIR = &vault.FHIRInfo{Type: sm.FHIR.Type, ID: sm.FHIR.ID, FullURL: sm.FHIR.FullURL, FullURLs: sm.FHIR.FullURLs[:min(len(sm.FHIR.FullURLs), maxFullURLs)], Version: sm.FHIR.Version,
			Updated: sm.FHIR.Updated, VersionID: sm.FHIR.VersionID}
	}
	// The vault reads the record's frames itself, in this goroutine. It
	// decrypts what it stores as it arrives (age authenticates every
	// 64 KiB, their order and the end), from the first byte of a resumed
	// record.
	frames := &recordFrames{c: c, src: src, left: maxBytes, res: res, progress: progress}
	rc := vault.Received{From: g.Issuer(), Grant: g.ID(), SourceID: src, Size: sm.Size, Status: sm.Status,
		Resume: part,
		// A connection that breaks keeps what arrived; a peer that broke
		// the protocol does not.
		KeepPartial: func(err error) bool { return !errors.Is(err, ErrProtocol) }}
	m, err := v.AddCiphertext(frames, n, rc)
	switch {
	case frames.lost != nil:
		if errors.Is(err, vault.ErrPartialKept) {
			res.Kept = true
		}
		return nil, fmt.Errorf("connection lost during record %s: %w", src, frames.lost)
	case frames.broke != nil:
		return nil, frames.broke
	case err != nil:
		return nil, storeError(src, err)
	}
	res.Records++
	if part != nil {
		res.Resumed++
	}
	if progress != nil {
		progress(res.Records, res.Bytes)
	}
	return m, nil
}

// recordFrames reads one record's chunk frames as a stream, up to its
// empty end frame (io.EOF). A frame the protocol does not allow there, or
// more bytes than the record may have, is an error wrapping ErrProtocol
// (broke); a connection that fails is lost.
type recordFrames struct {
	c        Framer
	src      record.ID
	left     int64 // ciphertext bytes the record may still have
	res      *FetchResult
	progress func(int, int64)
	cur      []byte
	err      error // what Read returns once cur is empty
	lost     error
	broke    error
}

func (r *recordFrames) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.cur, r.err = r.next()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *recordFrames) next() ([]byte, error) {
	typ, p, err := r.c.ReadFrame(maxChunkFrame)
	if err != nil {
		// Only an empty E ends a record: a stream that ends cleanly
		// before it is as cut as one that breaks, even when the bytes
		// so far happen to form a whole age file.
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.lost = err
		return nil, err
	}
	switch typ {
	case frameChunk:
		r.res.Bytes += int64(len(p))
		if r.left -= int64(len(p)); r.left < 0 {
			r.broke = fmt.Errorf("%w: record %s is larger than stated", ErrProtocol, r.src)
			return nil, r.broke
		}
		if r.progress != nil {
			r.progress(r.res.Records, r.res.Bytes)
		}
		return p, nil
	case frameEnd:
		if len(p) != 0 {
			r.broke = fmt.Errorf("%w: record %s: end frame is not empty", ErrProtocol, r.src)
			return nil, r.broke
		}
		return nil, io.EOF
	default:
		r.broke = fmt.Errorf("%w: unexpected frame %q in a record", ErrProtocol, typ)
		return nil, r.broke
	}
}
