package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestTTYGuard: what reaches a terminal from 'get' is text without control
// characters, however the content is cut into writes; content that is
// binary from the start prints nothing, and content that turns binary after
// the first 8 KiB stops there.
func TestTTYGuard(t *testing.T) {
	text := strings.Repeat("lab note line é\n", 600) // > 8 KiB, with 2-byte runes
	cases := []struct {
		name    string
		content string
		want    string // printed
		binary  bool
	}{
		{"short text", "HbA1c 6.1 %\n", "HbA1c 6.1 %\n", false},
		{"long text", text, text, false},
		{"escapes early", "\x1b]0;title\x07\x1b[2Jhi\u009b31m\n", "]0;title[2Jhi31m\n", false},
		{"escapes late", text + "\x1b]0;PWNED\x07\x1b[2J\u009d\n", text + "]0;PWNED[2J\n", false},
		{"binary early", "\x00\x01\xff", "", true},
		{"binary late", text + "\x00\x01\xff", text, true},
		{"invalid utf-8 late", text + "\xc3\x28", text, true},
	}
	for _, c := range cases {
		for _, size := range []int{1, 7, 4096, 1 << 20} {
			var term bytes.Buffer
			g := &ttyGuard{w: &term}
			var err error
			for p := []byte(c.content); len(p) > 0 && err == nil; {
				k := min(size, len(p))
				_, err = g.Write(p[:k])
				p = p[k:]
			}
			if err == nil {
				err = g.Close()
			}
			if c.binary != (err != nil) {
				t.Errorf("%s in writes of %d: error %v", c.name, size, err)
			}
			var ue usageError
			if err != nil && !errors.As(err, &ue) {
				t.Errorf("%s in writes of %d: %v is not a usage error", c.name, size, err)
			}
			// Text before the binary part may be cut at any write.
			got := term.String()
			if c.binary && !strings.HasPrefix(c.want, got) || !c.binary && got != c.want {
				t.Errorf("%s in writes of %d: printed %q (%d bytes), want %q", c.name, size, clip(got), len(got), clip(c.want))
			}
			if strings.ContainsAny(got, "\x00\x1b\x07\u009b\u009d") {
				t.Errorf("%s in writes of %d: control characters reached the terminal", c.name, size)
			}
		}
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:20] + "..." + s[len(s)-20:]
	}
	return s
}
