package ledger

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports enforces the package rule of STYLE.md: ledger imports only
// the standard library, golang.org/x/mod/sumdb, go.etcd.io/bbolt,
// golang.org/x/crypto and medvault's vault/record, never another medvault
// package. Test files may also import what the tests need from that list.
func TestImports(t *testing.T) {
	allowed := []string{
		"golang.org/x/mod/sumdb/tlog",
		"golang.org/x/mod/sumdb/note",
		"go.etcd.io/bbolt",
		"golang.org/x/crypto/",
		"github.com/medvault/medvault/vault/record",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !strings.Contains(strings.Split(path, "/")[0], ".") {
				continue // standard library
			}
			ok := false
			for _, a := range allowed {
				if path == a || strings.HasSuffix(a, "/") && strings.HasPrefix(path, a) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s, which package ledger must not import", name, path)
			}
		}
	}
}
