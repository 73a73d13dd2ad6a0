package main

import (
	"bytes"
	"strings"
	"testing"
)

// Shell completion offers the fixed values of flags, on every command that
// has them.
func TestFlagCompletion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"add", "x", "--category", ""}, []string{"imaging", "labs"}},
		{[]string{"list", "--label", ""}, []string{"MH", "SUD"}},
		{[]string{"grant", "doc", "--purpose", ""}, []string{"TREAT\t", "ETREAT\t"}},
		{[]string{"grant", "doc", "--preset", ""}, []string{"nurse\t"}},
		{[]string{"grant", "doc", "--scope", "labs,"}, []string{"labs,notes", "labs,emergency-summary"}},
		{[]string{"export", "--format", ""}, []string{"ndjson", "files"}},
		{[]string{"audit", "--format", ""}, []string{"text", "fhir"}},
		{[]string{"log", "--action", ""}, []string{"serve", "revoke"}},
		{[]string{"log", "--outcome", ""}, []string{"denied"}},
		{[]string{"help", "ex"}, []string{"exit-codes\t", "export\t"}},
		{[]string{"help", "contacts", ""}, []string{"show\t"}},
	} {
		var out bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
		if code := execute(a, append([]string{"__complete"}, c.args...)); code != 0 {
			t.Fatalf("%q: exit %d", c.args, code)
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%q: %q not offered in %q", c.args, w, out.String())
			}
		}
	}
}
