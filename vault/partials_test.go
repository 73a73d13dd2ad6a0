package vault

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Output written where unnamed files cannot be made goes to a named
// temporary file the vault notes: a process killed before it is done
// leaves decrypted content behind, and the next Open removes it. Only
// files of the partial name that the list names are removed.
func TestPartialsRemovedAtNextOpen(t *testing.T) {
	v := newTestVault(t)
	out := t.TempDir()
	f, err := v.CreatePartial(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("HbA1c 6.1 %, decrypted"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// An export --format files in the making: a directory of them.
	pd, err := v.partialDir(out)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(pd, "Condition-1.json"), []byte(`{"resourceType":"Condition"}`), 0o600)
	name := filepath.Base(f.Name())
	if !strings.HasPrefix(name, PartialPrefix) {
		t.Fatalf("partial named %q", name)
	}
	if st, err := os.Stat(f.Name()); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("partial: %v %v", st, err)
	}
	list := filepath.Join(v.Dir(), PartialsFile)
	if st, err := os.Stat(list); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("list: %v %v", st, err)
	}
	// Lines that name other files, or one of the partial name that is a
	// symbolic link, are not acted on.
	keep := filepath.Join(out, "keep.txt")
	os.WriteFile(keep, []byte("mine"), 0o600)
	link := filepath.Join(out, PartialPrefix+"link")
	os.Symlink(keep, link)
	j, err := os.OpenFile(list, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	j.WriteString(keep + "\n" + link + "\n" + "relative/" + PartialPrefix + "x\n" + out + "/../" + filepath.Base(out) + "/" + PartialPrefix + "y\n")
	j.Close()
	// The process dies: its partial stays, until the vault is opened again.
	dir, id := v.Dir(), v.id
	v.Close()
	if _, err := os.Stat(f.Name()); err != nil {
		t.Fatal("the partial is gone before the next open")
	}
	v2, err := Open(dir, id, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	for _, p := range []string{f.Name(), pd} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("partial %s outlived the next open: %v", p, err)
		}
	}
	if _, err := os.Lstat(list); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the list outlived the next open: %v", err)
	}
	for _, p := range []string{keep, link} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
}

// "exp/" names the directory "exp": the export is built beside it, not in
// it (where the rename onto it could never succeed).
func TestExportToDirTrailingSlash(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(strings.NewReader("HbA1c 6.1 %"), NewRecord{Category: "labs", FileName: "a.txt"}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "exp")
	st, err := v.ExportToDir(context.Background(), Filter{}, dir+"/")
	if err != nil || st.Records != 1 {
		t.Fatalf("%+v %v", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "HbA1c 6.1 %" {
		t.Fatalf("%q %v", b, err)
	}
	if es, _ := os.ReadDir(filepath.Dir(dir)); len(es) != 1 {
		t.Errorf("beside the export: %v", es)
	}
}

// A partial that cannot be removed at the next open (its file system read
// only, its server away) keeps its line, and goes at a later open.
func TestPartialKeptWhenNotRemovable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for chattr +i (a directory nothing can be removed from)")
	}
	v := newTestVault(t)
	out := t.TempDir()
	f, err := v.CreatePartial(out)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("decrypted")
	f.Close()
	dir, id := v.Dir(), v.id
	v.Close()
	if err := exec.Command("chattr", "+i", out).Run(); err != nil {
		t.Skipf("cannot make a directory immutable here: %v", err)
	}
	v2, err := Open(dir, id, Options{LockTimeout: 100 * time.Millisecond})
	exec.Command("chattr", "-i", out).Run()
	if err != nil {
		t.Fatal(err)
	}
	v2.Close()
	if _, err := os.Stat(filepath.Join(dir, PartialsFile)); err != nil {
		t.Fatalf("the list went though its partial could not be removed: %v", err)
	}
	v3, err := Open(dir, id, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v3.Close()
	if _, err := os.Lstat(f.Name()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the partial outlived a later open: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, PartialsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the list outlived a later open: %v", err)
	}
}

// A temporary identity file an init killed midway left (the crash review
// found one after an init killed and run again within a minute) is removed
// when the vault opens, however new: the identity it would have become
// exists.
func TestOpenRemovesIdentityTemps(t *testing.T) {
	v := newTestVault(t)
	tmp := filepath.Join(v.dir, ".identity-123.tmp")
	if err := os.WriteFile(tmp, []byte("age-encryption.org/v1 ..."), 0o600); err != nil {
		t.Fatal(err)
	}
	v.Close()
	reopen(t, v)
	if _, err := os.Lstat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Open, the temporary identity file: %v", err)
	}
}
