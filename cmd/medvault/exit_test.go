package main

import (
	"fmt"
	"testing"

	"github.com/medvault/medvault/p2p"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
)

// TestExitCodes: every refusal a provider can meet exits 17, as the brief's
// table says, however deep it is wrapped; the other classes keep theirs.
func TestExitCodes(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{share.ErrExpired, exitDenied},
		{share.ErrRevoked, exitDenied},
		{share.ErrOutOfScope, exitDenied},
		{share.ErrWrongAudience, exitDenied},
		{share.ErrUnknownGrant, exitDenied},
		{share.ErrNonceReused, exitDenied},
		{share.ErrStaleRequest, exitDenied},
		{share.ErrRateLimited, exitDenied},
		{share.ErrNoContact, exitDenied},
		{p2p.ErrUnreachable, exitUnreachable},
		{vault.ErrLocked, exitBusy},
		{vault.ErrNotFound, exitNotFound},
		{identity.ErrWrongPassphrase, exitDecrypt},
		{vault.ErrTampered, exitIntegrity},
		{usagef("bad"), exitUsage},
	}
	for _, c := range cases {
		err := fmt.Errorf("fetch: the patient's node refused the request: %w", c.err)
		if got := exitCode(withHint(err, "hint")); got != c.want {
			t.Errorf("%v: exit %d, want %d", c.err, got, c.want)
		}
	}
}
