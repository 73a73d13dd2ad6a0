package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// While writeNewFile fills the file, the directory holds no name for it:
// a process killed then leaves no partial plaintext behind.
func TestWriteNewFileUnnamedWhileWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	err := writeNewFile(context.Background(), nil, path, func(w io.Writer) error {
		if _, err := w.Write([]byte("part of a record")); err != nil {
			return err
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		if len(entries) != 0 {
			t.Errorf("while writing, the directory holds %q", entries[0].Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "part of a record" {
		t.Fatalf("%q, %v", b, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %o", st.Mode().Perm())
	}
	// A failure leaves nothing; an existing file is never replaced.
	failed := filepath.Join(dir, "failed.bin")
	if err := writeNewFile(context.Background(), nil, failed, func(io.Writer) error { return errors.New("stop") }); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Lstat(failed); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed write left %v", err)
	}
	if err := writeNewFile(context.Background(), nil, path, func(io.Writer) error { return nil }); err == nil {
		t.Fatal("an existing file was accepted")
	}
}
