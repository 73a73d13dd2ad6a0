package share

import (
	"fmt"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// ClockSkew is the clock difference Decide tolerates between a request's
// time (the provider's clock) and now (the patient's node). It does not
// widen a grant's own window: the grant's times come from the clock of the
// patient who issued it, the clock Decide runs on, so a grant is honoured
// from its not-before time until its expiry, exactly.
const ClockSkew = 60 * time.Second

// Reason is a stable code saying why a request (or one item) was allowed or
// refused. Codes appear in ledger entries and --json output and never
// change meaning.
type Reason string

// The reasons, in the order Decide checks them (TOKEN.md, "Decision").
const (
	ReasonAllowed             Reason = "ok"
	ReasonMalformed           Reason = "malformed"
	ReasonBadSignature        Reason = "bad-signature"
	ReasonWrongIssuer         Reason = "wrong-issuer"
	ReasonWrongVault          Reason = "wrong-vault"
	ReasonGrantMismatch       Reason = "grant-mismatch"
	ReasonBadRequestSignature Reason = "bad-request-signature"
	ReasonWrongAudience       Reason = "wrong-audience"
	ReasonUnavailable         Reason = "unavailable"
	ReasonRevoked             Reason = "revoked"
	ReasonNotYetValid         Reason = "not-yet-valid"
	ReasonExpired             Reason = "expired"
	ReasonStaleRequest        Reason = "stale-request"
	ReasonNonceReused         Reason = "nonce-reused"
	ReasonOutOfScope          Reason = "out-of-scope"
	ReasonLabelExcluded       Reason = "label-excluded"
	ReasonNotFound            Reason = "not-found"
	// ReasonUnknownGrant: the request names a grant the serving node
	// does not hold (not Decide's: the node looks the grant up first).
	ReasonUnknownGrant Reason = "unknown-grant"
	// ReasonNoContact: the patient's vault no longer holds the contact
	// card of the grant's audience (removed, or replaced by a card with
	// another key), so there is nobody to encrypt to. Not Decide's: the
	// node looks the card up after it.
	ReasonNoContact Reason = "no-contact"
)

// Err returns the sentinel error for r, or nil for ReasonAllowed.
func (r Reason) Err() error {
	switch r {
	case ReasonAllowed:
		return nil
	case ReasonBadSignature, ReasonBadRequestSignature:
		return ErrBadSignature
	case ReasonWrongIssuer:
		return ErrWrongIssuer
	case ReasonWrongVault:
		return ErrWrongVault
	case ReasonGrantMismatch:
		return ErrGrantMismatch
	case ReasonWrongAudience:
		return ErrWrongAudience
	case ReasonUnavailable:
		return ErrUnavailable
	case ReasonRevoked:
		return ErrRevoked
	case ReasonNotYetValid:
		return ErrNotYetValid
	case ReasonExpired:
		return ErrExpired
	case ReasonStaleRequest:
		return ErrStaleRequest
	case ReasonNonceReused:
		return ErrNonceReused
	case ReasonOutOfScope:
		return ErrOutOfScope
	case ReasonLabelExcluded:
		return ErrLabelExcluded
	case ReasonNotFound:
		return ErrNotFound
	case ReasonUnknownGrant:
		return ErrUnknownGrant
	case ReasonNoContact:
		return ErrNoContact
	}
	return ErrMalformed
}

// State is what Decide needs to know about the vault serving a request.
// The funcs are called at most once per decision, except Lookup (once per
// requested item). A nil func, or one that returns an error, refuses the
// request with ReasonUnavailable: the decision fails closed.
//
// Call Decide inside the storage transaction that then records the nonce
// and the ledger entry, so that the nonce check and its recording are
// atomic.
type State struct {
	// Owner is the vault owner (the patient); only grants it issued count.
	Owner identity.ID
	// Vault is the vault being served; the grant must name it.
	Vault VaultID
	// Revoked reports whether grant id has been revoked.
	Revoked func(id GrantID) (bool, error)
	// NonceSeen reports whether nonce n was already used with grant id.
	NonceSeen func(id GrantID, n Nonce) (bool, error)
	// Lookup returns the record with the given ID, if it exists.
	Lookup func(id record.ID) (RecordInfo, bool, error)
	// All returns every record in the vault (for requests of all records
	// in scope).
	All func() ([]RecordInfo, error)
}

// Decision is the outcome of Decide.
type Decision struct {
	// Allowed is true when the request is served: Items (possibly empty for
	// a request of all records in scope) may be sent.
	Allowed bool
	// Reason is ReasonAllowed when Allowed; otherwise why the request was
	// refused. When some items were allowed and others denied, Allowed is
	// true, Reason is ReasonAllowed and Denied lists the others.
	Reason Reason
	// Authenticated is true when both signatures verified, the grant is the
	// owner's for this vault, and requester and remote peer are its
	// audience. The caller records the request nonce exactly when it is
	// true (even if the request is refused for a later reason).
	Authenticated bool
	// Grant is the ID of the grant decided on (zero when there was none).
	Grant GrantID
	// Items are the records that may be sent, in ascending ID order.
	Items []record.ID
	// Denied are the records refused, in ascending ID order: for a request
	// of explicit items, every item not allowed; for a request of all, the
	// records in scope withheld because of a label. The reasons are for the
	// patient's node to report; neither the reply to the provider nor the
	// ledger entry (which the provider gets in its receipt) may tell
	// out-of-scope, not-found and label-excluded apart.
	Denied []Denial
}

// Err returns nil when the request is allowed, else an error wrapping the
// reason's sentinel (ErrExpired, ErrRevoked, ...).
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	if d.Reason == ReasonAllowed || d.Reason == "" {
		return fmt.Errorf("access denied: %w", ErrMalformed)
	}
	return fmt.Errorf("access denied (%s): %w", d.Reason, d.Reason.Err())
}

func deny(d Decision, r Reason) Decision {
	d.Allowed = false
	d.Reason = r
	d.Items = nil
	return d
}

// Decide decides whether req, received over an authenticated connection
// from peer remote at time now, may read records under grant g, and which.
// It is a pure function of its arguments and of what st answers. The checks,
// in order (the first failure decides):
//
//  1. g and req are present                       → malformed
//  2. g's signature verifies under g's issuer      → bad-signature
//  3. g's issuer is st.Owner                       → wrong-issuer
//  4. g names st.Vault                             → wrong-vault
//  5. req names g's ID                             → grant-mismatch
//  6. req's signature verifies under its requester → bad-request-signature
//  7. requester and remote are g's audience        → wrong-audience
//  8. st.Revoked(g) is false                       → revoked
//  9. now ≥ g.NotBefore                           → not-yet-valid
//  10. now < g.Expiry                              → expired
//  11. |req.Time - now| ≤ ClockSkew                → stale-request
//  12. st.NonceSeen(g, req.Nonce) is false         → nonce-reused
//  13. per item, Grant.Covers (scope, then labels); an explicitly
//     requested ID that does not exist is not-found when g names it,
//     else out-of-scope.
//
// A failing State func at steps 8, 12 or 13 gives unavailable.
func Decide(g *Grant, req *Request, remote identity.ID, now time.Time, st State) Decision {
	var d Decision
	if g == nil || req == nil || len(g.raw) == 0 || len(req.raw) == 0 {
		return deny(d, ReasonMalformed)
	}
	d.Grant = g.id
	switch {
	case !g.verifySignature():
		return deny(d, ReasonBadSignature)
	case g.issuer != st.Owner:
		return deny(d, ReasonWrongIssuer)
	case g.vault != st.Vault:
		return deny(d, ReasonWrongVault)
	case req.grant != g.id:
		return deny(d, ReasonGrantMismatch)
	case !req.verifySignature():
		return deny(d, ReasonBadRequestSignature)
	case req.requester != g.audience, remote != g.audience:
		return deny(d, ReasonWrongAudience)
	}
	d.Authenticated = true

	if st.Revoked == nil {
		return deny(d, ReasonUnavailable)
	}
	if revoked, err := st.Revoked(g.id); err != nil {
		return deny(d, ReasonUnavailable)
	} else if revoked {
		return deny(d, ReasonRevoked)
	}
	switch {
	// The grant's window is the issuer's clock, which is this node's:
	// no skew applies to it.
	case now.Before(g.notBefore):
		return deny(d, ReasonNotYetValid)
	case !now.Before(g.expiry):
		return deny(d, ReasonExpired)
	case req.time.Sub(now) > ClockSkew || now.Sub(req.time) > ClockSkew:
		return deny(d, ReasonStaleRequest)
	}
	if st.NonceSeen == nil {
		return deny(d, ReasonUnavailable)
	}
	if seen, err := st.NonceSeen(g.id, req.nonce); err != nil {
		return deny(d, ReasonUnavailable)
	} else if seen {
		return deny(d, ReasonNonceReused)
	}

	if req.all {
		if st.All == nil {
			return deny(d, ReasonUnavailable)
		}
		recs, err := st.All()
		if err != nil {
			return deny(d, ReasonUnavailable)
		}
		sel := Select(g, recs)
		d.Allowed, d.Reason = true, ReasonAllowed
		d.Items, d.Denied = sel.Items, sel.Withheld
		return d
	}
	if st.Lookup == nil {
		return deny(d, ReasonUnavailable)
	}
	for _, id := range req.items { // ascending, unique
		info, ok, err := st.Lookup(id)
		if err != nil {
			return deny(d, ReasonUnavailable)
		}
		var r Reason
		switch {
		case ok && info.ID != id:
			return deny(d, ReasonUnavailable) // the store answered for another record
		case ok:
			r = g.sc.covers(&info)
		case g.sc.namesRecord(id):
			r = ReasonNotFound
		default:
			r = ReasonOutOfScope
		}
		if r == ReasonAllowed {
			d.Items = append(d.Items, id)
		} else {
			d.Denied = append(d.Denied, Denial{ID: id, Reason: r})
		}
	}
	if len(d.Items) == 0 {
		return deny(d, d.Denied[0].Reason)
	}
	d.Allowed, d.Reason = true, ReasonAllowed
	return d
}
