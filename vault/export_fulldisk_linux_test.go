package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

// An export to a directory that runs out of space midway leaves nothing:
// not the records already written (decrypted health records left behind
// by a command that reported failure), not its hidden working directory.
func TestExportToDirFullDisk(t *testing.T) {
	disk := smallDisk(t, "1200k")
	v := newTestVault(t)
	contents := map[string][]byte{}
	for _, name := range []string{"first.bin", "second.bin"} {
		b := make([]byte, 945<<10)
		rand.Read(b)
		contents[name] = b
		if _, err := v.Add(bytes.NewReader(b), NewRecord{Title: name, FileName: name, Category: record.Imaging}); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(disk, "exp")
	_, err := v.ExportToDir(context.Background(), Filter{}, dir)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("export to a full disk: %v, want ENOSPC", err)
	}
	left, err := os.ReadDir(disk)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("the failed export left %s", e.Name())
		if e.IsDir() {
			inside, _ := os.ReadDir(filepath.Join(disk, e.Name()))
			for _, f := range inside {
				t.Errorf("  holding %s", f.Name())
			}
		}
	}

	// With room, the same export is complete, and the name it took is
	// the directory asked for, not a hidden one.
	os.RemoveAll(dir)
	room := t.TempDir()
	dir = filepath.Join(room, "exp")
	st, err := v.ExportToDir(context.Background(), Filter{}, dir)
	if err != nil || st.Records != 2 {
		t.Fatalf("export: %v, %+v", err, st)
	}
	for name, want := range contents {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("export directory: %v, %v", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(room); len(entries) != 1 {
		t.Fatalf("beside the export: %v", entries)
	}
	// An existing directory is refused, and kept as it was.
	if _, err := v.ExportToDir(context.Background(), Filter{}, dir); !errors.Is(err, os.ErrExist) {
		t.Fatalf("export to an existing directory: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("the existing directory now holds %v", entries)
	}
}

// An export whose context is cancelled (its client went away) stops and
// leaves nothing.
func TestExportToDirCancelled(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(bytes.NewReader([]byte("potassium 4.1")), NewRecord{Title: "k", Category: record.Labs}); err != nil {
		t.Fatal(err)
	}
	room := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.ExportToDir(ctx, Filter{}, filepath.Join(room, "exp")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled export: %v", err)
	}
	if entries, _ := os.ReadDir(room); len(entries) != 0 {
		t.Fatalf("the cancelled export left %v", entries)
	}
}

// probeCtx reports, each time the export checks it, whether dir exists.
type probeCtx struct {
	context.Context
	dir  string
	seen *bool
}

func (c probeCtx) Err() error {
	if _, err := os.Lstat(c.dir); err == nil {
		*c.seen = true
	}
	return c.Context.Err()
}

// The export's directory appears only when the export is complete: a
// process killed midway leaves nothing at it (the hidden directory beside
// it is noted and removed at the next Open), so a retry finds the name
// free. (A review killed exports and found an empty placeholder left at
// the name for good, and the retry refused.)
func TestExportToDirAppearsWhole(t *testing.T) {
	v := newTestVault(t)
	for _, s := range []string{"potassium 4.1", "sodium 140", "HbA1c 6.1"} {
		if _, err := v.Add(bytes.NewReader([]byte(s)), NewRecord{Title: s, Category: record.Labs}); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "exp")
	seen := false
	st, err := v.ExportToDir(probeCtx{context.Background(), dir, &seen}, Filter{}, dir)
	if err != nil || st.Records != 3 {
		t.Fatalf("export: %v %v", st, err)
	}
	if seen {
		t.Fatal("the export directory existed while records were still being written")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Fatalf("export holds %v", entries)
	}
}
