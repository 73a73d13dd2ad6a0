package share

import "errors"

// Errors callers branch on. Wrapped errors add the operation and, where it
// helps, which field was wrong; they never carry record content or keys.
var (
	// ErrMalformed means bytes or text are not a valid encoding: truncated,
	// trailing bytes, a field out of range, or not in canonical form.
	ErrMalformed = errors.New("malformed")
	// ErrBadChecksum means a text form's checksum did not match: the text
	// was mistyped, damaged or cut short while being copied.
	ErrBadChecksum = errors.New("bad checksum (the text was mistyped or cut short)")
	// ErrBadSignature means a signature does not verify under the key the
	// token names.
	ErrBadSignature = errors.New("bad signature")
	// ErrUnsupportedVersion means the input is from a newer (or unknown)
	// version of the format.
	ErrUnsupportedVersion = errors.New("unsupported version")

	// ErrInvalidParams means parameters given to a constructor are invalid
	// in a way no more specific error below describes.
	ErrInvalidParams = errors.New("invalid parameters")
	// ErrMissingExpiry means a grant was requested without an expiry.
	ErrMissingExpiry = errors.New("expiry is required")
	// ErrLifetimeTooLong means a grant's expiry is beyond the allowed maximum.
	ErrLifetimeTooLong = errors.New("expiry is beyond the maximum lifetime")
	// ErrEmptyScope means a grant names no category, record or derived scope.
	ErrEmptyScope = errors.New("scope is empty")
	// ErrUnknownCategory means a category name is not one medvault knows.
	ErrUnknownCategory = errors.New("unknown category")
	// ErrUnknownLabel means a sensitivity label is not one medvault knows.
	ErrUnknownLabel = errors.New("unknown sensitivity label")
	// ErrUnknownPurpose means a purpose of use is not one medvault knows.
	ErrUnknownPurpose = errors.New("unknown purpose of use")
	// ErrUnknownPreset means a preset name is not one medvault knows.
	ErrUnknownPreset = errors.New("unknown preset")

	// ErrExpired means a grant's expiry has passed (or, when issuing, that
	// the requested expiry is not in the future).
	ErrExpired = errors.New("grant expired")
	// ErrNotYetValid means a grant's not-before time has not come.
	ErrNotYetValid = errors.New("grant not yet valid")
	// ErrRevoked means the patient revoked the grant.
	ErrRevoked = errors.New("grant revoked")
	// ErrOutOfScope means a record is not covered by the grant's scope.
	ErrOutOfScope = errors.New("out of scope")
	// ErrLabelExcluded means a record carries a sensitivity label the grant
	// does not name.
	ErrLabelExcluded = errors.New("sensitivity label not included by the grant")
	// ErrUnknownGrant means the patient's node does not hold the grant a
	// request names: its vault was put back to a copy from before the
	// grant, or the grant is for another vault.
	ErrUnknownGrant = errors.New("the patient's node does not hold this grant")
	// ErrNotFound means a record the grant names explicitly no longer exists.
	ErrNotFound = errors.New("record not found")
	// ErrNotContact means a push came from a peer that is not in the
	// receiver's contact book; it was refused unread.
	ErrNotContact = errors.New("not a contact")
	// ErrWrongAudience means the requester or the connected peer is not the
	// provider the grant was issued to.
	ErrWrongAudience = errors.New("wrong audience")
	// ErrWrongIssuer means a grant or revocation was not signed by the vault
	// owner (or by the grant's issuer).
	ErrWrongIssuer = errors.New("wrong issuer")
	// ErrWrongVault means a grant names another vault.
	ErrWrongVault = errors.New("grant is for another vault")
	// ErrGrantMismatch means a request or revocation names another grant.
	ErrGrantMismatch = errors.New("names another grant")
	// ErrStaleRequest means a request's time is too far from the server's
	// clock.
	ErrStaleRequest = errors.New("request time outside the allowed clock skew")
	// ErrNonceReused means a request nonce was already used with the grant.
	ErrNonceReused = errors.New("request nonce reused")
	// ErrUnavailable means the patient's node could not read what it
	// needed: the decision state (revocations, nonces, records), or its
	// vault while sending. The request is refused, or ends there.
	ErrUnavailable = errors.New("the patient's vault could not be read")
	// ErrNoContact means the patient's vault no longer holds your contact
	// card (the patient removed it, or pinned another key for you), so
	// no grant to you can be served.
	ErrNoContact = errors.New("the patient no longer holds your contact card (removed, or replaced by one with another key)")
	// ErrRateLimited means the node refused the request without deciding
	// it, because this peer was refused too often recently, or served (or
	// pushed grants) more often than its allowance (see Limiter): a
	// temporary state, not a verdict on the grant.
	ErrRateLimited = errors.New("too many requests from you recently; retry in a minute")

	// ErrKeyChanged means a contact (alias) is pinned to another key than
	// the card presented. The CLI warns loudly and requires --replace.
	ErrKeyChanged = errors.New("contact key changed")
	// ErrStaleCard means a card for a pinned key is not newer than the one
	// already pinned.
	ErrStaleCard = errors.New("card is not newer than the pinned card")
	// ErrAlreadyPinned means the card's key is pinned under another alias.
	ErrAlreadyPinned = errors.New("key already pinned under another alias")
	// ErrInvalidAlias means an alias is not a valid contact alias.
	ErrInvalidAlias = errors.New("invalid alias")
)
