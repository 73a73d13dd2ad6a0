package share

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

func TestIssueGrantParams(t *testing.T) {
	tests := []struct {
		name string
		edit func(*GrantParams)
		want error // nil: valid
	}{
		{"valid", func(p *GrantParams) {}, nil},
		{"expiry missing", func(p *GrantParams) { p.Expiry = time.Time{} }, ErrMissingExpiry},
		{"expiry in the past", func(p *GrantParams) { p.Expiry = t0.Add(-time.Hour) }, ErrExpired},
		{"expiry now", func(p *GrantParams) { p.Expiry = t0 }, ErrExpired},
		{"expiry sub-second after now", func(p *GrantParams) { p.Expiry = t0.Add(500 * time.Millisecond) }, ErrInvalidParams},
		{"expiry at default maximum", func(p *GrantParams) { p.Expiry = t0.Add(DefaultMaxLifetime) }, nil},
		{"expiry beyond default maximum", func(p *GrantParams) { p.Expiry = t0.Add(DefaultMaxLifetime + time.Second) }, ErrLifetimeTooLong},
		{"expiry within configured maximum", func(p *GrantParams) {
			p.MaxLifetime = 365 * 24 * time.Hour
			p.Expiry = t0.Add(300 * 24 * time.Hour)
		}, nil},
		{"expiry beyond configured maximum", func(p *GrantParams) {
			p.MaxLifetime = time.Hour
			p.Expiry = t0.Add(2 * time.Hour)
		}, ErrLifetimeTooLong},
		{"maximum beyond limit", func(p *GrantParams) { p.MaxLifetime = LimitMaxLifetime + 1 }, ErrInvalidParams},
		{"negative maximum", func(p *GrantParams) { p.MaxLifetime = -1 }, ErrInvalidParams},
		{"empty scope", func(p *GrantParams) { p.Scope = Scope{} }, ErrEmptyScope},
		{"emergency only", func(p *GrantParams) { p.Scope = Scope{EmergencySummary: true} }, nil},
		{"record only", func(p *GrantParams) { p.Scope = Scope{Records: []record.ID{rid("a")}} }, nil},
		{"unknown category", func(p *GrantParams) { p.Scope.Categories = []record.Category{"lab"} }, ErrUnknownCategory},
		{"unknown label", func(p *GrantParams) { p.Labels = []record.Label{"XYZ"} }, ErrUnknownLabel},
		{"lower-case label", func(p *GrantParams) { p.Labels = []record.Label{"mh"} }, ErrUnknownLabel},
		{"unknown purpose", func(p *GrantParams) { p.Purpose = "FUN" }, ErrUnknownPurpose},
		{"missing purpose", func(p *GrantParams) { p.Purpose = "" }, ErrUnknownPurpose},
		{"missing audience", func(p *GrantParams) { p.Audience = identity.ID{} }, ErrInvalidParams},
		{"audience is issuer", func(p *GrantParams) { p.Audience = patient.ID() }, ErrInvalidParams},
		{"missing vault", func(p *GrantParams) { p.Vault = VaultID{} }, ErrInvalidParams},
		{"not-before in future", func(p *GrantParams) { p.NotBefore = t0.Add(time.Hour) }, nil},
		{"not-before before issue", func(p *GrantParams) { p.NotBefore = t0.Add(-time.Hour) }, ErrInvalidParams},
		{"not-before at expiry", func(p *GrantParams) { p.NotBefore = p.Expiry }, ErrInvalidParams},
		{"too many records", func(p *GrantParams) {
			for i := range MaxGrantRecords + 1 {
				p.Scope.Records = append(p.Scope.Records, rid(string(rune('a'+i%26))+strings.Repeat("x", i)))
			}
		}, ErrInvalidParams},
		{"max records", func(p *GrantParams) {
			for i := range MaxGrantRecords {
				p.Scope.Records = append(p.Scope.Records, rid(strings.Repeat("x", i)))
			}
		}, nil},
		{"duplicate records collapse", func(p *GrantParams) { p.Scope.Records = []record.ID{rid("a"), rid("a")} }, nil},
		{"hint with space", func(p *GrantParams) { p.Hints = []string{"/ip4/1.2.3.4 /tcp/1"} }, ErrInvalidParams},
		{"empty hint", func(p *GrantParams) { p.Hints = []string{""} }, ErrInvalidParams},
		{"long hint", func(p *GrantParams) { p.Hints = []string{strings.Repeat("a", MaxHintLen+1)} }, ErrInvalidParams},
		{"duplicate hint", func(p *GrantParams) { p.Hints = []string{"/a", "/a"} }, ErrInvalidParams},
		{"too many hints", func(p *GrantParams) { p.Hints = []string{"/1", "/2", "/3", "/4", "/5", "/6", "/7", "/8", "/9"} }, ErrInvalidParams},
		{"max hints", func(p *GrantParams) {
			for i := range MaxHints {
				p.Hints = append(p.Hints, "/"+strings.Repeat(string(rune('a'+i)), MaxHintLen-1))
			}
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := baseParams()
			tc.edit(&p)
			g, err := IssueGrant(patient, p, t0)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("IssueGrant: %v", err)
				}
				// Every issued grant decodes to itself.
				g2, err := DecodeGrant(g.Bytes())
				if err != nil {
					t.Fatalf("DecodeGrant: %v", err)
				}
				if !bytes.Equal(g2.Bytes(), g.Bytes()) || g2.ID() != g.ID() {
					t.Fatal("decode changed the grant")
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if g != nil {
				t.Fatal("grant returned with an error")
			}
		})
	}
}

func TestIssueGrantSigner(t *testing.T) {
	if _, err := IssueGrant(nil, baseParams(), t0); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("nil signer: %v", err)
	}
	if _, err := IssueGrant(wrongSigner{patient, stranger}, baseParams(), t0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("mismatched signer: %v", err)
	}
	if _, err := IssueGrant(patient, baseParams(), time.Unix(0, 0)); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("time zero: %v", err)
	}
}

func TestGrantFields(t *testing.T) {
	p := baseParams()
	p.Scope = Scope{Categories: []record.Category{record.Vitals, record.Labs, record.Labs}, Records: []record.ID{rid("b"), rid("a"), rid("b")}, EmergencySummary: true}
	p.Labels = []record.Label{record.SDV, record.MH}
	p.NotBefore = t0.Add(90*time.Minute + 300*time.Millisecond)
	p.Expiry = t0.Add(48*time.Hour + 999*time.Millisecond)
	p.Hints = []string{"/ip4/127.0.0.1/tcp/1"}
	g, err := IssueGrant(patient, p, t0.Add(700*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	sc := g.Scope()
	wantIDs := []record.ID{rid("a"), rid("b")}
	sortIDs(wantIDs)
	switch {
	case g.Issuer() != patient.ID(), g.Audience() != provider.ID(), g.Vault() != testVault, g.Nonce() != fixedNonce(0xaa):
		t.Error("identities")
	case !g.Issued().Equal(t0):
		t.Errorf("issued %v, want truncated to %v", g.Issued(), t0)
	case !g.NotBefore().Equal(t0.Add(90*time.Minute + time.Second)):
		t.Errorf("not-before %v, want rounded up", g.NotBefore())
	case !g.Expiry().Equal(t0.Add(48 * time.Hour)):
		t.Errorf("expiry %v, want truncated", g.Expiry())
	case g.Purpose() != Treatment:
		t.Error("purpose")
	case !slices.Equal(g.Labels(), []record.Label{record.MH, record.SDV}):
		t.Errorf("labels %v", g.Labels())
	case !slices.Equal(sc.Categories, []record.Category{record.Vitals, record.Labs}):
		t.Errorf("categories %v", sc.Categories)
	case !slices.Equal(sc.Records, wantIDs) || !sc.EmergencySummary:
		t.Errorf("scope %v", sc)
	case !slices.Equal(g.Hints(), p.Hints):
		t.Error("hints")
	case sc.String() != "vitals,labs,emergency-summary,"+wantIDs[0].String()+","+wantIDs[1].String():
		t.Errorf("scope string %q", sc.String())
	}
	// GrantID is SHA-256 of the body: the token without its signature.
	b := g.Bytes()
	if g.ID() != sha256.Sum256(b[:len(b)-sigLen]) {
		t.Error("grant ID is not SHA-256 of the body")
	}
	// Returned slices are copies.
	g.Bytes()[0] = 'X'
	g.Hints()[0] = "x"
	g.Scope().Records[0] = record.ID{}
	if g2, err := DecodeGrant(g.Bytes()); err != nil || g2.ID() != g.ID() || g.Hints()[0] != p.Hints[0] {
		t.Error("accessors expose internal state")
	}
	// Random nonces differ.
	p = baseParams()
	p.Nonce = Nonce{}
	a, b2 := mustGrant(t, p), mustGrant(t, p)
	if a.Nonce().IsZero() || a.Nonce() == b2.Nonce() || a.ID() == b2.ID() {
		t.Error("random nonce")
	}
}

// TestGrantNonCanonical edits a valid grant's body, re-signs it with the
// issuer's key, and expects each edit to be refused by the structural
// checks (not by the signature).
func TestGrantNonCanonical(t *testing.T) {
	p := baseParams()
	p.Scope.Records = []record.ID{rid("a"), rid("b")}
	p.Hints = []string{"/a", "/b"}
	g := mustGrant(t, p)
	gb := g.Bytes()
	recOff := grantFixedLen
	hintOff := recOff + 32
	tests := []struct {
		name string
		edit func([]byte) []byte
		want error
	}{
		{"unsorted records", func(b []byte) []byte {
			var x [16]byte
			copy(x[:], b[recOff:recOff+16])
			copy(b[recOff:], b[recOff+16:recOff+32])
			copy(b[recOff+16:], x[:])
			return b
		}, ErrMalformed},
		{"duplicate records", func(b []byte) []byte { copy(b[recOff+16:recOff+32], b[recOff:recOff+16]); return b }, ErrMalformed},
		{"record count too high", func(b []byte) []byte { b[131], b[132] = 0xff, 0xff; return b }, ErrMalformed},
		{"record count past end", func(b []byte) []byte { b[132] = 100; return b }, ErrMalformed},
		{"unknown scope flag", func(b []byte) []byte { b[126] = 0x02; return b }, ErrMalformed},
		{"purpose code zero", func(b []byte) []byte { b[124] = 0; return b }, ErrUnknownPurpose},
		{"time zero", func(b []byte) []byte { clear(b[100:108]); return b }, ErrMalformed},
		{"time beyond 9999", func(b []byte) []byte { b[116] = 0xff; return b }, ErrMalformed},
		{"not-before before issued", func(b []byte) []byte { b[107]--; copy(b[108:116], b[100:108]); b[107]++; b[115]--; return b }, ErrMalformed},
		{"audience is issuer", func(b []byte) []byte { copy(b[36:68], b[4:36]); return b }, ErrMalformed},
		{"zero vault", func(b []byte) []byte { clear(b[68:84]); return b }, ErrMalformed},
		{"empty scope", func(b []byte) []byte {
			b[127], b[128], b[129], b[130] = 0, 0, 0, 0
			b[131], b[132] = 0, 0
			return append(b[:recOff], b[hintOff:]...)
		}, ErrMalformed},
		{"duplicate hints", func(b []byte) []byte { b[hintOff+4] = 'a'; return b }, ErrMalformed},
		{"hint with control byte", func(b []byte) []byte { b[hintOff+3] = '\n'; return b }, ErrMalformed},
		{"empty hint", func(b []byte) []byte { b[hintOff+1] = 0; return b }, ErrMalformed},
		{"too many hints", func(b []byte) []byte { b[hintOff] = MaxHints + 1; return b }, ErrMalformed},
		{"wrong tag", func(b []byte) []byte { b[0] = 'x'; return b }, ErrMalformed},
		{"revocation tag", func(b []byte) []byte { b[2] = 'r'; return b }, ErrMalformed},
		{"version 0", func(b []byte) []byte { b[3] = 0; return b }, ErrUnsupportedVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.edit(bytes.Clone(gb[:len(gb)-sigLen]))
			tok := append(body, patient.Sign(signedMessage(DomainGrant, body))...)
			_, err := DecodeGrant(tok)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Every truncation and every appended byte is refused.
	for n := range len(gb) {
		if _, err := DecodeGrant(gb[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, err := DecodeGrant(append(bytes.Clone(gb), 1, 2, 3)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing: %v", err)
	}
	// Every flipped bit is refused (signature or structure).
	for i := range len(gb) * 8 {
		b := bytes.Clone(gb)
		b[i/8] ^= 1 << (i % 8)
		if _, err := DecodeGrant(b); err == nil {
			t.Fatalf("bit %d flipped: accepted", i)
		}
	}
}

func TestRevocation(t *testing.T) {
	g := mustGrant(t, baseParams())
	rv, err := Revoke(patient, g.ID(), t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := rv.Check(g); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if rv.Issuer() != patient.ID() || rv.Grant() != g.ID() || !rv.Time().Equal(t0.Add(time.Minute)) {
		t.Fatal("fields")
	}
	rv2, err := ParseRevocation(rv.Text())
	if err != nil || !bytes.Equal(rv2.Bytes(), rv.Bytes()) {
		t.Fatalf("text round trip: %v", err)
	}
	// Signed by someone else: valid token, does not apply.
	other, err := Revoke(stranger, g.ID(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Check(g); !errors.Is(err, ErrWrongIssuer) {
		t.Fatalf("stranger's revocation: %v", err)
	}
	g2 := mustGrant(t, GrantParams{Audience: provider.ID(), Vault: testVault, Scope: Scope{EmergencySummary: true}, Purpose: EmergencyTreatment, Expiry: t0.Add(time.Hour)})
	if err := rv.Check(g2); !errors.Is(err, ErrGrantMismatch) {
		t.Fatalf("other grant: %v", err)
	}
	if err := rv.Check(nil); !errors.Is(err, ErrInvalidParams) {
		t.Fatal(err)
	}
	if _, err := Revoke(patient, GrantID{}, t0); !errors.Is(err, ErrInvalidParams) {
		t.Fatal(err)
	}
	if _, err := Revoke(wrongSigner{patient, stranger}, g.ID(), t0); !errors.Is(err, ErrBadSignature) {
		t.Fatal(err)
	}
	b := rv.Bytes()
	for n := range len(b) {
		if _, err := DecodeRevocation(b[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	for _, tc := range []struct {
		b    []byte
		want error
	}{
		{append(bytes.Clone(b), 0), ErrMalformed},
		{resign(mutate(b, func(b []byte) []byte { b[3] = 2; return b }), DomainRevoke, patient), ErrUnsupportedVersion},
		{append(mutate(b, func(b []byte) []byte { b[3] = 2; return b }), 1, 2, 3), ErrUnsupportedVersion},
		{resign(b, DomainRevoke, stranger), ErrBadSignature},
		{resign(b, DomainGrant, patient), ErrBadSignature},
		{resign(mutate(b, func(b []byte) []byte { clear(b[36:68]); return b }), DomainRevoke, patient), ErrMalformed},
	} {
		if _, err := DecodeRevocation(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("got %v, want %v", err, tc.want)
		}
	}
}

func TestRequest(t *testing.T) {
	g := mustGrant(t, baseParams())
	tests := []struct {
		name string
		p    RequestParams
		want error
	}{
		{"all", RequestParams{Grant: g.ID(), All: true}, nil},
		{"items", RequestParams{Grant: g.ID(), Items: []record.ID{rid("b"), rid("a"), rid("a")}}, nil},
		{"all and items", RequestParams{Grant: g.ID(), All: true, Items: []record.ID{rid("a")}}, ErrInvalidParams},
		{"nothing", RequestParams{Grant: g.ID()}, ErrInvalidParams},
		{"no grant", RequestParams{All: true}, ErrInvalidParams},
		{"too many items", RequestParams{Grant: g.ID(), Items: manyIDs(MaxRequestItems + 1)}, ErrInvalidParams},
		{"max items", RequestParams{Grant: g.ID(), Items: manyIDs(MaxRequestItems)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRequest(provider, tc.p, t0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			r2, err := DecodeRequest(r.Bytes())
			if err != nil || !bytes.Equal(r2.Bytes(), r.Bytes()) {
				t.Fatalf("round trip: %v", err)
			}
			r3, err := ParseRequest(r.Text())
			if err != nil || !bytes.Equal(r3.Bytes(), r.Bytes()) {
				t.Fatalf("text round trip: %v", err)
			}
			if !slices.IsSortedFunc(r.Items(), func(a, b record.ID) int { return bytes.Compare(a[:], b[:]) }) {
				t.Fatal("items not sorted")
			}
		})
	}
	r := mustRequest(t, provider, RequestParams{Grant: g.ID(), Items: []record.ID{rid("a"), rid("b")}}, t0)
	b := r.Bytes()
	for n := range len(b) {
		if _, err := DecodeRequest(b[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"trailing", append(bytes.Clone(b), 0), ErrMalformed},
		{"other key", resign(b, DomainRequest, stranger), ErrBadSignature},
		{"unsorted", resign(mutate(b, func(b []byte) []byte { b[95], b[111] = b[111], b[95]; return b }), DomainRequest, provider), ErrMalformed},
		{"all with items", resign(mutate(b, func(b []byte) []byte { b[92] = 1; return b }), DomainRequest, provider), ErrMalformed},
		{"unknown flag", resign(mutate(b, func(b []byte) []byte { b[92] = 2; return b }), DomainRequest, provider), ErrMalformed},
		{"version 9", resign(mutate(b, func(b []byte) []byte { b[3] = 9; return b }), DomainRequest, provider), ErrUnsupportedVersion},
	} {
		if _, err := DecodeRequest(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func manyIDs(n int) []record.ID {
	ids := make([]record.ID, n)
	for i := range ids {
		ids[i][0], ids[i][1] = byte(i>>8), byte(i)
		ids[i][15] = 1
	}
	return ids
}

func TestIDsParse(t *testing.T) {
	g := mustGrant(t, baseParams())
	if id, err := ParseGrantID(g.ID().String()); err != nil || id != g.ID() {
		t.Fatal(err)
	}
	if v, err := ParseVaultID(testVault.String()); err != nil || v != testVault {
		t.Fatal(err)
	}
	for _, s := range []string{"", "zz", strings.Repeat("g", 64), g.ID().String()[:63]} {
		if _, err := ParseGrantID(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseGrantID(%q): %v", s, err)
		}
	}
}

func TestPurposes(t *testing.T) {
	seen := map[byte]bool{}
	for _, p := range Purposes() {
		if p.code == 0 || seen[p.code] || p.Description == "" || p.Name == "" {
			t.Errorf("purpose %s: bad table entry", p.Purpose)
		}
		seen[p.code] = true
		if got, err := ParsePurpose(strings.ToLower(string(p.Purpose))); err != nil || got != p.Purpose {
			t.Errorf("ParsePurpose(%s): %v", p.Purpose, err)
		}
		if p.Purpose.Describe() != p.Description {
			t.Error("Describe")
		}
	}
	for _, want := range []Purpose{"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "CLINTRCH", "PATRQT", "FAMRQT", "PWATRNY", "PUBHLTH", "COC"} {
		if !want.Valid() {
			t.Errorf("%s missing", want)
		}
	}
	if _, err := ParsePurpose("marketing"); !errors.Is(err, ErrUnknownPurpose) {
		t.Error(err)
	}
}
