package share

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports fails when share imports more than it may: the standard
// library, golang.org/x/crypto and medvault's vault/record and
// vault/identity (whose own dependencies, age and base58, come along).
// Never libp2p.
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(goTool, "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		switch {
		case !strings.Contains(strings.SplitN(imp, "/", 2)[0], "."): // standard library
		case strings.HasPrefix(imp, "golang.org/x/crypto/"):
		case imp == "github.com/medvault/medvault/vault/record", imp == "github.com/medvault/medvault/vault/identity":
		default:
			t.Errorf("share imports %s, which it may not", imp)
		}
	}
	deps, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, d := range strings.Fields(string(deps)) {
		if strings.Contains(d, "libp2p") || strings.HasPrefix(d, "go.etcd.io/bbolt") || strings.Contains(d, "/medvault/p2p") || strings.Contains(d, "/cmd/") {
			t.Errorf("share depends on %s", d)
		}
	}
}
