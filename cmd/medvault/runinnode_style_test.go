package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/record"
)

// A caller whose terminal cannot show styles (TERM=dumb) gets plain tables
// from the node too, and the node's own TERM never decides for the caller.
func TestRunInNodeStylesFollowTheCaller(t *testing.T) {
	client := &app{getenv: func(k string) string {
		if k == "TERM" {
			return "dumb"
		}
		return ""
	}}
	if req := client.nodeRequest([]string{"list"}, "/"); !req.NoColor {
		t.Errorf("TERM=dumb: the request to the node has NoColor false")
	}

	v := openPatientVault(t)
	if _, err := v.Add(strings.NewReader("HbA1c 6.1 %"), vault.NewRecord{Title: "A1c", Category: record.Labs}); err != nil {
		t.Fatal(err)
	}
	for _, nodeTerm := range []string{"dumb", "xterm-256color"} {
		node := &app{getenv: func(k string) string {
			if k == "TERM" {
				return nodeTerm
			}
			return ""
		}}
		for _, noColor := range []bool{false, true} {
			var out, errb bytes.Buffer
			req := &control.Request{Args: []string{"list"}, Dir: "/", StdoutTTY: true, NoColor: noColor}
			if code := node.runInNode(v, req, strings.NewReader(""), &out, &errb); code != 0 {
				t.Fatalf("list: exit %d: %s", code, errb.String())
			}
			if bordered := strings.Contains(out.String(), "╭"); bordered == noColor {
				t.Errorf("node TERM=%s, NoColor %v: borders %v:\n%s", nodeTerm, noColor, bordered, out.String())
			}
			// Colour follows the caller too, not the node's stdout
			// (not a terminal in this test).
			if coloured := strings.Contains(out.String(), "\x1b["); coloured == noColor {
				t.Errorf("node TERM=%s, NoColor %v: escape sequences %v:\n%q", nodeTerm, noColor, coloured, out.String())
			}
		}
	}
}
