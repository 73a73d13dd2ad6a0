package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A full disk is a clear error with a hint, exit 1, and the vault keeps
// what it held. (vault's TestFullDisk runs out of space at every point of
// an add; this checks what the user sees.)
func TestAddFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (a disk that fills up)")
	}
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=24m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(disk, unix.MNT_DETACH) })
	work := t.TempDir()
	pass := filepath.Join(work, "pass")
	small, big := filepath.Join(work, "small"), filepath.Join(work, "big")
	for name, n := range map[string]int{pass: 0, small: 1 << 20, big: 28 << 20} {
		b := []byte("a passphrase\n")
		if n > 0 {
			b = make([]byte, n)
			rand.Read(b)
		}
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{
		"MEDVAULT_HOME":            filepath.Join(disk, "home"),
		"MEDVAULT_PASSPHRASE_FILE": pass,
		insecureWorkFactorEnv:      "10",
		"NO_COLOR":                 "1",
	}
	medvault := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
		return code, stdout.String(), stderr.String()
	}
	for _, args := range [][]string{{"init"}, {"add", small, "--category", "labs", "--title", "kept"}} {
		if code, _, stderr := medvault(args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	// A file whose size is known is refused before anything is written;
	// the same bytes from a pipe run out of space while being written.
	code, _, stderr := medvault("add", big, "--category", "imaging", "--title", "too big")
	if code != exitFailure {
		t.Errorf("add of a file larger than the free space: exit %d, want %d", code, exitFailure)
	}
	for _, want := range []string{
		"medvault: error: add: 28.0 MiB does not fit on the vault's disk (",
		"medvault: hint: the disk (or your quota) is full: free some space and retry",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("add of a file larger than the free space: stderr lacks %q:\n%s", want, stderr)
		}
	}
	content, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code = run([]string{"add", "-", "--category", "imaging", "--title", "too big"}, bytes.NewReader(content), &out, &errb, func(k string) string { return env[k] })
	if code != exitFailure {
		t.Errorf("add on a full disk: exit %d, want %d", code, exitFailure)
	}
	for _, want := range []string{
		"medvault: error: add: write " + filepath.Join(disk, "home", "vault.db") + ": no space left on device\n",
		"medvault: hint: the disk (or your quota) is full: free some space and retry",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("add on a full disk: stderr lacks %q:\n%s", want, errb.String())
		}
	}
	code, stdout, stderr := medvault("list", "--json")
	if code != 0 || !strings.Contains(stdout, `"kept"`) || strings.Contains(stdout, "too big") {
		t.Errorf("list after the failed add: exit %d: %s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := medvault("verify"); code != 0 {
		t.Errorf("verify after the failed add: exit %d: %s%s", code, stdout, stderr)
	}
}
