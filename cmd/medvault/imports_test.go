package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules fails when a package imports what the house style says it
// must not (STYLE.md, "Packages and who may import whom").
func TestImportRules(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	const mod = "github.com/medvault/medvault/"
	rules := []struct {
		pkg     string
		forbid  []string
		allowed []string // exceptions to forbid
	}{
		{"ledger", []string{mod + "vault", mod + "share", mod + "p2p", mod + "cmd", "github.com/libp2p/", "filippo.io/age", "github.com/spf13/", "github.com/charmbracelet/"}, []string{mod + "vault/record"}},
		{"vault/...", []string{mod + "share", mod + "p2p", mod + "cmd", "github.com/libp2p/", "github.com/spf13/", "github.com/charmbracelet/"}, nil},
		{"share/...", []string{mod + "p2p", mod + "cmd", "github.com/libp2p/", "github.com/spf13/", "github.com/charmbracelet/"}, []string{mod + "p2p/frame"}},
		{"p2p/...", []string{mod + "vault", mod + "share", mod + "ledger", mod + "cmd", "github.com/spf13/", "github.com/charmbracelet/"}, nil},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../../"+r.pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", r.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range r.forbid {
				if strings.HasPrefix(dep, f) && !hasPrefixAny(dep, r.allowed) && !strings.HasPrefix(dep, mod+strings.TrimSuffix(r.pkg, "/...")) {
					t.Errorf("%s imports %s, which it must not", r.pkg, dep)
				}
			}
		}
	}
}

func hasPrefixAny(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
