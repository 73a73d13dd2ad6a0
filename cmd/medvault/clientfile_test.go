package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
)

// A file argument that leads into /proc or /dev through symbolic links is
// opened by the client, as /dev/stdin is: opened by the node, a link to
// /proc/self/environ stored the node's environment.
func TestClientOnlyFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("plain.txt", []byte("potassium 4.1"), 0o600)
	os.Mkdir("sub", 0o700)
	for link, target := range map[string]string{
		"env":          "/proc/self/environ",
		"null":         "/dev/null",
		"self":         "/proc/self",
		"plain-link":   "plain.txt",
		"chain":        "env",
		"dangling":     "nowhere",
		"sub/up":       "../env",
		"devdir":       "/dev",
		"sub/relative": "../plain.txt",
		// Links that pass through /proc or /dev to a regular file: which
		// file depends on the process that opens them.
		"cwdlink": "/proc/self/cwd/plain.txt",
		"cwddir":  "/proc/self/cwd",
		"fdlink":  "/dev/fd/0",
		"cwdsub":  "/proc/self/cwd/sub",
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	for path, want := range map[string]bool{
		"plain.txt":               false,
		"plain-link":              false,
		"sub/relative":            false,
		"sub":                     false,
		"env":                     true,
		"chain":                   true,
		"sub/up":                  true,
		"null":                    true,
		"self/environ":            true,
		"devdir/null":             true,
		"dangling":                true,
		"/dev/stdin":              true,
		filepath.Join(dir, "env"): true,
		"cwdlink":                 true,
		"cwddir/plain.txt":        true,
		"fdlink":                  true,
		// ".." after a link is its target's parent: /proc/self/cwd.
		"cwdsub/../plain.txt":                          true,
		filepath.Join(dir, "cwdsub") + "/../plain.txt": true,
		"sub/../plain.txt":                             false,
	} {
		if got := clientOnly(path); got != want {
			t.Errorf("clientOnly(%q) = %v, want %v", path, got, want)
		}
	}
}

// In the node, a file argument that turns out to be under /proc once
// opened (a link the client looked at, changed since) is refused, not
// stored: its content would be the node's.
func TestNodeRefusesProcThroughLink(t *testing.T) {
	v := openPatientVault(t)
	dir := t.TempDir()
	if err := os.Symlink("/proc/self/environ", filepath.Join(dir, "env")); err != nil {
		t.Fatal(err)
	}
	node := &app{getenv: func(string) string { return "" }}
	for _, args := range [][]string{
		{"add", "env", "--category", "notes"},
		{"import", "env"},
	} {
		var out, errb bytes.Buffer
		code := node.runInNode(v, &control.Request{Args: args, Dir: dir}, strings.NewReader(""), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), "which the node would read as its own") {
			t.Errorf("%v in the node: exit %d: %s%s", args, code, out.String(), errb.String())
		}
	}
	var out bytes.Buffer
	node.runInNode(v, &control.Request{Args: []string{"list", "--json"}, Dir: dir}, strings.NewReader(""), &out, &out)
	if strings.Contains(out.String(), `"env"`) {
		t.Errorf("the node stored its environment:\n%s", out.String())
	}
}
