package share

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
)

// allTexts returns one text form of each kind, with its parser.
func allTexts(t *testing.T) map[string]struct {
	text  string
	parse func(string) error
} {
	t.Helper()
	vf := buildVectors(t)
	out := map[string]struct {
		text  string
		parse func(string) error
	}{}
	parsers := map[string]func(string) error{
		"card":       func(s string) error { _, err := ParseCard(s); return err },
		"grant":      func(s string) error { _, err := ParseGrant(s); return err },
		"revocation": func(s string) error { _, err := ParseRevocation(s); return err },
		"request":    func(s string) error { _, err := ParseRequest(s); return err },
	}
	for _, v := range vf.Valid {
		out[v.Name] = struct {
			text  string
			parse func(string) error
		}{v.Text, parsers[v.Kind]}
	}
	return out
}

// TestTextOneCharacterChanged changes every character after the prefix to
// every other character of the alphabet (and a few outside it) and expects
// ErrBadChecksum each time: a typo is reported as a typo.
func TestTextOneCharacterChanged(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.!é"
	for name, tc := range allTexts(t) {
		prefix := tc.text[:strings.IndexByte(tc.text, ':')+1]
		n := 0
		for i := len(prefix); i < len(tc.text); i++ {
			for _, r := range alphabet {
				if byte(r) == tc.text[i] {
					continue
				}
				s := tc.text[:i] + string(r) + tc.text[i+1:]
				if err := tc.parse(s); !errors.Is(err, ErrBadChecksum) {
					t.Fatalf("%s: char %d changed to %q: got %v, want ErrBadChecksum", name, i, r, err)
				}
				n++
			}
		}
		if n == 0 {
			t.Fatalf("%s: nothing tested", name)
		}
	}
}

func TestTextPrefixChanged(t *testing.T) {
	for name, tc := range allTexts(t) {
		colon := strings.IndexByte(tc.text, ':')
		for i := 0; i <= colon; i++ {
			for _, c := range []byte{'x', '9', '-', ':'} {
				if c == tc.text[i] {
					continue
				}
				s := tc.text[:i] + string(c) + tc.text[i+1:]
				err := tc.parse(s)
				if err == nil {
					t.Fatalf("%s: prefix char %d changed to %q: accepted", name, i, c)
				}
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrBadChecksum) {
					t.Fatalf("%s: prefix char %d changed: %v", name, i, err)
				}
			}
		}
	}
}

func TestTextTruncated(t *testing.T) {
	for name, tc := range allTexts(t) {
		for n := 0; n < len(tc.text); n++ {
			err := tc.parse(tc.text[:n])
			if err == nil {
				t.Fatalf("%s: truncated to %d accepted", name, n)
			}
			colon := strings.IndexByte(tc.text, ':')
			if n > colon && !errors.Is(err, ErrBadChecksum) {
				t.Fatalf("%s: truncated to %d: got %v, want ErrBadChecksum", name, n, err)
			}
		}
	}
}

func TestTextWhitespaceAndVersions(t *testing.T) {
	g := mustGrant(t, baseParams())
	txt := g.Text()
	var wrapped strings.Builder
	wrapped.WriteString("  \n")
	for i := 0; i < len(txt); i += 40 {
		wrapped.WriteString(txt[i:min(i+40, len(txt))])
		wrapped.WriteString("\r\n\t")
	}
	g2, err := ParseGrant(wrapped.String())
	if err != nil {
		t.Fatalf("wrapped text: %v", err)
	}
	if g2.ID() != g.ID() {
		t.Fatal("wrapped text gave another grant")
	}
	tests := []struct {
		text string
		want error
	}{
		{"medvault-grant-v2:" + txt[len(PrefixGrant):], ErrUnsupportedVersion},
		{"medvault-grant-v17:AAAA", ErrUnsupportedVersion},
		{"medvault-grant-v0:AAAA", ErrUnsupportedVersion},
		{"medvault-grant-v01:AAAA", ErrMalformed},
		{"medvault-card-v1:" + txt[len(PrefixGrant):], ErrMalformed},
		{"MEDVAULT-GRANT-V1:" + txt[len(PrefixGrant):], ErrMalformed},
		{"", ErrMalformed},
		{PrefixGrant, ErrBadChecksum},
		{PrefixGrant + "AAA", ErrBadChecksum},
		{PrefixGrant + strings.Repeat("A", grantText.maxText()), ErrBadChecksum},
		{strings.Repeat(" ", 1<<20), ErrMalformed},
		// A card's text with a valid checksum, given to the grant parser.
		{PrefixGrant + txt[len(PrefixGrant):len(txt)-6], ErrBadChecksum},
	}
	for _, tc := range tests {
		if _, err := ParseGrant(tc.text); !errors.Is(err, tc.want) {
			t.Errorf("ParseGrant(%.40q): got %v, want %v", tc.text, err, tc.want)
		}
	}
	// A valid text form of a card body under the grant prefix: the
	// checksum passes, the binary decoder refuses the tag.
	c, err := NewCard(patient, CardParams{Recipient: testRecipient(), Role: identity.Patient}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseGrant(encodeText(grantText, c.Bytes())); !errors.Is(err, ErrMalformed) {
		t.Errorf("card bytes as grant: %v", err)
	}
}

func TestBech32(t *testing.T) {
	valid := []string{
		"A12UEL5L",
		"a12uel5l",
		"an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
		"abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
		"split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
	}
	for _, s := range valid {
		if _, _, err := bech32Decode(s); err != nil && !strings.Contains(err.Error(), "padding") && !strings.Contains(err.Error(), "range") {
			t.Errorf("bech32Decode(%q): %v", s, err)
		}
	}
	invalid := []string{"pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3", "A1G7SGD8", "10a06t8", "1qzzfhee", "A12uEL5L", "a12uel5m"}
	for _, s := range invalid {
		if _, _, err := bech32Decode(s); err == nil {
			t.Errorf("bech32Decode(%q) accepted", s)
		}
	}
}

func TestAgeRecipient(t *testing.T) {
	// Cross-check with the age library through the identity package.
	id, err := identity.Generate("x", identity.Patient)
	if err != nil {
		t.Fatal(err)
	}
	s := id.Recipient().String()
	r, err := ParseAgeRecipient(s)
	if err != nil {
		t.Fatalf("ParseAgeRecipient(%s): %v", s, err)
	}
	if r.String() != s {
		t.Fatalf("round trip: %s != %s", r, s)
	}
	if r2, err := ParseAgeRecipient(strings.ToUpper(s)); err != nil || r2 != r {
		t.Fatalf("upper case: %v", err)
	}
	for _, bad := range []string{
		"", "age1", s[:len(s)-1], s + "q", strings.Replace(s, "age1", "agf1", 1),
		"age1" + strings.Repeat("q", 58), // the zero key (with a wrong checksum, too)
		bech32Encode("age", make([]byte, 32)),
		bech32Encode("age", make([]byte, 31)),
		bech32Encode("age1pq", []byte{1, 2, 3}),
		strings.Repeat("a", 200),
		s[:10] + strings.ToUpper(s[10:]),
	} {
		if _, err := ParseAgeRecipient(bad); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("ParseAgeRecipient(%.30q): got %v", bad, err)
		}
	}
	// Signer check with a real identity.
	if _, err := NewCard(id, CardParams{Recipient: r, Name: id.Name(), Role: id.Role()}, time.Now()); err != nil {
		t.Fatalf("NewCard with *identity.Identity: %v", err)
	}
}
