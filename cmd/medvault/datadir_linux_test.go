package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A data directory another local user could change is refused: there they
// could put their own node.sock and receive every command.
func TestCheckDataDir(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, c := range []struct {
		dir  string
		want string // "" for accepted
	}{
		{mk("private", 0o700), ""},
		{mk("readable", 0o755), ""},
		{mk("open", 0o777), "writable by other users"},
		{mk("group", 0o770), "writable by other users"},
		{filepath.Join(base, "missing"), ""},
	} {
		err := checkDataDir(c.dir)
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", filepath.Base(c.dir), err, c.want)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	other := mk("other", 0o700)
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := checkDataDir(other); err == nil || !strings.Contains(err.Error(), "belongs to another user") {
		t.Errorf("a directory of uid 65534: %v", err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(mk("target", 0o700), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := checkDataDir(link); err == nil || !strings.Contains(err.Error(), "symbolic link owned by another user") {
		t.Errorf("a link of uid 65534: %v", err)
	}
}
