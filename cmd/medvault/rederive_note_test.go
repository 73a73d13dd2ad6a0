package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/record"
)

// What deriving labels again changed is told once, on stderr: the counts
// per label, the records to check by hand, and what could not be read.
// An open that derived nothing says nothing.
func TestNoteRederived(t *testing.T) {
	var stderr bytes.Buffer
	a := &app{stderr: &stderr, getenv: func(string) string { return "" }}
	a.noteRederived(nil)
	a.noteRederived(&vault.Rederivation{Checked: 40})
	if stderr.Len() != 0 {
		t.Fatalf("notes for nothing gained: %q", stderr.String())
	}
	id := record.NewID()
	a.noteRederived(&vault.Rederivation{Checked: 40, Records: 3, Propagated: 1, Overrode: 1,
		Gained:      map[record.Label]int{record.MH: 2, record.SUD: 1},
		HandChanged: []record.ID{id}, Unreadable: 2})
	// A run that did not complete warns, and leaves the counts to the run
	// that completes it.
	a.noteRederived(&vault.Rederivation{Checked: 40, Records: 3, Gained: map[record.Label]int{record.MH: 3}, NoIndex: errors.New("damaged")})
	a.noteRederived(&vault.Rederivation{Checked: 40, Records: 3, Gained: map[record.Label]int{record.MH: 3}, Failed: errors.New("ledger refused")})
	out := stderr.String()
	for _, want := range []string{
		"medvault: note: this version of medvault derives sensitivity labels from updated code lists: 3 records gained labels from their own content (MH 2, SUD 1), and labels reached 1 record that references them.",
		"'medvault log --action label'",
		"medvault: note: 1 record had such a label removed by hand: it is back",
		"medvault: note: you had changed labels by hand on 1 record of them",
		id.String(),
		"medvault: warning: 2 records could not be read to derive their labels; run 'medvault verify'",
		"the index of references between records could not be built (damaged)",
		"medvault: warning: deriving sensitivity labels under the updated code lists stopped part way (ledger refused)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "(MH 3)") {
		t.Errorf("a run that did not complete told its counts:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n != 6 {
		t.Errorf("%d lines, want 6:\n%s", n, out)
	}
}
