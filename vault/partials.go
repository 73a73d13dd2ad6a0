package vault

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// PartialsFile lists, in the data directory, the named temporary files
// that output written outside the vault (get -o, export -o) is being
// written to where the file system cannot make unnamed files (O_TMPFILE:
// NFS, FUSE, older overlayfs). Such a file holds decrypted content until
// it is complete and linked into place; a process killed before that
// leaves it behind, and the next Open removes it. One absolute path per
// line; it holds directories and random names, never a record's name.
const PartialsFile = "outputs.partial"

// PartialPrefix begins the name of every such temporary file: "." so that
// it is hidden, and nothing of the output's own name.
const PartialPrefix = ".medvault-partial-"

// CreatePartial creates a temporary file for output in dir, mode 0600,
// named PartialPrefix and a random suffix, and notes it in the data
// directory (synced before it is returned) so that the next Open removes
// it if this process dies before removing or renaming it itself.
func (v *Vault) CreatePartial(dir string) (*os.File, error) {
	var f *os.File
	err := v.notePartial(func() (string, error) {
		var err error
		if f, err = os.CreateTemp(dir, PartialPrefix+"*"); err != nil {
			return "", err
		}
		return f.Name(), nil // CreateTemp makes it 0600
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	return f, nil
}

// partialDir is CreatePartial for a directory (mode 0700): an export
// --format files in the making. It returns its path.
func (v *Vault) partialDir(dir string) (string, error) {
	var name string
	err := v.notePartial(func() (string, error) {
		var err error
		name, err = os.MkdirTemp(dir, PartialPrefix+"*")
		return name, err
	})
	return name, err
}

// notePartial runs create, which makes a partial output and returns its
// path, and notes that path in PartialsFile, synced; if that fails, what
// create made is removed.
func (v *Vault) notePartial(create func() (string, error)) error {
	j, err := os.OpenFile(filepath.Join(v.dir, PartialsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("note the partial output: %w", err)
	}
	defer j.Close()
	name, err := create()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(name)
	if err == nil {
		_, err = j.WriteString(abs + "\n")
	}
	if err == nil {
		err = j.Sync()
	}
	if err != nil {
		os.RemoveAll(name)
		return fmt.Errorf("note the partial output: %w", err)
	}
	return nil
}

// removePartials removes the partial outputs PartialsFile names that are
// still there (a process died writing them), then the list. Only regular
// files and directories (not symbolic links) named PartialPrefix+suffix
// are removed: a line changed to name
// another file names nothing this removes. Called with the vault lock
// held, when no other process writes the list.
func removePartials(dir string) error {
	list := filepath.Join(dir, PartialsFile)
	b, err := os.ReadFile(list)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	// A partial that could not be removed now (a file system mounted
	// read-only, an NFS server away) keeps its line for the next Open.
	var kept []string
	for _, p := range strings.Split(string(b), "\n") {
		if !filepath.IsAbs(p) || !strings.HasPrefix(filepath.Base(p), PartialPrefix) || filepath.Clean(p) != p {
			continue
		}
		st, err := os.Lstat(p)
		switch {
		case os.IsNotExist(err):
		case err != nil:
			kept = append(kept, p)
		case st.Mode().IsRegular():
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				kept = append(kept, p)
			}
		case st.IsDir(): // an export --format files (ExportToDir)
			if err := os.RemoveAll(p); err != nil {
				kept = append(kept, p)
			}
		}
	}
	if len(kept) == 0 {
		return os.Remove(list)
	}
	return writeFileAtomic(list, []byte(strings.Join(kept, "\n")+"\n"))
}

// writeFileAtomic replaces path with data (mode 0600) through a synced
// temporary file renamed over it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
