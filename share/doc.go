// Package share holds the patient's control over who reads their records:
// contact cards, grant tokens, revocations, access requests, and the one
// function that decides whether a request is allowed.
//
// A grant is signed by the patient, bound to one provider (its audience),
// one vault, a scope (categories, record IDs, the derived emergency
// summary), the sensitivity labels it includes, a purpose of use and a
// validity window with a mandatory expiry. Anyone can check a grant
// offline; the patient's node refuses it once revoked. A provider reads
// under a grant by sending a request it signs; Decide says yes, no, or
// which items, and why. The formats are specified byte by byte in
// TOKEN.md, with known-answer vectors in testdata/.
//
// Invariants:
//   - Every signed structure has exactly one valid binary encoding (a fixed
//     layout with sorted, duplicate-free lists and bit masks); decoders
//     refuse anything else, including trailing bytes and unknown versions,
//     and bound every length before allocating.
//   - Signatures are Ed25519 over domain || 0x00 || body, with the
//     versioned domains medvault/card/v1, medvault/grant/v1,
//     medvault/revoke/v1 and medvault/request/v1. Verification uses the
//     exact bytes received; nothing is re-serialised before verifying.
//   - Card, Grant, Revocation and Request values are immutable and only
//     exist verified: the constructors sign (and check their own
//     signature), the decoders verify. Decide verifies both signatures
//     again from the raw bytes.
//   - A record carrying a sensitivity label is never covered unless the
//     grant names that label, even when the grant names the record by ID
//     or it belongs to the emergency summary. An unknown label is never
//     named.
//   - Decide fails closed: a missing or failing State func refuses.
//
// Caveats:
//   - A revocation stops future reads only; what was delivered cannot be
//     recalled. The CLI says so.
//   - Tokens are signed, not encrypted: anyone who sees a grant learns the
//     patient's and provider's IDs, the vault ID, categories, named record
//     IDs, labels, purpose and times. Send grants over a private channel.
//     A grant is not a bearer token: only its audience's key can use it.
//   - Purpose of use is a signed statement, not something medvault can
//     enforce once records are delivered.
//   - Decide tolerates ClockSkew (60 s) of clock difference between a
//     request's time and the node's clock, and no more. A grant's window
//     gets none: the node that decides is the one whose clock issued the
//     grant, so the grant is honoured from its not-before time until its
//     expiry, to the second. Moving that node's clock moves the window.
//   - Nonce checking is atomic only if the caller runs Decide and records
//     the nonce in one storage transaction. Nonces of requests timed more
//     than 2*ClockSkew ago may be forgotten.
//   - Decision.Denied and Decision.Reason distinguish out-of-scope,
//     not-found and label-excluded for the patient's node to report; what
//     the provider gets must not, so it reveals nothing about records
//     outside the grant. That includes the ledger entry of the request,
//     which the provider receives in its receipt: it carries the reason D
//     carries (all three read out-of-scope).
//   - The card's name is a display hint chosen by its owner; contacts are
//     pinned by key (Book, CheckPin), and the safety number
//     (identity.ID.SafetyNumber) is what two people compare.
package share
