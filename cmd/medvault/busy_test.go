package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/medvault/medvault/vault"
)

// TestBusyBeforePassphrase: while another process holds the vault (a node
// finishing its last commands, a long import), a command says so, exit 12,
// before it asks for the passphrase: here it has no passphrase source and
// would otherwise fail on that (exit 2), or make a person type it for
// nothing.
func TestBusyBeforePassphrase(t *testing.T) {
	home := t.TempDir()
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600)
	env := map[string]string{"MEDVAULT_HOME": home, "MEDVAULT_PASSPHRASE_FILE": pass, insecureWorkFactorEnv: "10", "NO_COLOR": "1"}
	getenv := func(k string) string { return env[k] }
	var out, errb bytes.Buffer
	if code := run([]string{"init"}, strings.NewReader(""), &out, &errb, getenv); code != 0 {
		t.Fatalf("init: %d %s", code, errb.String())
	}
	f, err := os.OpenFile(filepath.Join(home, vault.LockFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	delete(env, "MEDVAULT_PASSPHRASE_FILE")
	errb.Reset()
	code := run([]string{"list"}, strings.NewReader(""), &out, &errb, getenv)
	if code != exitBusy || !strings.Contains(errb.String(), "another medvault command is using the vault") {
		t.Fatalf("list on a held vault: exit %d, %s", code, errb.String())
	}
}
