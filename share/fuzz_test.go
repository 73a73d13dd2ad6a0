package share

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/record"
)

// seedsOf adds the vectors of one kind, binary or text, to a fuzz corpus,
// with a few damaged variants.
func seedsOf(f *testing.F, kind string, text bool) {
	vf := buildVectors(f)
	for _, v := range vf.Valid {
		if v.Kind != kind {
			continue
		}
		if text {
			f.Add([]byte(v.Text))
			f.Add([]byte(v.Text[:len(v.Text)/2]))
			f.Add([]byte(" " + v.Text + "\n"))
			continue
		}
		b, _ := hex.DecodeString(v.Hex)
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append(bytes.Clone(b), 0))
		f.Add(b[:len(b)-sigLen])
	}
	for _, v := range vf.Invalid {
		if v.Kind != kind {
			continue
		}
		if text && v.Text != "" {
			f.Add([]byte(v.Text))
		}
		if !text && v.Hex != "" {
			b, _ := hex.DecodeString(v.Hex)
			f.Add(b)
		}
	}
	f.Add([]byte{})
}

// roundTrip checks that a structurally valid input re-encodes to itself.
func roundTrip(t *testing.T, in, body []byte) {
	t.Helper()
	if len(in) < sigLen || !bytes.Equal(append(bytes.Clone(body), in[len(in)-sigLen:]...), in) {
		t.Fatalf("decode then encode changed the bytes:\n in  %x\n out %x", in, body)
	}
}

// textRoundTrip checks a text form that parsed re-encodes to its
// whitespace-free input.
func textRoundTrip(t *testing.T, k textKind, in string) {
	t.Helper()
	bin, err := decodeText(k, in)
	if err != nil {
		return
	}
	if got := encodeText(k, bin); got != normalizeText(in) {
		t.Fatalf("text round trip: %q != %q", got, normalizeText(in))
	}
}

func FuzzDecodeGrant(f *testing.F) {
	seedsOf(f, "grant", false)
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := decodeGrant(b, false); err == nil {
			roundTrip(t, b, g.encodeBody())
			_ = g.Covers(RecordInfo{Category: record.Labs, Labels: []record.Label{record.MH}})
		}
		if g, err := DecodeGrant(b); err == nil && !bytes.Equal(g.Bytes(), b) {
			t.Fatal("verified grant changed bytes")
		}
	})
}

func FuzzParseGrant(f *testing.F) {
	seedsOf(f, "grant", true)
	f.Fuzz(func(t *testing.T, s []byte) {
		textRoundTrip(t, grantText, string(s))
		if g, err := ParseGrant(string(s)); err == nil && g.Text() != normalizeText(string(s)) {
			t.Fatal("grant text changed")
		}
	})
}

func FuzzDecodeCard(f *testing.F) {
	seedsOf(f, "card", false)
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := decodeCard(b, false); err == nil {
			roundTrip(t, b, c.encodeBody())
		}
		if c, err := DecodeCard(b); err == nil {
			if !bytes.Equal(c.Bytes(), b) {
				t.Fatal("verified card changed bytes")
			}
			_ = CheckPin(c, c)
		}
	})
}

func FuzzParseCard(f *testing.F) {
	seedsOf(f, "card", true)
	f.Fuzz(func(t *testing.T, s []byte) {
		textRoundTrip(t, cardText, string(s))
		if c, err := ParseCard(string(s)); err == nil && EncodeCard(c) != normalizeText(string(s)) {
			t.Fatal("card text changed")
		}
	})
}

func FuzzDecodeRevocation(f *testing.F) {
	seedsOf(f, "revocation", false)
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRevocation(b, false); err == nil {
			roundTrip(t, b, r.encodeBody())
		}
		if r, err := DecodeRevocation(b); err == nil && !bytes.Equal(r.Bytes(), b) {
			t.Fatal("verified revocation changed bytes")
		}
	})
}

func FuzzParseRevocation(f *testing.F) {
	seedsOf(f, "revocation", true)
	f.Fuzz(func(t *testing.T, s []byte) {
		textRoundTrip(t, revokeText, string(s))
		if r, err := ParseRevocation(string(s)); err == nil && r.Text() != normalizeText(string(s)) {
			t.Fatal("revocation text changed")
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	seedsOf(f, "request", false)
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRequest(b, false); err == nil {
			roundTrip(t, b, r.encodeBody())
		}
		if r, err := DecodeRequest(b); err == nil && !bytes.Equal(r.Bytes(), b) {
			t.Fatal("verified request changed bytes")
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	seedsOf(f, "request", true)
	f.Fuzz(func(t *testing.T, s []byte) {
		textRoundTrip(t, requestText, string(s))
		if r, err := ParseRequest(string(s)); err == nil && r.Text() != normalizeText(string(s)) {
			t.Fatal("request text changed")
		}
	})
}

// FuzzDecide feeds structurally valid but unverified grants and requests
// to Decide: it never panics, and never allows what a forged signature
// carries.
func FuzzDecide(f *testing.F) {
	g := mustGrant(f, baseParams())
	r := mustRequest(f, provider, RequestParams{Grant: g.ID(), Items: []record.ID{recLab.ID, recLabMH.ID}}, t0)
	f.Add(g.Bytes(), r.Bytes())
	f.Add(resign(g.Bytes(), DomainGrant, stranger), r.Bytes())
	f.Add(g.Bytes(), resign(r.Bytes(), DomainRequest, stranger))
	m := newTestState()
	f.Fuzz(func(t *testing.T, gb, rb []byte) {
		g, err1 := decodeGrant(gb, false)
		r, err2 := decodeRequest(rb, false)
		if err1 != nil || err2 != nil {
			return
		}
		d := Decide(g, r, provider.ID(), t0.Add(time.Minute), m.State())
		if d.Allowed {
			if _, err := DecodeGrant(gb); err != nil {
				t.Fatalf("allowed with a grant that does not verify: %v", err)
			}
			if _, err := DecodeRequest(rb); err != nil {
				t.Fatalf("allowed with a request that does not verify: %v", err)
			}
		}
	})
}

func FuzzParseAgeRecipient(f *testing.F) {
	f.Add(testRecipient().String())
	f.Add("age1")
	f.Add("AGE1" + testRecipient().String()[4:])
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseAgeRecipient(s)
		if err != nil {
			return
		}
		r2, err := ParseAgeRecipient(r.String())
		if err != nil || r2 != r {
			t.Fatalf("round trip of %q failed", s)
		}
	})
}

func FuzzParseScope(f *testing.F) {
	f.Add("labs,vitals,emergency-summary")
	f.Add(recBill.ID.String() + ",x")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScope(s)
		if err != nil {
			return
		}
		sc2, err := ParseScope(sc.String())
		if err != nil || sc2.String() != sc.String() {
			t.Fatalf("scope round trip: %q", s)
		}
	})
}
