package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
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
