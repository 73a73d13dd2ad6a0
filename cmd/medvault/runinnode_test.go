package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
)

// A command whose working directory was removed still runs in the node,
// but a relative path in it does not resolve against the node's own
// directory: it fails, saying why.
func TestRunInNodeWithoutDirectory(t *testing.T) {
	v := openPatientVault(t)
	node := &app{getenv: func(string) string { return "" }}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := node.runInNode(v, &control.Request{Args: args, Dir: ""}, strings.NewReader(""), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("list"); code != 0 {
		t.Fatalf("list: exit %d: %s", code, out)
	}
	code, out := run("add", "lab.txt", "--category", "labs")
	if code == 0 || !strings.Contains(out, "working directory was removed") {
		t.Fatalf("add of a relative path: exit %d: %s", code, out)
	}
}

// openPatientVault creates and opens a patient's vault in a temporary
// directory, closed when the test ends.
func openPatientVault(t *testing.T) *vault.Vault {
	t.Helper()
	dir := t.TempDir()
	id, err := identity.Generate("Ada", identity.Patient)
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.Create(dir, id, vault.Options{}); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(dir, id, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}
