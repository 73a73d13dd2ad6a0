package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestWalkthroughTranscript runs docs/walkthrough.sh and checks that its
// transcript shows every command line, quoted as it must be typed: the
// ones whose output the script captures or throws away too.
func TestWalkthroughTranscript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds medvault")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	cmd := exec.Command("sh", filepath.Join("..", "..", "docs", "walkthrough.sh"))
	cmd.Env = append(cmd.Environ(), "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough.sh: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		"\n$ medvault init --name 'Ada Lovelace'\n",
		" --category labs --title HbA1c --date 2026-01-15\n",
		" --category notes --title 'Therapy note' --label MH\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("transcript lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "\n$ medvault add "); n != 2 {
		t.Errorf("transcript shows %d add commands, want 2:\n%s", n, s)
	}
}
