package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
)

// rm sent to a running node is confirmed here first (the node cannot read
// this terminal) and goes as --yes.
func TestConfirmRemove(t *testing.T) {
	for _, c := range []struct {
		args   []string
		typed  string
		yes    bool
		err    error
		prompt bool
	}{
		{args: []string{"rm", "3f9a2c"}, typed: "yes\n", yes: true, prompt: true},
		{args: []string{"--passphrase-file", "p", "rm", "3f9a2c"}, typed: " yes \n", yes: true, prompt: true},
		{args: []string{"rm", "3f9a2c"}, typed: "y\n", err: errCancelled, prompt: true},
		{args: []string{"rm", "3f9a2c"}, typed: "", err: errCancelled, prompt: true},
		{args: []string{"rm", "3f9a2c", "--yes"}, typed: "yes\n"},
		{args: []string{"rm", "-y", "3f9a2c"}, typed: "yes\n"},
	} {
		var stderr bytes.Buffer
		a := &app{stdin: strings.NewReader(c.typed), stderr: &stderr, getenv: func(string) string { return "" }}
		rm, _, err := newRootCommand(a).Find(c.args)
		if err != nil {
			t.Fatal(err)
		}
		yes, err := a.confirmRemove(rm, c.args)
		if yes != c.yes || !errors.Is(err, c.err) || a.removeConfirmed != c.yes {
			t.Errorf("%q typing %q: %v, %v (confirmed %v)", c.args, c.typed, yes, err, a.removeConfirmed)
		}
		if asked := strings.Contains(stderr.String(), "Delete record 3f9a2c for good?"); asked != c.prompt {
			t.Errorf("%q: asked %v: %q", c.args, asked, stderr.String())
		}
	}
}

func TestWithFlag(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"--passphrase-file", "rm", "rm", "3f9a2c"}, []string{"--passphrase-file", "rm", "rm", "3f9a2c", "--yes"}},
		{[]string{"rm", "--", "-3f9a2c"}, []string{"rm", "--yes", "--", "-3f9a2c"}},
	} {
		if got := withFlag(c.in, "--yes"); !slices.Equal(got, c.want) {
			t.Errorf("withFlag(%q) = %q", c.in, got)
		}
	}
}

// Before asking whether to delete, rm through a node lets the node say
// whether the record exists: nobody is asked to confirm deleting a record
// that is not there, and the answer's exit code is the node's.
func TestRemovableAsksNodeFirst(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "node.sock")
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var asked [][]string
	go control.Serve(ln, func(req *control.Request, _ io.Reader, _, stderr io.Writer) int {
		mu.Lock()
		asked = append(asked, req.Args)
		mu.Unlock()
		if req.Args[len(req.Args)-1] == "ffffffff" {
			fmt.Fprintln(stderr, "medvault: error: no record ffffffff")
			return exitNotFound
		}
		return exitOK
	})
	for _, c := range []struct {
		id   string
		ok   bool
		code int
	}{{"3f9a2c", true, 0}, {"ffffffff", false, exitNotFound}} {
		var stderr bytes.Buffer
		a := &app{stderr: &stderr, getenv: func(string) string { return "" }}
		args := []string{"rm", c.id}
		rm, _, err := newRootCommand(a).Find(args)
		if err != nil {
			t.Fatal(err)
		}
		code, ok := a.removable(sock, control.Request{Args: args}, rm, args)
		if ok != c.ok || code != c.code {
			t.Errorf("rm %s: %d, %v; want %d, %v", c.id, code, ok, c.code, c.ok)
		}
		if !c.ok && !strings.Contains(stderr.String(), "no record ffffffff") {
			t.Errorf("rm %s: the node's error was not shown: %q", c.id, stderr.String())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := [][]string{{"show", "--", "3f9a2c"}, {"show", "--", "ffffffff"}}; !slices.EqualFunc(asked, want, slices.Equal) {
		t.Errorf("the node was asked %q, want %q", asked, want)
	}
}
