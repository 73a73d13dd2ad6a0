package share

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"filippo.io/age"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

func openVault(t testing.TB, name string, role identity.Role) *vault.Vault {
	t.Helper()
	id, err := identity.Generate(name, role)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := vault.Create(dir, id, vault.Options{}); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(dir, id, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func cardOf(t testing.TB, v *vault.Vault) *Card {
	id := v.Owner()
	r, _ := ParseAgeRecipient(id.Recipient().String())
	c, err := NewCard(id, CardParams{Recipient: r, Name: id.Name(), Role: id.Role()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exchange runs one request between provider and patient over an in-memory
// connection, as the libp2p stream would carry it, with remote as the
// authenticated peer the patient sees.
func exchange(t *testing.T, patient, provider *vault.Vault, remote identity.ID, g *Grant) (*FetchResult, error) {
	return exchangeAt(t, patient, provider, remote, g, time.Now())
}

// exchangeAt is exchange with both sides' clocks reading now.
func exchangeAt(t *testing.T, patient, provider *vault.Vault, remote identity.ID, g *Grant, now time.Time) (*FetchResult, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	served := make(chan error, 1)
	go func() {
		_, err := ServeConn(patient, frame.NewConn(a, nil), remote, func() time.Time { return now })
		served <- err
		a.Close()
	}()
	res, err := FetchConn(provider, frame.NewConn(b, nil), g, now, nil)
	b.Close()
	<-served
	return res, err
}

func TestShareProtocol(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	lab, _ := patient.Add(strings.NewReader("HbA1c 6.1%"), vault.NewRecord{Category: record.Labs, Title: "A1c"})
	big, _ := patient.Add(bytes.NewReader(bytes.Repeat([]byte("x"), 3<<20)), vault.NewRecord{Category: record.Labs, Title: "big"})
	patient.Add(strings.NewReader("lithium"), vault.NewRecord{Category: record.Labs, Title: "MH lab", Labels: []record.Label{record.MH}})
	patient.Add(strings.NewReader("invoice"), vault.NewRecord{Category: record.Billing, Title: "bill"})
	g := pinAndGrantLabs(t, patient, provider)
	res, err := exchange(t, patient, provider, provider.Owner().ID(), g)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 2 || res.Entry.Action != ledger.ActionServe {
		t.Fatalf("fetched %d records (want the 2 unlabelled labs), entry %v", res.Records, res.Entry.Action)
	}
	got, _ := provider.List(vault.Filter{})
	if len(got) != 2 {
		t.Fatalf("provider holds %d records", len(got))
	}
	for _, m := range got {
		if m.From != patient.Owner().ID() || m.Category != record.Labs {
			t.Fatalf("provenance: %+v", m)
		}
		var buf bytes.Buffer
		if _, err := provider.Get(m.ID, &buf); err != nil {
			t.Fatalf("provider cannot read %s: %v", m.Title, err)
		}
		if m.SourceID == lab.ID && buf.String() != "HbA1c 6.1%" || m.SourceID == big.ID && buf.Len() != 3<<20 {
			t.Fatalf("content of %s differs", m.Title)
		}
	}
	// Incremental: a second fetch sends nothing new but is logged.
	res, err = exchange(t, patient, provider, provider.Owner().ID(), g)
	if err != nil || res.Records != 0 {
		t.Fatalf("second fetch: %+v %v", res, err)
	}
	// A peer that is not the audience is refused, and logged.
	stranger := openVault(t, "Eve", identity.Provider)
	if _, err := exchange(t, patient, stranger, stranger.Owner().ID(), g); !errors.Is(err, ErrWrongAudience) && !errors.Is(err, ErrBadSignature) && err == nil {
		t.Fatalf("stranger: %v", err)
	}
	// Revocation takes effect on the very next request.
	issued, _ := FindIssued(patient, g.ID().String())
	if _, _, err := RevokeAndStore(patient, issued, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(t, patient, provider, provider.Owner().ID(), g); !errors.Is(err, ErrRevoked) {
		t.Fatalf("fetch after revoke: %v", err)
	}
	// The patient's ledger holds every request, served or denied, and
	// verifies. (The second fetch's held entry says what it did not get
	// again: TestFetchAgainLogsHeld.)
	var served, denied int
	patient.Entries(0, func(i int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionServe && e.Reason != vault.ServeHeld {
			if e.Outcome == ledger.OutcomeOK {
				served++
			} else {
				denied++
			}
		}
		return nil
	})
	if served != 2 || denied != 2 {
		t.Fatalf("ledger: %d served, %d denied", served, denied)
	}
	for _, v := range []*vault.Vault{patient, provider} {
		if rep, err := v.Verify(true); err != nil {
			t.Fatalf("verify: %v %v", err, rep.Problems)
		}
	}
	// The provider kept a receipt per request.
	if rs, _ := provider.Objects(vault.KindReceipt); len(rs) != 3 {
		t.Fatalf("provider holds %d receipts, want 3", len(rs))
	}
}

func FuzzDecodeReceipt(f *testing.F) {
	f.Add(encodeReceipt(&vault.Receipt{Checkpoint: []byte("cp"), Index: 3, Leaf: []byte("leaf"), Proof: []byte("p")}))
	f.Add([]byte{0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReceipt(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeReceipt(r), b) {
			t.Fatal("receipt did not round-trip")
		}
	})
}

// cutAfter fails the provider's reads after n chunk frames, as a cut
// connection would.
type cutAfter struct {
	Framer
	n int
}

func (c *cutAfter) ReadFrame(limit int) (byte, []byte, error) {
	typ, p, err := c.Framer.ReadFrame(limit)
	if typ == frameChunk {
		if c.n == 0 {
			return 0, nil, errors.New("connection reset")
		}
		c.n--
	}
	return typ, p, err
}

// A fetch cut mid-transfer keeps the records that arrived whole, stores no
// partial one, and the next fetch resumes with the rest.
func TestFetchResumesAfterCut(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	for i := range 6 {
		patient.Add(bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 600<<10)), vault.NewRecord{Category: record.Imaging, Title: "scan"})
	}
	SaveContact(patient, "dr", cardOf(t, provider), false)
	g, _ := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Imaging}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	a, b := net.Pipe()
	go func() {
		ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now)
		a.Close()
	}()
	// Each 600 KiB record is 3 chunk frames: cut during the third record.
	res, err := FetchConn(provider, &cutAfter{Framer: frame.NewConn(b, nil), n: 7}, g, time.Now(), nil)
	b.Close()
	if err == nil || res.Records != 2 {
		t.Fatalf("cut fetch: %d records, err %v", res.Records, err)
	}
	if ms, _ := provider.List(vault.Filter{}); len(ms) != 2 {
		t.Fatalf("after the cut the provider shows %d records, want the 2 complete ones", len(ms))
	}
	res, err = exchange(t, patient, provider, provider.Owner().ID(), g)
	if err != nil || res.Records != 4 {
		t.Fatalf("resumed fetch: %+v, %v", res, err)
	}
	if rep, err := provider.Verify(true); err != nil {
		t.Fatalf("provider verify: %v %v", err, rep.Problems)
	}
}

// A replayed request (same signed bytes) is refused and logged.
func TestReplayRefused(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	patient.Add(strings.NewReader("x"), vault.NewRecord{Category: record.Labs})
	SaveContact(patient, "dr", cardOf(t, provider), false)
	g, _ := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	req, _ := NewRequest(provider.Owner(), RequestParams{Grant: g.ID(), All: true}, time.Now())
	send := func() (string, error) {
		a, b := net.Pipe()
		defer b.Close()
		go func() { ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now); a.Close() }()
		c := frame.NewConn(b, nil)
		c.WriteFrame(frameRequest, req.Bytes())
		c.WriteFrame(frameHave, nil)
		c.WriteFrame(framePartial, nil)
		c.WriteFrame(frameSeen, nil)
		c.ReadFrame(maxReceipt)
		c.ReadFrame(maxExtends)
		typ, p, err := c.ReadFrame(maxMeta)
		return string(typ) + string(p), err
	}
	if got, err := send(); err != nil || got[0] != frameMeta {
		t.Fatalf("first request: %q %v", got, err)
	}
	if got, _ := send(); got != "D"+string(ReasonNonceReused) {
		t.Fatalf("replayed request: %q", got)
	}
}

// 50 providers fetch from one patient at once: all are served.
func TestConcurrentProviders(t *testing.T) {
	if testing.Short() {
		t.Skip("50 vaults")
	}
	patient := openVault(t, "Ada", identity.Patient)
	for range 5 {
		patient.Add(bytes.NewReader(bytes.Repeat([]byte("r"), 100<<10)), vault.NewRecord{Category: record.Labs})
	}
	type prov struct {
		v *vault.Vault
		g *Grant
	}
	var ps []prov
	for i := range 50 {
		pv := openVault(t, fmt.Sprintf("Dr %d", i), identity.Provider)
		SaveContact(patient, Alias("dr"+itoa(i)), cardOf(t, pv), false)
		g, err := IssueAndStore(patient, GrantParams{Audience: pv.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
			Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, prov{pv, g})
	}
	errs := make(chan error, len(ps))
	for _, p := range ps {
		go func() {
			res, err := exchange(t, patient, p.v, p.v.Owner().ID(), p.g)
			if err == nil && res.Records != 5 {
				err = errors.New("short fetch")
			}
			errs <- err
		}()
	}
	for range ps {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func itoa(i int) string { return string(rune('a'+i/26)) + string(rune('a'+i%26)) }

// The receipt layout example in p2p/PROTOCOL.md §8.1.
func TestReceiptVector(t *testing.T) {
	got := encodeReceipt(&vault.Receipt{Checkpoint: []byte("cp"), Index: 3, Leaf: []byte("leaf"), Proof: []byte("p")})
	const want = "00000002" + "6370" + "0000000000000003" + "00000004" + "6c656166" + "70"
	if hex.EncodeToString(got) != want {
		t.Fatalf("receipt = %x, want %s", got, want)
	}
	doc, err := os.ReadFile("../p2p/PROTOCOL.md")
	if err != nil {
		t.Skip("p2p/PROTOCOL.md not found")
	}
	if !strings.Contains(string(doc), "`00000002 6370 0000000000000003 00000004 6c656166 70`") {
		t.Fatal("PROTOCOL.md's receipt example differs from the code")
	}
}

// A grant ends at its expiry, to the second: the node that decides is the
// one whose clock issued it, so the clock skew allowed for a request's time
// does not stretch it. (A grant given --expires 1s was served 20 s later.)
func TestExpiredGrantRefusedAtExpiry(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	patient.Add(strings.NewReader("HbA1c 6.1%"), vault.NewRecord{Category: record.Labs, Title: "A1c"})
	g := pinAndGrantLabs(t, patient, provider)
	for _, at := range []time.Time{g.Expiry(), g.Expiry().Add(20 * time.Second), g.Expiry().Add(ClockSkew - time.Second)} {
		res, err := exchangeAt(t, patient, provider, provider.Owner().ID(), g, at)
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("fetch %v after expiry: %v, want %v", at.Sub(g.Expiry()), err, ErrExpired)
		}
		if res != nil && res.Records != 0 {
			t.Fatalf("fetch %v after expiry got %d records", at.Sub(g.Expiry()), res.Records)
		}
	}
	if res, err := exchangeAt(t, patient, provider, provider.Owner().ID(), g, g.Expiry().Add(-time.Second)); err != nil || res.Records != 1 {
		t.Fatalf("fetch a second before expiry: %+v %v", res, err)
	}
	// The check between records (a transfer that outlives the grant)
	// applies the same window.
	for at, want := range map[time.Time]Reason{g.Expiry().Add(-time.Second): ReasonAllowed, g.Expiry(): ReasonExpired, g.Expiry().Add(20 * time.Second): ReasonExpired} {
		if r, err := grantEnded(patient, g, at); err != nil || r != want {
			t.Fatalf("grantEnded %v after expiry = %q %v, want %q", at.Sub(g.Expiry()), r, err, want)
		}
	}
}

// lateRequest moves the node's clock on once the request frame has
// arrived: a request that took its time to come in.
type lateRequest struct {
	Framer
	arrived func()
}

func (l *lateRequest) ReadFrame(limit int) (byte, []byte, error) {
	typ, p, err := l.Framer.ReadFrame(limit)
	if err == nil && typ == frameRequest {
		l.arrived()
	}
	return typ, p, err
}

// A request is decided by the node's clock once it has arrived, not when
// its stream opened: a request that comes in just after the grant's expiry
// (the request phase may last RequestTimeout) is refused, and logged, as
// expired, not logged as served and then stopped.
func TestRequestDecidedWhenItArrives(t *testing.T) {
	patient, provider, g := labsGrant(t)
	clock := g.Expiry().Add(-time.Second) // the stream opens
	a, b := net.Pipe()
	served := make(chan *Served, 1)
	go func() {
		c := &lateRequest{Framer: frame.NewConn(a, nil), arrived: func() { clock = g.Expiry().Add(time.Second) }}
		sv, _ := ServeConn(patient, c, provider.Owner().ID(), func() time.Time { return clock })
		a.Close()
		served <- sv
	}()
	res, err := FetchConn(provider, frame.NewConn(b, nil), g, g.Expiry().Add(-time.Second), nil)
	b.Close()
	sv := <-served
	if !errors.Is(err, ErrExpired) || res != nil && res.Records != 0 {
		t.Fatalf("fetch whose request arrived after the expiry: %+v %v, want %v", res, err, ErrExpired)
	}
	if sv.Reason != ReasonExpired {
		t.Fatalf("served: %+v, want %q", sv, ReasonExpired)
	}
	n, _ := patient.LedgerSize()
	patient.Entries(n-1, func(_ int64, e *ledger.Entry) error {
		if e.Action != ledger.ActionServe || e.Outcome != ledger.OutcomeDenied || e.Reason != string(ReasonExpired) {
			t.Fatalf("logged %v %v %q, want serve denied %q", e.Action, e.Outcome, e.Reason, ReasonExpired)
		}
		return nil
	})
}

type rawFrame struct {
	typ byte
	p   []byte
}

// rawExchange sends the request bytes req to the patient's node as remote,
// then empty have, partial and seen frames, and returns what the node did
// and the frames it answered with up to the end of the stream.
func rawExchange(t *testing.T, patient *vault.Vault, remote identity.ID, req []byte) (*Served, []rawFrame) {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	served := make(chan *Served, 1)
	go func() {
		sv, _ := ServeConn(patient, frame.NewConn(a, nil), remote, time.Now)
		a.Close()
		served <- sv
	}()
	c := frame.NewConn(b, nil)
	c.WriteFrame(frameRequest, req)
	c.WriteFrame(frameHave, nil)
	c.WriteFrame(framePartial, nil)
	c.WriteFrame(frameSeen, nil)
	var out []rawFrame
	for {
		typ, p, err := c.ReadFrame(maxReceipt)
		if err != nil {
			break
		}
		out = append(out, rawFrame{typ, bytes.Clone(p)})
	}
	return <-served, out
}

// The ledger entry logged for a refused request goes to the provider in
// its receipt, so it tells out-of-scope, not-found and label-excluded apart
// no more than D does: a provider asking for record IDs must not learn that
// one was labelled sensitive, or deleted.
func TestReceiptHidesWhyItemsRefused(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	mh, _ := patient.Add(strings.NewReader("lithium"), vault.NewRecord{Category: record.Labs, Title: "MH lab", Labels: []record.Label{record.MH}})
	gone, _ := patient.Add(strings.NewReader("old"), vault.NewRecord{Category: record.Notes, Title: "old note"})
	bill, _ := patient.Add(strings.NewReader("invoice"), vault.NewRecord{Category: record.Billing, Title: "bill"})
	SaveContact(patient, "dr", cardOf(t, provider), false)
	g, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}, Records: []record.ID{gone.ID}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := patient.Remove(gone.ID); err != nil {
		t.Fatal(err)
	}
	for id, full := range map[record.ID]Reason{mh.ID: ReasonLabelExcluded, gone.ID: ReasonNotFound, bill.ID: ReasonOutOfScope} {
		req, err := NewRequest(provider.Owner(), RequestParams{Grant: g.ID(), Items: []record.ID{id}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		sv, frames := rawExchange(t, patient, provider.Owner().ID(), req.Bytes())
		if sv.Reason != full {
			t.Errorf("the node reports %q for a %s record, want %q", sv.Reason, full, full)
		}
		if len(frames) != 3 || frames[0].typ != frameReceipt || frames[2].typ != frameDenied {
			t.Fatalf("%s: answered %d frames", full, len(frames))
		}
		if got := Reason(frames[2].p); got != ReasonOutOfScope {
			t.Errorf("D for a %s record reads %q", full, got)
		}
		rc, err := DecodeReceipt(frames[0].p)
		if err != nil {
			t.Fatal(err)
		}
		e, _, err := VerifyReceipt(rc, g, req)
		if err != nil {
			t.Fatal(err)
		}
		if e.Outcome != ledger.OutcomeDenied || e.Reason != string(ReasonOutOfScope) {
			t.Errorf("the receipt for a %s record logs %v %q, want denied %q", full, e.Outcome, e.Reason, ReasonOutOfScope)
		}
	}
}

// Only the audience of a grant this patient issued gets a receipt: a
// stranger probing the node would otherwise learn the ledger's size, and so
// the patient's activity, over time. Every refusal is still logged.
func TestStrangersGetNoReceipt(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	stranger := openVault(t, "Eve", identity.Provider)
	other := openVault(t, "Bob", identity.Patient)
	patient.Add(strings.NewReader("HbA1c 6.1%"), vault.NewRecord{Category: record.Labs})
	g := pinAndGrantLabs(t, patient, provider)
	revoked, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Vitals}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	issued, _ := FindIssued(patient, revoked.ID().String())
	if _, _, err := RevokeAndStore(patient, issued, time.Now()); err != nil {
		t.Fatal(err)
	}
	notMine, err := IssueGrant(other.Owner(), GrantParams{Audience: provider.Owner().ID(), Vault: VaultID(other.VaultID()),
		Scope: Scope{Categories: []record.Category{record.Labs}}, Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	request := func(s Signer, g GrantID) []byte {
		r, err := NewRequest(s, RequestParams{Grant: g, All: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return r.Bytes()
	}
	badSig := request(provider.Owner(), g.ID())
	badSig[len(badSig)-1] ^= 1
	P, S := provider.Owner().ID(), stranger.Owner().ID()
	for _, tc := range []struct {
		name    string
		remote  identity.ID
		req     []byte
		receipt bool
		want    Reason
	}{
		{"undecodable", S, bytes.Repeat([]byte{7}, 100), false, ReasonMalformed},
		{"bad signature", P, badSig, false, ReasonBadRequestSignature},
		{"signed by a stranger", S, request(stranger.Owner(), g.ID()), false, ReasonWrongAudience},
		{"the audience's request from a stranger's connection", S, request(provider.Owner(), g.ID()), false, ReasonWrongAudience},
		{"a stranger's request on the audience's connection", P, request(stranger.Owner(), g.ID()), false, ReasonWrongAudience},
		{"a grant another patient issued", P, request(provider.Owner(), notMine.ID()), false, ReasonUnknownGrant},
		{"the audience, revoked", P, request(provider.Owner(), revoked.ID()), true, ReasonRevoked},
		{"the audience, served", P, request(provider.Owner(), g.ID()), true, ReasonAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := patient.LedgerSize()
			_, frames := rawExchange(t, patient, tc.remote, tc.req)
			after, _ := patient.LedgerSize()
			if after != before+1 {
				t.Errorf("the request made %d ledger entries, want 1", after-before)
			}
			if len(frames) == 0 {
				t.Fatal("no answer")
			}
			if got := frames[0].typ == frameReceipt; got != tc.receipt {
				t.Fatalf("receipt sent = %v, want %v (first frame %q)", got, tc.receipt, frames[0].typ)
			}
			last := frames[len(frames)-1]
			switch {
			case tc.want == ReasonAllowed:
				if last.typ != frameDone {
					t.Fatalf("served request ends with %q", last.typ)
				}
			case !tc.receipt && (len(frames) != 1 || last.typ != frameDenied || Reason(last.p) != tc.want):
				t.Fatalf("answered %d frames, last %q %q; want only D %q", len(frames), last.typ, last.p, tc.want)
			case tc.receipt && (last.typ != frameDenied || Reason(last.p) != tc.want):
				t.Fatalf("ends with %q %q, want D %q", last.typ, last.p, tc.want)
			}
		})
	}
	// The provider's side reads a refusal without a receipt as a refusal
	// (exit 17 in the CLI), not as a broken protocol.
	for _, tc := range []struct {
		name   string
		v      *vault.Vault
		remote identity.ID
		g      *Grant
		want   error
	}{
		{"not the audience", stranger, S, g, ErrWrongAudience},
		{"a grant the patient did not issue", provider, P, notMine, ErrUnknownGrant},
	} {
		_, err := exchange(t, patient, tc.v, tc.remote, tc.g)
		if !errors.Is(err, tc.want) || errors.Is(err, ErrProtocol) {
			t.Errorf("fetch, %s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// A provider whose contact card was removed (or replaced by one with
// another key) is refused as no-contact, for the provider (ErrNoContact,
// exit 17) and in the ledger: not logged as a serve that did not happen,
// nor as unavailable, which says the patient's storage failed.
func TestServeWithoutCardLogsDenial(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	patient.Add(strings.NewReader("x"), vault.NewRecord{Category: record.Labs})
	SaveContact(patient, "dr", cardOf(t, provider), false)
	g, _ := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	RemoveContact(patient, "dr")
	if _, err := exchange(t, patient, provider, provider.Owner().ID(), g); !errors.Is(err, ErrNoContact) {
		t.Fatalf("fetch without a card: %v", err)
	}
	var last *ledger.Entry
	patient.Entries(0, func(i int64, e *ledger.Entry) error { last = e; return nil })
	if last.Action != ledger.ActionServe || last.Outcome != ledger.OutcomeDenied || last.Reason != string(ReasonNoContact) || len(last.Subjects) != 0 {
		t.Fatalf("logged %v %v %q %d subjects", last.Action, last.Outcome, last.Reason, len(last.Subjects))
	}
}

// Garbage from an unauthenticated peer is logged as a denial without its
// bytes, and pushes from strangers are refused.
func TestStrangersCannotFillLedgerOrInbox(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	stranger := openVault(t, "Eve", identity.Patient)
	a, b := net.Pipe()
	go func() { ServeConn(patient, frame.NewConn(a, nil), stranger.Owner().ID(), time.Now); a.Close() }()
	c := frame.NewConn(b, nil)
	c.WriteFrame(frameRequest, bytes.Repeat([]byte{7}, 60<<10))
	c.WriteFrame(frameHave, nil)
	c.WriteFrame(framePartial, nil)
	c.WriteFrame(frameSeen, nil)
	c.ReadFrame(maxReceipt)
	b.Close()
	var last *ledger.Entry
	patient.Entries(0, func(i int64, e *ledger.Entry) error { last = e; return nil })
	if last.Outcome != ledger.OutcomeDenied || len(last.Request) != 0 {
		t.Fatalf("garbage request logged with %d request bytes", len(last.Request))
	}
	g, _ := IssueGrant(stranger.Owner(), GrantParams{Audience: provider.Owner().ID(), Vault: VaultID(stranger.VaultID()),
		Scope: Scope{Categories: []record.Category{record.Labs}}, Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	// The node refuses a stranger's push without reading it; a
	// connection with buffers (as a libp2p stream has) lets the pusher's
	// write complete anyway.
	a2, b2 := bufferedPipe(t)
	go func() { ServePush(provider, frame.NewConn(a2, nil), stranger.Owner().ID()); a2.Close() }()
	if err := PushGrant(frame.NewConn(b2, nil), g); err == nil || !strings.Contains(err.Error(), "not-a-contact") {
		t.Fatalf("a stranger's push: %v, want refused as not-a-contact", err)
	}
	b2.Close()
	if in, _ := Inbox(provider); len(in) != 0 {
		t.Fatalf("inbox holds %d grants from a stranger", len(in))
	}
}

// bufferedPipe is a connected pair over loopback TCP: unlike net.Pipe, a
// write completes before the other side reads, as on a libp2p stream.
func bufferedPipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	b, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-accepted
	if a == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A peer that is not a contact cannot hold a push handler: it is refused
// before the node reads anything, so one that opens streams and sends
// nothing ties up no handler for the request timeout. (50 silent strangers
// held 50 handlers.)
func TestSilentStrangersCannotHoldPush(t *testing.T) {
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	stranger := openVault(t, "Eve", identity.Patient)
	const n = 50
	done := make(chan error, n)
	var conns []net.Conn
	for range n {
		a, b := bufferedPipe(t)
		conns = append(conns, b)
		go func() { done <- ServePush(provider, frame.NewConn(a, nil), stranger.Owner().ID()) }()
	}
	timeout := time.After(5 * time.Second)
	for range n {
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a contact") {
				t.Fatalf("a silent stranger's push: %v", err)
			}
		case <-timeout:
			t.Fatal("silent strangers hold push handlers")
		}
	}
	// Each was told why.
	for _, b := range conns {
		typ, p, err := frame.NewConn(b, nil).ReadFrame(maxMeta)
		if err != nil || typ != frameDenied || string(p) != "not-a-contact" {
			t.Fatalf("a stranger got %q %q %v, want D not-a-contact", typ, p, err)
		}
	}
}

// A grant covering more records than one ledger entry holds is served, the
// admitted IDs spread over continuation entries.
func TestServeMoreThanMaxSubjects(t *testing.T) {
	if testing.Short() {
		t.Skip("4,200 records")
	}
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	var nd strings.Builder
	for i := range ledger.MaxSubjects + 104 {
		fmt.Fprintf(&nd, `{"resourceType":"Observation","id":"o%d","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"text":"x"}}`+"\n", i)
	}
	if _, err := patient.Import("many.ndjson", strings.NewReader(nd.String()), nil); err != nil {
		t.Fatal(err)
	}
	SaveContact(patient, "dr", cardOf(t, provider), false)
	g, _ := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	res, err := exchange(t, patient, provider, provider.Owner().ID(), g)
	if err != nil || res.Records != ledger.MaxSubjects+104 {
		t.Fatalf("fetch: %+v %v", res, err)
	}
	var subjects int
	patient.Entries(0, func(i int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionServe {
			subjects += len(e.Subjects)
		}
		return nil
	})
	if subjects != ledger.MaxSubjects+104 {
		t.Fatalf("serve entries name %d records", subjects)
	}
}

// Deleting a stored revocation (an attacker with the file) is reported by
// a full verify, and by an incremental one when the revocation is newer
// than the last verify.
func TestVerifyCatchesDeletedRevocation(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	SaveContact(patient, "dr", cardOf(t, provider), false)
	issue := func(c record.Category) *Grant {
		g, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{c}},
			Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := issue(record.Labs)
	if rep, err := patient.Verify(true); err != nil {
		t.Fatalf("clean verify: %v %v", err, rep.Problems)
	}
	// A grant newer than the marker, beside an older one: clean.
	issue(record.Imaging)
	if rep, err := patient.Verify(false); err != nil {
		t.Fatalf("clean incremental verify: %v %v", err, rep.Problems)
	}
	issued, _ := FindIssued(patient, g.ID().String())
	if _, _, err := RevokeAndStore(patient, issued, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := patient.DeleteObject(vault.KindRevoked, g.ID().String(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := patient.Verify(false); !errors.Is(err, vault.ErrTampered) {
		t.Fatalf("incremental verify after deleting the revocation: %v", err)
	}
	if _, err := patient.Verify(true); !errors.Is(err, vault.ErrTampered) {
		t.Fatalf("verify after deleting the revocation: %v", err)
	}
}

// corruptChunk flips a bit of the last byte of every chunk frame on the
// provider's side, as damage in transit would; dropLast leaves out each
// record's last chunk frame instead, as a patient node that ends a record
// early would.
type corruptChunk struct {
	Framer
	dropLast bool
	held     []byte
}

func (c *corruptChunk) ReadFrame(limit int) (byte, []byte, error) {
	for {
		typ, p, err := c.Framer.ReadFrame(limit)
		if err != nil {
			return typ, p, err
		}
		if !c.dropLast {
			if typ == frameChunk {
				p = bytes.Clone(p)
				p[len(p)-1] ^= 1
			}
			return typ, p, nil
		}
		// Hold each chunk back until the next frame shows whether it was
		// the record's last.
		held := c.held
		c.held = nil
		if typ == frameChunk {
			c.held = bytes.Clone(p)
			if held == nil {
				continue
			}
			return frameChunk, held, nil
		}
		return typ, p, nil
	}
}

func TestDamagedRecordDiscarded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dropLast bool
	}{{"bit flipped", false}, {"ends early", true}} {
		t.Run(tc.name, func(t *testing.T) {
			patient := openVault(t, "Ada", identity.Patient)
			provider := openVault(t, "Dr. Hopper", identity.Provider)
			// Three chunk frames: the last one holds the end of the payload.
			patient.Add(bytes.NewReader(make([]byte, 600<<10)), vault.NewRecord{Category: record.Labs})
			SaveContact(patient, "dr", cardOf(t, provider), false)
			g, _ := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
				Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
			a, b := net.Pipe()
			go func() { ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now); a.Close() }()
			_, err := FetchConn(provider, &corruptChunk{Framer: frame.NewConn(b, nil), dropLast: tc.dropLast}, g, time.Now(), nil)
			b.Close()
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "arrived damaged") {
				t.Fatalf("damaged record: %v", err)
			}
			if ms, _ := provider.List(vault.Filter{}); len(ms) != 0 {
				t.Fatal("a damaged record was stored")
			}
			if ps, _ := provider.Partials(patient.Owner().ID()); len(ps) != 0 {
				t.Fatal("a damaged record was kept as a partial")
			}
		})
	}
}

// scripted replays frames parsed from a byte string.
type scripted struct{ b []byte }

func (s *scripted) ReadFrame(limit int) (byte, []byte, error) {
	typ, p, rest, err := frame.ParseFrame(s.b, limit)
	if err != nil {
		return 0, nil, err
	}
	s.b = rest
	return typ, p, nil
}

func (s *scripted) WriteFrame(byte, []byte) error { return nil }

// FuzzReceiveRecord feeds the provider's record path whatever a hostile
// patient node might send: it must not panic, and it stores a record only
// when what arrived is one age file that decrypts, followed by an empty end
// frame.
func FuzzReceiveRecord(f *testing.F) {
	provider := openVault(f, "Dr", identity.Provider)
	patient, _ := identity.Generate("P", identity.Patient)
	g, _ := IssueGrant(patient, GrantParams{Audience: provider.Owner().ID(), Vault: VaultID{1},
		Scope: Scope{Categories: []record.Category{record.Labs}}, Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	var file bytes.Buffer
	w, _ := age.Encrypt(&file, provider.Owner().Recipient())
	w.Write([]byte("hello"))
	w.Close()
	meta := []byte(`{"id":"00112233445566778899aabbccddeeff","title":"t","category":"labs","size":5}`)
	good, _ := frame.AppendFrame(nil, frameChunk, file.Bytes()[:40])
	good, _ = frame.AppendFrame(good, frameChunk, file.Bytes()[40:])
	good, _ = frame.AppendFrame(good, frameEnd, nil)
	f.Add(meta, good)
	notEmpty, _ := frame.AppendFrame(good[:len(good)-5:len(good)-5], frameEnd, []byte{0})
	f.Add(meta, notEmpty)
	if _, err := receiveRecord(provider, &scripted{good}, g, meta, &FetchResult{}, nil, nil, nil, func(record.ID) error { return nil }); err != nil {
		f.Fatalf("the valid seed: %v", err)
	}
	if _, err := receiveRecord(provider, &scripted{notEmpty}, g, meta, &FetchResult{}, nil, nil, nil, func(record.ID) error { return nil }); !errors.Is(err, ErrProtocol) {
		f.Fatalf("a non-empty end frame: %v", err)
	}
	f.Add([]byte(`{"id":"zz","category":"labs"}`), good)
	f.Add(meta, []byte{frameChunk, 0, 0, 0, 1})
	f.Add([]byte(`{"id":"00112233445566778899aabbccddeeff","category":"labs","size":-1}`), good)
	f.Fuzz(func(t *testing.T, meta, frames []byte) {
		before, _ := provider.List(vault.Filter{})
		m, err := receiveRecord(provider, &scripted{frames}, g, meta, &FetchResult{}, nil, nil, nil, func(record.ID) error { return nil })
		after, _ := provider.List(vault.Filter{})
		if err != nil && len(after) != len(before) {
			t.Fatal("a failed receive stored a record")
		}
		if err == nil && (m == nil || len(after) != len(before)+1) {
			t.Fatal("a successful receive did not store exactly one record")
		}
	})
}

// A peer refused over and over is rate-limited: its refusals stop adding
// ledger entries one by one.
func TestLimiterBoundsDenials(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	stranger := openVault(t, "Eve", identity.Patient)
	l := NewLimiter(5, time.Minute)
	size := func() int64 { n, _ := patient.LedgerSize(); return n }
	before := size()
	now := time.Now()
	var last string
	for range 12 {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			l.ServeConn(patient, frame.NewConn(a, nil), stranger.Owner().ID(), func() time.Time { return now })
			a.Close()
			close(done)
		}()
		c := frame.NewConn(b, nil)
		c.WriteFrame(frameRequest, []byte("garbage"))
		c.WriteFrame(frameHave, nil)
		c.WriteFrame(framePartial, nil)
		c.WriteFrame(frameSeen, nil)
		typ, p, _ := c.ReadFrame(maxReceipt)
		if typ == frameReceipt {
			c.ReadFrame(maxExtends)
			typ, p, _ = c.ReadFrame(maxMeta)
		}
		last = string(typ) + string(p)
		b.Close()
		<-done
	}
	if last != "D"+string(ReasonRateLimited) {
		t.Fatalf("last answer %q", last)
	}
	if got := size() - before; got != 6 {
		t.Fatalf("12 refused requests added %d ledger entries, want 5 + 1 rate-limited", got)
	}
	// An hour later the peer has its allowance back.
	if ok, _ := l.take(stranger.Owner().ID(), now.Add(time.Hour), 0, false); !ok {
		t.Fatal("allowance not refilled")
	}
}

// wire is the node's end of a connection: it reads what the peer sent,
// and keeps what the node writes.
type wire struct {
	in  io.Reader
	out bytes.Buffer
}

func (w *wire) Read(p []byte) (int, error)  { return w.in.Read(p) }
func (w *wire) Write(p []byte) (int, error) { return w.out.Write(p) }

// unhex decodes hex written with spaces, as PROTOCOL.md writes it.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The examples of a bad frame 1 in p2p/PROTOCOL.md §8.1.
const (
	oversizedRequest = "51 00010001"
	requestNotFirst  = "48 00000000"
	deniedMalformed  = "44 00000009 6d616c666f726d6564"
)

// A frame 1 that is not a request (over its limit, of another type, of
// type 0x00, or cut off by the peer's own end of stream) is refused as
// malformed and logged, as a request that does not decode is; a peer
// that can still read is told so. A connection that breaks, or ends
// before a frame, brought no request: nothing is logged.
func TestBadRequestFrameRefused(t *testing.T) {
	if doc, err := os.ReadFile("../p2p/PROTOCOL.md"); err == nil {
		for _, s := range []string{oversizedRequest, requestNotFirst, deniedMalformed} {
			if !strings.Contains(string(doc), "`"+s+"`") {
				t.Errorf("PROTOCOL.md's examples of a bad request frame do not show %q", s)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		in     io.Reader
		logged bool
		answer string
	}{
		{"oversized", bytes.NewReader(unhex(t, oversizedRequest)), true, deniedMalformed},
		{"wrong type", bytes.NewReader(unhex(t, requestNotFirst)), true, deniedMalformed},
		{"type 0x00", bytes.NewReader(unhex(t, "00 00000000")), true, ""},
		{"truncated", bytes.NewReader(unhex(t, "51 00000064 010203")), true, ""},
		{"nothing sent", bytes.NewReader(nil), false, ""},
		{"connection broken", iotest.ErrReader(errors.New("connection reset")), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patient, provider, _ := labsGrant(t)
			before, err := patient.LedgerSize()
			if err != nil {
				t.Fatal(err)
			}
			w := &wire{in: tc.in}
			sv, err := ServeConn(patient, frame.NewConn(w, nil), provider.Owner().ID(), time.Now)
			if err == nil {
				t.Fatal("no error")
			}
			if !bytes.Equal(w.out.Bytes(), unhex(t, tc.answer)) {
				t.Errorf("answered %x, want %q", w.out.Bytes(), tc.answer)
			}
			var logged []ledger.Entry
			patient.Entries(before, func(_ int64, e *ledger.Entry) error { logged = append(logged, *e); return nil })
			if !tc.logged {
				if len(logged) != 0 || sv.Reason != "" {
					t.Fatalf("logged %d entries, reason %q; want none", len(logged), sv.Reason)
				}
				return
			}
			if len(logged) != 1 || sv.Reason != ReasonMalformed {
				t.Fatalf("logged %d entries, reason %q; want 1, %q", len(logged), sv.Reason, ReasonMalformed)
			}
			e := logged[0]
			if e.Action != ledger.ActionServe || e.Outcome != ledger.OutcomeDenied || e.Reason != string(ReasonMalformed) ||
				!bytes.Equal(e.Actor, provider.Owner().ID().Bytes()) || len(e.Grant) != 0 || len(e.Request) != 0 || len(e.Subjects) != 0 {
				t.Fatalf("logged %+v; want serve denied %q by the peer, without grant or request", e, ReasonMalformed)
			}
		})
	}
}

// Bad request frames are refusals like any other: a peer that sends them
// over and over is rate-limited, and cannot make the node write an entry
// for each.
func TestLimiterBoundsBadRequestFrames(t *testing.T) {
	for name, in := range map[string]string{"oversized": oversizedRequest, "wrong type": requestNotFirst, "truncated": "51 00000064 010203"} {
		t.Run(name, func(t *testing.T) {
			patient := openVault(t, "Ada", identity.Patient)
			peer := openVault(t, "Eve", identity.Patient).Owner().ID()
			l := NewLimiter(5, time.Minute)
			now := time.Now()
			before, _ := patient.LedgerSize()
			var last []byte
			for range 12 {
				w := &wire{in: bytes.NewReader(unhex(t, in))}
				l.ServeConn(patient, frame.NewConn(w, nil), peer, func() time.Time { return now })
				last = w.out.Bytes()
			}
			if after, _ := patient.LedgerSize(); after-before != 6 {
				t.Fatalf("12 bad request frames added %d ledger entries, want 5 + 1 rate-limited", after-before)
			}
			if want, _ := frame.AppendFrame(nil, frameDenied, []byte(ReasonRateLimited)); !bytes.Equal(last, want) {
				t.Fatalf("last answer %q, want %q", last, want)
			}
		})
	}
}

// frameLog keeps the frames written to it.
type frameLog struct {
	Framer
	frames [][]byte
}

func (l *frameLog) WriteFrame(typ byte, p []byte) error {
	l.frames = append(l.frames, bytes.Clone(p))
	return nil
}

// chunkFramer cuts a byte stream into chunk frames of at most 256 KiB,
// sending a whole frame's worth as it lies: after a short header, each
// 256 KiB stored chunk is one frame, not copied across two.
func TestChunkFramer(t *testing.T) {
	const max = 256 << 10
	var all []byte
	l := &frameLog{}
	f := newChunkFramer(l)
	write := func(n int) {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(len(all) + i)
		}
		all = append(all, p...)
		if k, err := f.Write(p); err != nil || k != n {
			t.Fatalf("write %d: %d, %v", n, k, err)
		}
	}
	write(200)       // an age header
	write(max)       // stored chunks
	write(max)       //
	write(1000)      // the last, short
	write(2*max + 7) // one large write
	if err := f.flush(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	var sizes []int
	for _, fr := range l.frames {
		if len(fr) == 0 || len(fr) > max {
			t.Fatalf("frame of %d bytes", len(fr))
		}
		got = append(got, fr...)
		sizes = append(sizes, len(fr))
	}
	if !bytes.Equal(got, all) {
		t.Fatal("frames do not add up to the stream")
	}
	if want := []int{200, max, max, 1000, max, max, 7}; !slices.Equal(sizes, want) {
		t.Fatalf("frame sizes %v, want %v", sizes, want)
	}
	if f.n != int64(len(all)) {
		t.Fatalf("counted %d of %d bytes", f.n, len(all))
	}
}

// A provider refused too often is told it is rate-limited (a temporary
// state: ErrRateLimited, exit 1 with a hint), not that the patient's vault
// could not be read, and not as access denied: even its valid grant is
// refused until the allowance refills.
func TestFetchRateLimited(t *testing.T) {
	patient, provider, revoked := labsGrant(t)
	issued, _ := FindIssued(patient, revoked.ID().String())
	RevokeAndStore(patient, issued, time.Now())
	valid, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l := NewLimiter(2, time.Minute)
	fetch := func(g *Grant) error {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		done := make(chan struct{})
		go func() {
			l.ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now)
			a.Close()
			close(done)
		}()
		_, err := FetchConn(provider, frame.NewConn(b, nil), g, time.Now(), nil)
		b.Close()
		<-done // the refusal is counted after the answer
		return err
	}
	for range 2 {
		if err := fetch(revoked); !errors.Is(err, ErrRevoked) {
			t.Fatalf("fetch with the revoked grant: %v", err)
		}
	}
	err = fetch(valid)
	if !errors.Is(err, ErrRateLimited) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("fetch once rate-limited: %v, want ErrRateLimited", err)
	}
}

// A grantee fetching in a loop is served ServedBurst times, then refused
// rate-limited until its allowance refills: each served request logs the
// records it admitted, and nothing else bounds how fast it adds them to
// the patient's ledger (a review measured 10.6 KB a request, ~1 MB/s).
func TestLimiterBoundsServedRequests(t *testing.T) {
	patient, provider, g := labsGrant(t)
	l := NewLimiter(20, 3*time.Second)
	now := time.Now()
	clock := func() time.Time { return now }
	fetch := func() (*Served, error) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		done := make(chan *Served, 1)
		go func() {
			sv, _ := l.ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), clock)
			a.Close()
			done <- sv
		}()
		_, err := FetchConn(provider, frame.NewConn(b, nil), g, now, nil)
		b.Close()
		return <-done, err
	}
	for i := range ServedBurst {
		if sv, err := fetch(); err != nil || sv.Reason != ReasonAllowed {
			t.Fatalf("fetch %d: %v %v", i, sv, err)
		}
	}
	size := func() int64 { n, _ := patient.LedgerSize(); return n }
	before := size()
	for range 5 {
		if sv, err := fetch(); !errors.Is(err, ErrRateLimited) || sv.Reason != ReasonRateLimited {
			t.Fatalf("fetch past the burst: %v %v, want rate-limited", sv, err)
		}
	}
	if got := size() - before; got != 1 {
		t.Fatalf("5 rate-limited fetches added %d ledger entries, want 1", got)
	}
	// One more is served after ServedRefill.
	now = now.Add(ServedRefill)
	if sv, err := fetch(); err != nil || sv.Reason != ReasonAllowed {
		t.Fatalf("fetch after the refill: %v %v", sv, err)
	}
	if sv, _ := fetch(); sv.Reason != ReasonRateLimited {
		t.Fatalf("a second fetch after one refill: %v", sv.Reason)
	}
	// Requests running at once each take their own: after one refill,
	// one of eight concurrent fetches is served (the review that found
	// the allowance spent only after serving saw all eight).
	now = now.Add(ServedRefill)
	results := make(chan servedOrErr, 8)
	for range 8 {
		go func() {
			sv, err := fetch()
			results <- servedOrErr{sv, err}
		}()
	}
	served := 0
	for range 8 {
		if r := <-results; r.sv != nil && r.sv.Reason == ReasonAllowed {
			served++
		}
	}
	if served != 1 {
		t.Fatalf("8 concurrent fetches after one refill: %d served, want 1", served)
	}
}

type servedOrErr struct {
	sv  *Served
	err error
}

// servePushPipe runs l.ServePush for v over one end of a pipe, as a push
// from `from`, and returns the other end and ServePush's result; the pipe
// closes when the test ends.
func servePushPipe(t *testing.T, l *Limiter, v *vault.Vault, from identity.ID) (*frame.Conn, <-chan error) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { b.Close() })
	errc := make(chan error, 1)
	go func() {
		errc <- l.ServePush(v, frame.NewConn(a, nil), from)
		a.Close()
	}()
	return frame.NewConn(b, nil), errc
}

// A stranger's push is refused from the limiter's cached contact IDs, with
// the same answer as ServePush's.
func TestLimiterPushStranger(t *testing.T) {
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	stranger := openVault(t, "Eve", identity.Patient)
	l := NewLimiter(20, 3*time.Second)
	c, errc := servePushPipe(t, l, provider, stranger.Owner().ID())
	typ, p, err := c.ReadFrame(64)
	if err != nil || typ != frameDenied || string(p) != PushRefusedNotContact {
		t.Fatalf("answer %q %q %v", typ, p, err)
	}
	if err := <-errc; !errors.Is(err, ErrNotContact) {
		t.Fatalf("ServePush: %v", err)
	}
}

// contactPusher returns a provider's vault, a patient's vault that is its
// contact, and push, which pushes one frame from the patient to the
// provider under a limiter and returns the answer and ServePush's result.
func contactPusher(t *testing.T) (provider, patient *vault.Vault, push func(typ byte, body []byte) (byte, string, error)) {
	t.Helper()
	provider = openVault(t, "Dr. Hopper", identity.Provider)
	patient = openVault(t, "Ada", identity.Patient)
	if _, err := SaveContact(provider, "ada", cardOf(t, patient), false); err != nil {
		t.Fatal(err)
	}
	l := NewLimiter(20, 3*time.Second)
	push = func(typ byte, body []byte) (byte, string, error) {
		c, errc := servePushPipe(t, l, provider, patient.Owner().ID())
		c.WriteFrame(typ, body)
		rt, p, _ := c.ReadFrame(64)
		return rt, string(p), <-errc
	}
	return provider, patient, push
}

// A contact's pushed grants draw on its served allowance: past
// ServedBurst new grants they are refused rate-limited, and nothing more
// reaches the inbox or the ledger; a revocation notice still is taken.
func TestLimiterBoundsPushedGrants(t *testing.T) {
	provider, patient, push := contactPusher(t)
	var last *Grant
	for i := range ServedBurst + 3 {
		g, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
			Purpose: "TREAT", Expiry: time.Now().Add(time.Duration(i+1) * time.Hour)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		typ, why, err := push(frameGrant, g.Bytes())
		switch {
		case i < ServedBurst && (typ != frameOK || err != nil):
			t.Fatalf("grant %d: %q %q %v", i, typ, why, err)
		case i >= ServedBurst && (typ != frameDenied || why != string(ReasonRateLimited) || !errors.Is(err, ErrRateLimited)):
			t.Fatalf("grant %d past the allowance: %q %q %v", i, typ, why, err)
		}
		if i == 0 {
			last = g
		}
	}
	if in, _ := Inbox(provider); len(in) != ServedBurst {
		t.Fatalf("inbox holds %d grants, want %d", len(in), ServedBurst)
	}
	issued, _ := FindIssued(patient, last.ID().String())
	r, _, err := RevokeAndStore(patient, issued, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if typ, why, err := push(frameRevocation, r.Bytes()); typ != frameOK || err != nil {
		t.Fatalf("revocation notice past the allowance: %q %q %v", typ, why, err)
	}
}

// A grant is revoked once: a notice for a grant whose revocation is already
// kept changes nothing, so a contact re-signing its revocation with other
// times cannot make the provider's node write without end (each notice
// stored was a write and a ledger entry). The first notice is the one kept.
func TestPushRevocationStoredOnce(t *testing.T) {
	provider, patient, push := contactPusher(t)
	g, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if typ, why, err := push(frameGrant, g.Bytes()); typ != frameOK || err != nil {
		t.Fatalf("grant: %q %q %v", typ, why, err)
	}
	size := func() int64 {
		n, err := provider.LedgerSize()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := size()
	base := time.Now()
	var first *Revocation
	for i := range 20 {
		r, err := Revoke(patient.Owner(), g.ID(), base.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r
		}
		if typ, why, err := push(frameRevocation, r.Bytes()); typ != frameOK || err != nil {
			t.Fatalf("notice %d: %q %q %v", i, typ, why, err)
		}
	}
	if d := size() - before; d != 1 {
		t.Errorf("%d ledger entries for 20 notices revoking one grant, want 1", d)
	}
	kept, err := provider.GetObject(vault.KindRevoked, g.ID().String())
	if err != nil || !bytes.Equal(kept, first.Bytes()) {
		t.Errorf("kept notice is not the first (%v)", err)
	}
}

// The push answer K is empty (PROTOCOL.md §8.2): a K carrying bytes is a
// node that does not speak the protocol, and the push is not taken as
// stored.
func TestPushRefusesNonEmptyAck(t *testing.T) {
	for _, ack := range [][]byte{nil, []byte("not empty")} {
		a, b := net.Pipe()
		go func() {
			c := frame.NewConn(b, nil)
			c.ReadFrame(maxRequest)
			c.WriteFrame(frameOK, ack)
			b.Close()
		}()
		a.SetDeadline(time.Now().Add(5 * time.Second))
		err := PushGrant(frame.NewConn(a, nil), mustGrant(t, baseParams()))
		a.Close()
		if (err == nil) != (len(ack) == 0) {
			t.Errorf("K with %d bytes: %v", len(ack), err)
		}
	}
}

// A pushed revocation is refused unknown-grant when the provider's inbox
// has no such grant or it is not its issuer's (PROTOCOL.md 8.2), and
// stored when it is.
func TestPushRevocationReasons(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	other := openVault(t, "Eve", identity.Patient)
	if _, err := SaveContact(provider, "ada", cardOf(t, patient), false); err != nil {
		t.Fatal(err)
	}
	push := func(f func(Framer) error) error {
		a, b := bufferedPipe(t)
		defer b.Close()
		go func() { ServePush(provider, frame.NewConn(a, nil), patient.Owner().ID()); a.Close() }()
		return f(frame.NewConn(b, nil))
	}
	params := GrantParams{Audience: provider.Owner().ID(), Vault: VaultID(patient.VaultID()),
		Scope: Scope{Categories: []record.Category{record.Labs}}, Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}
	g, err := IssueGrant(patient.Owner(), params, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := push(func(c Framer) error { return PushGrant(c, g) }); err != nil {
		t.Fatal(err)
	}
	params.Expiry = params.Expiry.Add(time.Minute)
	notPushed, _ := IssueGrant(patient.Owner(), params, time.Now())
	for _, c := range []struct {
		name   string
		signer Signer
		grant  GrantID
		want   string
	}{
		{"a grant the inbox lacks", patient.Owner(), notPushed.ID(), "unknown-grant"},
		{"signed by another", other.Owner(), g.ID(), "unknown-grant"},
		{"the issuer's", patient.Owner(), g.ID(), ""},
	} {
		r, err := Revoke(c.signer, c.grant, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		err = push(func(f Framer) error { return PushRevocation(f, r) })
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// A push frame over the limit is answered malformed, as a fetch request
// over its limit is, not dropped without a word.
func TestPushOversizedAnswered(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	if _, err := SaveContact(provider, "ada", cardOf(t, patient), false); err != nil {
		t.Fatal(err)
	}
	a, b := bufferedPipe(t)
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- ServePush(provider, frame.NewConn(a, nil), patient.Owner().ID()); a.Close() }()
	c := frame.NewConn(b, nil)
	if err := c.WriteFrame(frameGrant, make([]byte, maxRequest+1)); err != nil {
		t.Fatal(err)
	}
	typ, p, err := c.ReadFrame(maxMeta)
	if err != nil || typ != frameDenied || string(p) != "malformed" {
		t.Fatalf("answer: %q %q %v; want D malformed", typ, p, err)
	}
	if err := <-done; !errors.Is(err, frame.ErrTooLarge) {
		t.Fatalf("ServePush: %v", err)
	}
}
