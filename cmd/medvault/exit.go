package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/p2p"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
)

// Exit codes: the documented interface for scripts (README, `medvault help
// exit-codes`). Never renumber.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitCancelled   = 3
	exitNotFound    = 10
	exitDecrypt     = 11
	exitBusy        = 12
	exitIntegrity   = 13
	exitDenied      = 17
	exitUnreachable = 20
)

const exitCodesHelp = `Exit codes (stable; scripts may rely on them):

   0  ok
   1  other failure
   2  usage: bad flags or arguments, unknown category, missing passphrase source
   3  cancelled by the user
  10  not found (record, contact, grant)
  11  wrong passphrase, or decryption failed
  12  vault busy: another medvault process holds it, or its node does not answer
  13  integrity failure: tampering detected (see 'medvault verify'), or a
      vault file medvault cannot open (cut short, emptied)
  17  access denied: expired, revoked, out of scope, wrong audience, a
      grant the patient's node does not hold, or too many refusals of late
      (the patient's node refuses you for a minute)
  20  peer unreachable
`

// usageError marks errors that are the caller's mistake in how medvault was
// invoked (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// hinted attaches a hint line to an error.
type hinted struct {
	err  error
	hint string
}

func (e hinted) Error() string { return e.err.Error() }
func (e hinted) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return hinted{err, hint} }

var errCancelled = errors.New("cancelled")

// exitCode maps an error to its documented exit code.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, vault.ErrInvalid):
		return exitUsage
	case errors.Is(err, errCancelled):
		return exitCancelled
	case errors.Is(err, vault.ErrNotFound):
		return exitNotFound
	case errors.Is(err, identity.ErrWrongPassphrase), errors.Is(err, identity.ErrCorrupt), errors.Is(err, vault.ErrDecrypt):
		return exitDecrypt
	case errors.Is(err, vault.ErrLocked):
		return exitBusy
	case errors.Is(err, p2p.ErrUnreachable), errors.Is(err, p2p.ErrProtocolNotSupported),
		errors.Is(err, p2p.ErrReset), errors.Is(err, p2p.ErrTimeout):
		return exitUnreachable
	case errors.Is(err, context.Canceled):
		return exitCancelled
	case errors.Is(err, vault.ErrTampered), errors.Is(err, ledger.ErrTampered):
		return exitIntegrity
	}
	for _, s := range []error{share.ErrExpired, share.ErrRevoked, share.ErrOutOfScope, share.ErrWrongAudience,
		share.ErrLabelExcluded, share.ErrNotYetValid, share.ErrWrongIssuer, share.ErrWrongVault, share.ErrNonceReused,
		share.ErrStaleRequest, share.ErrBadSignature, share.ErrBadChecksum, share.ErrNotFound, share.ErrUnavailable, share.ErrUnknownGrant,
		share.ErrRateLimited, share.ErrNoContact} {
		if errors.Is(err, s) {
			return exitDenied
		}
	}
	for _, s := range []error{share.ErrMissingExpiry, share.ErrLifetimeTooLong, share.ErrEmptyScope, share.ErrUnknownCategory,
		share.ErrUnknownLabel, share.ErrUnknownPurpose, share.ErrUnknownPreset, share.ErrInvalidAlias, share.ErrInvalidParams,
		p2p.ErrBadAddress} {
		if errors.Is(err, s) {
			return exitUsage
		}
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "required flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "arg(s)") {
		return exitUsage
	}
	return exitFailure
}

// hintFor returns the hint for well-known errors.
func hintFor(err error) string {
	var h hinted
	if errors.As(err, &h) {
		return h.hint
	}
	switch {
	case errors.Is(err, vault.ErrImportRunning):
		return "nothing was changed; run the same 'medvault label' again once the import ends"
	case errors.Is(err, vault.ErrLocked):
		return "another medvault command is using the vault; wait for it to finish (or stop 'medvault serve') and retry"
	case errors.Is(err, identity.ErrWrongPassphrase):
		return "nothing was changed; check the passphrase (and the file given by --passphrase-file)"
	case errors.Is(err, identity.ErrCorrupt):
		return "nothing was changed; identity.age holds your keys and cannot be read: restore it from a backup (without it the vault cannot be opened)"
	case errors.Is(err, vault.ErrNoVault):
		return "run 'medvault init' first, or set MEDVAULT_HOME to the data directory of an existing vault"
	case errors.Is(err, vault.ErrFileDamaged):
		return "medvault cannot open this file, so 'medvault verify' cannot check it either: keep it aside and restore vault.db from a backup"
	case errors.Is(err, vault.ErrTampered):
		return "run 'medvault verify' for a full integrity report"
	case errors.Is(err, share.ErrUnknownGrant):
		return "the patient's vault does not know this grant: it may have been restored from a backup older than the grant; ask the patient for a new one"
	case errors.Is(err, share.ErrNoContact):
		return "no grant to you can be served now: give the patient your current card ('medvault id') and ask for a new grant"
	case errors.Is(err, share.ErrLifetimeTooLong):
		return lifetimeHint("")
	case errors.Is(err, share.ErrRateLimited):
		return "the patient's node refuses requests from you for a while after many refusals (expired or revoked grants, say), or after many fetches in a short time (it serves 30, then one every 30 s); wait a minute, then fetch with a grant that is active ('medvault inbox')"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "the disk (or your quota) is full: free some space and retry; a failed write leaves what was stored before as it was ('medvault verify' checks)"
	case errors.Is(err, identity.ErrNewerFormat), errors.Is(err, vault.ErrNewerFormat):
		return "upgrade medvault to open this vault; this build does not change it"
	}
	var ue usageError
	if errors.As(err, &ue) {
		return "see 'medvault help' or 'medvault COMMAND --help'"
	}
	return ""
}

// lifetimeHint is the hint for a grant asked to last longer than allowed;
// limit is MEDVAULT_MAX_GRANT_LIFETIME as given, "" when it is not set.
func lifetimeHint(limit string) string {
	const shorter = "give a shorter --expires and grant again when it ends; "
	if limit == "" {
		return shorter + fmt.Sprintf("the limit is %dd unless MEDVAULT_MAX_GRANT_LIFETIME sets another (at most 3650d)",
			share.DefaultMaxLifetime/(24*time.Hour))
	}
	return shorter + fmt.Sprintf("the limit in force is %s, set by MEDVAULT_MAX_GRANT_LIFETIME (at most 3650d)", limit)
}

// printError writes the error (and a hint where one helps) the way every
// command reports failure.
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "medvault: error: %v\n", err)
	if h := hintFor(err); h != "" {
		fmt.Fprintf(w, "medvault: hint: %s\n", h)
	}
}
