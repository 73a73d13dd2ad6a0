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

// TestStartupImports fails when the binary links what p2p's newHost exists to
// leave out: the root go-libp2p package (libp2p.New) and, through it, fx and
// the transports medvault does not run. Their package initialisers ran in
// every command and took about 2 ms of each start-up (README, "Performance").
func TestStartupImports(t *testing.T) {
	if _, err := exec.Command("go", "version").Output(); err != nil {
		t.Skip("the go command is not on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// Each is unwanted with the packages under it, except the root
	// package, whose subpackages newHost uses.
	unwanted := []string{
		"github.com/libp2p/go-libp2p/config",
		"go.uber.org/fx",
		"github.com/pion",
		"github.com/quic-go/webtransport-go",
		"github.com/libp2p/go-libp2p/p2p/transport/webrtc",
		"github.com/libp2p/go-libp2p/p2p/transport/websocket",
		"github.com/libp2p/go-libp2p/p2p/transport/webtransport",
		"github.com/libp2p/go-libp2p/p2p/host/autorelay",
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/libp2p/go-libp2p" {
			t.Errorf("medvault links %s", dep)
		}
		for _, u := range unwanted {
			if dep == u || strings.HasPrefix(dep, u+"/") {
				t.Errorf("medvault links %s", dep)
			}
		}
	}
}
