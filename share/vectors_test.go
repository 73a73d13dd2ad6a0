package share

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the code")

const vectorsPath = "testdata/vectors.json"

type vectorFile struct {
	Comment string            `json:"comment"`
	Keys    map[string]string `json:"keys"`
	Valid   []validVector     `json:"valid"`
	Invalid []invalidVector   `json:"invalid"`
}

type validVector struct {
	Name   string            `json:"name"`
	Kind   string            `json:"kind"` // card, grant, revocation, request
	Fields map[string]string `json:"fields"`
	Hex    string            `json:"hex"`
	Text   string            `json:"text"`
	ID     string            `json:"grant_id,omitempty"`
}

type invalidVector struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Hex   string `json:"hex,omitempty"`
	Text  string `json:"text,omitempty"`
	Error string `json:"error"`
}

var sentinels = map[string]error{
	"ErrMalformed":          ErrMalformed,
	"ErrBadChecksum":        ErrBadChecksum,
	"ErrBadSignature":       ErrBadSignature,
	"ErrUnsupportedVersion": ErrUnsupportedVersion,
	"ErrUnknownPurpose":     ErrUnknownPurpose,
	"ErrUnknownCategory":    ErrUnknownCategory,
	"ErrUnknownLabel":       ErrUnknownLabel,
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func joinIDs(ids []record.ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ",")
}

func cardFields(c *Card) map[string]string {
	return map[string]string{
		"id": c.ID().String(), "recipient": c.Recipient().String(), "role": string(c.Role()),
		"issued": fmtTime(c.Issued()), "name": c.Name(), "hints": strings.Join(c.Hints(), " "),
	}
}

func grantFields(g *Grant) map[string]string {
	sc := g.Scope()
	cats := make([]string, len(sc.Categories))
	for i, c := range sc.Categories {
		cats[i] = string(c)
	}
	labels := make([]string, 0)
	for _, l := range g.Labels() {
		labels = append(labels, string(l))
	}
	es := "false"
	if sc.EmergencySummary {
		es = "true"
	}
	return map[string]string{
		"issuer": g.Issuer().String(), "audience": g.Audience().String(), "vault": g.Vault().String(),
		"nonce": g.Nonce().String(), "issued": fmtTime(g.Issued()), "not_before": fmtTime(g.NotBefore()),
		"expiry": fmtTime(g.Expiry()), "purpose": string(g.Purpose()), "labels": strings.Join(labels, ","),
		"emergency_summary": es, "categories": strings.Join(cats, ","), "records": joinIDs(sc.Records),
		"hints": strings.Join(g.Hints(), " "),
	}
}

func revocationFields(r *Revocation) map[string]string {
	return map[string]string{"issuer": r.Issuer().String(), "grant": r.Grant().String(), "time": fmtTime(r.Time())}
}

func requestFields(r *Request) map[string]string {
	all := "false"
	if r.All() {
		all = "true"
	}
	return map[string]string{
		"requester": r.Requester().String(), "grant": r.Grant().String(), "nonce": r.Nonce().String(),
		"time": fmtTime(r.Time()), "all": all, "items": joinIDs(r.Items()),
	}
}

// resign replaces a token's signature with s's signature over its (mutated)
// body, so a test can reach the checks after the signature.
func resign(tok []byte, domain string, s Signer) []byte {
	body := bytes.Clone(tok[:len(tok)-sigLen])
	return append(body, s.Sign(signedMessage(domain, body))...)
}

func mutate(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }

// buildVectors computes every vector from fixed seeds and times.
func buildVectors(t testing.TB) vectorFile {
	t.Helper()
	vf := vectorFile{
		Comment: "medvault share v1 known-answer vectors; see share/TOKEN.md. Ed25519 seeds are 32 repeated bytes; the age recipient is the X25519 key of 32 bytes of 0x04.",
		Keys: map[string]string{
			"patient_seed":  strings.Repeat("01", 32),
			"patient_id":    patient.ID().String(),
			"provider_seed": strings.Repeat("02", 32),
			"provider_id":   provider.ID().String(),
			"stranger_seed": strings.Repeat("03", 32),
			"stranger_id":   stranger.ID().String(),
			"age_recipient": testRecipient().String(),
		},
	}
	card, err := NewCard(patient, CardParams{Recipient: testRecipient(), Name: "Alice Example", Role: identity.Patient,
		Hints: []string{"/ip4/192.0.2.10/tcp/4001", "/ip4/192.0.2.10/udp/4001/quic-v1"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	card2, err := NewCard(provider, CardParams{Recipient: testRecipient(), Name: "Dr. Lee", Role: identity.Provider}, t0)
	if err != nil {
		t.Fatal(err)
	}
	p1 := baseParams()
	p1.Hints = []string{"/ip4/192.0.2.10/tcp/4001"}
	g1 := mustGrant(t, p1)
	g2 := mustGrant(t, GrantParams{
		Audience: provider.ID(), Vault: testVault,
		Scope:     Scope{Categories: []record.Category{record.Allergies}, Records: []record.ID{rid("b"), rid("a")}, EmergencySummary: true},
		Labels:    []record.Label{record.SUD, record.MH},
		Purpose:   EmergencyTreatment,
		NotBefore: t0.Add(time.Hour), Expiry: t0.Add(24 * time.Hour), Nonce: fixedNonce(0xbb),
	})
	rv, err := Revoke(patient, g1.ID(), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	q1 := mustRequest(t, provider, RequestParams{Grant: g1.ID(), All: true, Nonce: fixedNonce(0xcc)}, t0.Add(10*time.Minute))
	q2 := mustRequest(t, provider, RequestParams{Grant: g2.ID(), Items: []record.ID{rid("y"), rid("x")}, Nonce: fixedNonce(0xdd)}, t0.Add(2*time.Hour))

	vf.Valid = []validVector{
		{Name: "card-patient", Kind: "card", Fields: cardFields(card), Hex: hex.EncodeToString(card.Bytes()), Text: card.Text()},
		{Name: "card-provider-no-hints", Kind: "card", Fields: cardFields(card2), Hex: hex.EncodeToString(card2.Bytes()), Text: card2.Text()},
		{Name: "grant-labs-30d", Kind: "grant", Fields: grantFields(g1), Hex: hex.EncodeToString(g1.Bytes()), Text: g1.Text(), ID: g1.ID().String()},
		{Name: "grant-emergency-labels-records", Kind: "grant", Fields: grantFields(g2), Hex: hex.EncodeToString(g2.Bytes()), Text: g2.Text(), ID: g2.ID().String()},
		{Name: "revocation-of-grant-labs-30d", Kind: "revocation", Fields: revocationFields(rv), Hex: hex.EncodeToString(rv.Bytes()), Text: rv.Text()},
		{Name: "request-all", Kind: "request", Fields: requestFields(q1), Hex: hex.EncodeToString(q1.Bytes()), Text: q1.Text()},
		{Name: "request-items", Kind: "request", Fields: requestFields(q2), Hex: hex.EncodeToString(q2.Bytes()), Text: q2.Text()},
	}

	gb := g1.Bytes()
	typo := []byte(g1.Text())
	i := len(PrefixGrant) + 10
	if typo[i] == 'A' {
		typo[i] = 'B'
	} else {
		typo[i] = 'A'
	}
	inv := func(name, kind string, b []byte, sentinel string) invalidVector {
		var txt string
		switch kind {
		case "grant":
			txt = encodeText(grantText, b)
		case "card":
			txt = encodeText(cardText, b)
		}
		return invalidVector{Name: name, Kind: kind, Hex: hex.EncodeToString(b), Text: txt, Error: sentinel}
	}
	vf.Invalid = []invalidVector{
		{Name: "grant-text-one-character-changed", Kind: "grant", Text: string(typo), Error: "ErrBadChecksum"},
		{Name: "grant-text-truncated", Kind: "grant", Text: g1.Text()[:len(g1.Text())-5], Error: "ErrBadChecksum"},
		{Name: "grant-text-newer-version", Kind: "grant", Text: "medvault-grant-v2:" + g1.Text()[len(PrefixGrant):], Error: "ErrUnsupportedVersion"},
		inv("grant-binary-version-2", "grant", mutate(gb, func(b []byte) []byte { b[3] = 2; return b }), "ErrUnsupportedVersion"),
		inv("grant-signed-by-another-key", "grant", resign(gb, DomainGrant, stranger), "ErrBadSignature"),
		inv("grant-wrong-domain", "grant", resign(gb, DomainRevoke, patient), "ErrBadSignature"),
		inv("grant-truncated", "grant", gb[:len(gb)-1], "ErrMalformed"),
		inv("grant-trailing-byte", "grant", append(bytes.Clone(gb), 0), "ErrMalformed"),
		inv("grant-unknown-purpose", "grant", resign(mutate(gb, func(b []byte) []byte { b[124] = 0xfe; return b }), DomainGrant, patient), "ErrUnknownPurpose"),
		inv("grant-unknown-category-bit", "grant", resign(mutate(gb, func(b []byte) []byte { b[127] = 0x80; return b }), DomainGrant, patient), "ErrUnknownCategory"),
		inv("grant-unknown-label-bit", "grant", resign(mutate(gb, func(b []byte) []byte { b[125] = 0x80; return b }), DomainGrant, patient), "ErrUnknownLabel"),
		inv("grant-expiry-before-not-before", "grant", resign(mutate(gb, func(b []byte) []byte { copy(b[116:124], b[108:116]); return b }), DomainGrant, patient), "ErrMalformed"),
		inv("card-signed-by-another-key", "card", resign(card.Bytes(), DomainCard, stranger), "ErrBadSignature"),
		inv("card-bad-role", "card", resign(mutate(card.Bytes(), func(b []byte) []byte { b[68] = 9; return b }), DomainCard, patient), "ErrMalformed"),
	}
	return vf
}

func TestVectors(t *testing.T) {
	vf := buildVectors(t)
	want, err := json.MarshalIndent(vf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.WriteFile(vectorsPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("%v (run go test -run TestVectors -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what the code produces: the v1 encoding changed (or run -update if intended)", vectorsPath)
	}
}

// TestVectorFile checks the vector file on its own terms: every valid
// vector decodes from hex and from text to the fields it lists and encodes
// back to the same bytes; every invalid one fails with its sentinel.
func TestVectorFile(t *testing.T) {
	raw, err := os.ReadFile(filepath.FromSlash(vectorsPath))
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	if vf.Keys["patient_id"] != patient.ID().String() || vf.Keys["age_recipient"] != testRecipient().String() {
		t.Fatal("vector keys do not match the fixed seeds")
	}
	for _, v := range vf.Valid {
		t.Run(v.Name, func(t *testing.T) {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			var fields, fieldsText map[string]string
			var bin []byte
			var txt string
			switch v.Kind {
			case "card":
				c, err := DecodeCard(b)
				if err != nil {
					t.Fatal(err)
				}
				c2, err := ParseCard(v.Text)
				if err != nil {
					t.Fatal(err)
				}
				fields, fieldsText, bin, txt = cardFields(c), cardFields(c2), c.Bytes(), EncodeCard(c)
			case "grant":
				g, err := DecodeGrant(b)
				if err != nil {
					t.Fatal(err)
				}
				g2, err := ParseGrant(v.Text)
				if err != nil {
					t.Fatal(err)
				}
				if g.ID().String() != v.ID {
					t.Errorf("grant ID %s, vector says %s", g.ID(), v.ID)
				}
				fields, fieldsText, bin, txt = grantFields(g), grantFields(g2), g.Bytes(), g.Text()
			case "revocation":
				r, err := DecodeRevocation(b)
				if err != nil {
					t.Fatal(err)
				}
				r2, err := ParseRevocation(v.Text)
				if err != nil {
					t.Fatal(err)
				}
				fields, fieldsText, bin, txt = revocationFields(r), revocationFields(r2), r.Bytes(), r.Text()
			case "request":
				r, err := DecodeRequest(b)
				if err != nil {
					t.Fatal(err)
				}
				r2, err := ParseRequest(v.Text)
				if err != nil {
					t.Fatal(err)
				}
				fields, fieldsText, bin, txt = requestFields(r), requestFields(r2), r.Bytes(), r.Text()
			default:
				t.Fatalf("unknown kind %q", v.Kind)
			}
			if !bytes.Equal(bin, b) || txt != v.Text {
				t.Error("re-encoding does not give the vector's bytes")
			}
			for k, want := range v.Fields {
				if fields[k] != want || fieldsText[k] != want {
					t.Errorf("field %s = %q (text: %q), vector says %q", k, fields[k], fieldsText[k], want)
				}
			}
			if len(fields) != len(v.Fields) {
				t.Errorf("decoded %d fields, vector lists %d", len(fields), len(v.Fields))
			}
		})
	}
	for _, v := range vf.Invalid {
		t.Run(v.Name, func(t *testing.T) {
			want := sentinels[v.Error]
			if want == nil {
				t.Fatalf("unknown sentinel %q", v.Error)
			}
			check := func(form string, err error) {
				t.Helper()
				if !errors.Is(err, want) {
					t.Errorf("%s: got %v, want %s", form, err, v.Error)
				}
			}
			if v.Hex != "" {
				b, err := hex.DecodeString(v.Hex)
				if err != nil {
					t.Fatal(err)
				}
				switch v.Kind {
				case "grant":
					_, err = DecodeGrant(b)
				case "card":
					_, err = DecodeCard(b)
				}
				check("binary", err)
			}
			if v.Text != "" {
				var err error
				switch v.Kind {
				case "grant":
					_, err = ParseGrant(v.Text)
				case "card":
					_, err = ParseCard(v.Text)
				}
				check("text", err)
			}
		})
	}
}

// TestSpecExample keeps TOKEN.md's worked example in step with the vectors.
func TestSpecExample(t *testing.T) {
	spec, err := os.ReadFile("TOKEN.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range buildVectors(t).Valid {
		if v.Name != "grant-labs-30d" {
			continue
		}
		if !bytes.Contains(spec, []byte(v.Text)) || !bytes.Contains(spec, []byte(v.ID)) {
			t.Fatal("TOKEN.md's example grant differs from vector grant-labs-30d")
		}
		b, _ := hex.DecodeString(v.Hex)
		if !bytes.Contains(spec, []byte(hex.EncodeToString(b[len(b)-sigLen:len(b)-32]))) {
			t.Fatal("TOKEN.md's example signature differs from the vector")
		}
		return
	}
	t.Fatal("vector grant-labs-30d missing")
}
