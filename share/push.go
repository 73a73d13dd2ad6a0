package share

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
)

// The push protocol (/medvault/push/1.0.0) delivers, from a patient's node
// to a provider's node, one grant token ('G') or one revocation notice
// ('V'); the provider's node answers 'K' (stored) or 'D' with a reason.
const (
	frameGrant      = 'G'
	frameRevocation = 'V'
	frameOK         = 'K'
)

// PushGrant sends g on c and waits for the provider's node to store it.
func PushGrant(c Framer, g *Grant) error { return push(c, frameGrant, g.Bytes()) }

// PushRevocation sends a revocation notice on c.
func PushRevocation(c Framer, r *Revocation) error { return push(c, frameRevocation, r.Bytes()) }

func push(c Framer, typ byte, b []byte) error {
	if err := c.WriteFrame(typ, b); err != nil {
		return err
	}
	t, p, err := c.ReadFrame(maxMeta)
	if err != nil {
		return fmt.Errorf("no answer from the provider's node: %w", err)
	}
	switch t {
	case frameOK:
		if len(p) != 0 {
			return fmt.Errorf("the provider's node answered with a malformed acknowledgement (%d bytes where none belong)", len(p))
		}
		return nil
	case frameDenied:
		return &PushRefusedError{Reason: sanitizeReason(p)}
	}
	return fmt.Errorf("%w: unexpected frame %q", ErrProtocol, t)
}

// PushRefusedError is a push the provider's node answered with a refusal;
// Reason is its reason, as it gave it (printable ASCII, at most 64 bytes),
// such as "not-a-contact".
type PushRefusedError struct{ Reason string }

func (e *PushRefusedError) Error() string { return "the provider's node refused it: " + e.Reason }

// PushRefusedNotContact is the reason a provider's node gives for a push
// from a peer that is not among its contacts.
const PushRefusedNotContact = "not-a-contact"

func sanitizeReason(p []byte) string {
	if len(p) > 64 {
		p = p[:64]
	}
	out := make([]byte, 0, len(p))
	for _, c := range p {
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}

// ServePush receives one pushed grant or revocation on c from remote (the
// authenticated peer) into v, the provider's vault: a grant must be
// addressed to v's owner and issued by remote; a revocation must be signed by
// the issuer of a grant in the inbox. Both are checked by signature before
// anything is stored.
//
// Only contacts may push. A peer that is not one is refused ("not-a-contact")
// before anything is read: the connection authenticated its key, so there
// is nothing to wait for, and a stranger cannot hold a handler (and its
// frame buffer) for the request timeout by sending nothing.
func ServePush(v *vault.Vault, c Framer, remote identity.ID) error {
	return servePush(v, c, remote, nil)
}

// servePush is ServePush; a grant is stored only if allowGrant (when not
// nil) allows it, else refused rate-limited.
func servePush(v *vault.Vault, c Framer, remote identity.ID, allowGrant func() bool) error {
	// The frame must arrive within RequestTimeout, however slowly it
	// trickles.
	defer requestPhase(c)()
	refuse := func(why string, err error) error {
		c.WriteFrame(frameDenied, []byte(why))
		return err
	}
	// A stranger cannot fill the inbox, nor the node's push handlers.
	book, err := LoadBook(v)
	if err != nil {
		return refuse("unavailable", err)
	}
	if _, _, ok := book.Find(remote); !ok {
		return refuse(PushRefusedNotContact, fmt.Errorf("%w: %s", ErrNotContact, remote))
	}
	typ, p, err := c.ReadFrame(maxRequest)
	if errors.Is(err, frame.ErrTooLarge) {
		// The header is read and the stream is whole: the pusher can
		// still be told, as a fetch request over its limit is.
		return refuse("malformed", fmt.Errorf("read push: %w", err))
	}
	if err != nil {
		return err
	}
	switch typ {
	case frameGrant:
		g, err := DecodeGrant(p)
		if err != nil {
			return refuse("malformed", err)
		}
		if g.Audience() != v.Owner().ID() || g.Issuer() != remote {
			return refuse(string(ReasonWrongAudience), ErrWrongAudience)
		}
		if allowGrant != nil && !allowGrant() {
			return refuse(string(ReasonRateLimited), fmt.Errorf("%w: grants pushed by %s", ErrRateLimited, remote))
		}
		if err := StoreInbox(v, g); err != nil {
			return refuse("unavailable", err)
		}
	case frameRevocation:
		r, err := DecodeRevocation(p)
		if err != nil {
			return refuse("malformed", err)
		}
		if err := StoreRevocationNotice(v, r); err != nil {
			// Not a grant of the inbox, or not its issuer's revocation:
			// unknown-grant. The vault failing to read or store is
			// unavailable, so the patient knows to try again.
			why := "unavailable"
			if errors.Is(err, vault.ErrNotFound) || errors.Is(err, ErrGrantMismatch) || errors.Is(err, ErrWrongIssuer) {
				why = "unknown-grant"
			}
			return refuse(why, err)
		}
	default:
		return refuse("malformed", fmt.Errorf("%w: unexpected frame %q", ErrProtocol, typ))
	}
	return c.WriteFrame(frameOK, nil)
}

// StoreInbox keeps a grant received by the provider (pushed, or pasted to
// 'fetch'). The grant must be addressed to v's owner.
func StoreInbox(v *vault.Vault, g *Grant) error {
	if g.Audience() != v.Owner().ID() {
		return fmt.Errorf("this grant is for %s, not for you: %w", g.Audience(), ErrWrongAudience)
	}
	gid := g.ID()
	// Logged (a keep entry) only when new: fetching by a token already
	// in the inbox stores nothing again.
	ev := &vault.Event{Action: ledger.ActionKeep, Actor: g.Issuer(), Subjects: [][]byte{gid[:]}}
	return v.UpdateObject(vault.KindInbox, gid.String(), ev, func(old []byte, found bool) ([]byte, bool, error) {
		return g.Bytes(), !found || !bytes.Equal(old, g.Bytes()), nil
	})
}

// StoreRevocationNotice records that the patient revoked a grant in the
// provider's inbox. A grant is revoked once: the first notice is kept, and
// a later one for the same grant (signed at another time) changes nothing,
// so a contact cannot make the provider's node write, and log, without end.
func StoreRevocationNotice(v *vault.Vault, r *Revocation) error {
	gb, err := v.GetObject(vault.KindInbox, r.Grant().String())
	if err != nil {
		return err
	}
	g, err := DecodeGrant(gb)
	if err != nil {
		return err
	}
	if err := r.Check(g); err != nil {
		return err
	}
	gid := r.Grant()
	ev := &vault.Event{Action: ledger.ActionKeep, Actor: r.Issuer(), Subjects: [][]byte{gid[:]}}
	return v.UpdateObject(vault.KindRevoked, gid.String(), ev, func(_ []byte, found bool) ([]byte, bool, error) {
		return r.Bytes(), !found, nil
	})
}

// Inbox returns the grants in v's inbox (an Issued holds the patient's
// revocation notice, if one arrived, or says that a kept receipt refused
// it as revoked), newest first.
func Inbox(v *vault.Vault) ([]*Issued, error) {
	is, err := grantsIn(v, vault.KindInbox)
	if err != nil {
		return nil, err
	}
	revoked, err := refusedRevoked(v)
	if err != nil {
		return nil, err
	}
	for _, i := range is {
		i.RefusedRevoked = revoked[i.Grant.ID().String()]
	}
	return is, nil
}

// refusedRevoked returns the IDs of grants (hex) that a kept receipt shows
// refused as revoked. Receipts were verified before they were kept.
func refusedRevoked(v *vault.Vault) (map[string]bool, error) {
	objs, err := v.Objects(vault.KindReceipt)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, o := range objs {
		gid, _, _ := strings.Cut(o.Key, "/")
		if out[gid] {
			continue
		}
		rc, err := DecodeReceipt(o.Value)
		if err != nil {
			return nil, fmt.Errorf("stored receipt %s: %w", o.Key, err)
		}
		var l ledger.Leaf
		if err := l.UnmarshalBinary(rc.Leaf); err != nil {
			return nil, fmt.Errorf("stored receipt %s: %w", o.Key, err)
		}
		if l.Entry.Outcome == ledger.OutcomeDenied && l.Entry.Reason == string(ReasonRevoked) {
			out[gid] = true
		}
	}
	return out, nil
}
