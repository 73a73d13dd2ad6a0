package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every command a user can run gets a page, and groff reads every page
// without a warning (a stray request or bad escape would warn).
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	root := newRootCommand(a)
	n, err := writeManPages(root, dir, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("wrote %d pages, directory holds %d files", n, len(entries))
	}
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() || c.Name() == "help" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "medvault-"+c.Name()+".1")); err != nil {
			t.Errorf("no page for %s: %v", c.Name(), err)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff is not installed: pages written, not rendered")
	}
	for _, e := range entries {
		out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", filepath.Join(dir, e.Name())).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff on %s: %v\n%s", e.Name(), err, out)
		}
	}
}

// Help text that starts a line with a dot or an apostrophe, or holds a
// backslash, must not become a roff request or escape (an indented line
// is text already).
func TestRoffText(t *testing.T) {
	var b strings.Builder
	roffText(&b, ".SH not a section\n'tr ab\nC:\\path and --flag\n\n  .indented")
	got := b.String()
	for _, want := range []string{"\\&.SH not a section\n", "\\&'tr ab\n", "C:\\epath and \\-\\-flag\n", ".nf\n  .indented\n.fi\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("roffText output lacks %q:\n%s", want, got)
		}
	}
}
