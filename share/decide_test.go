package share

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// The test vault's records.
var (
	recLab        = RecordInfo{ID: rid("lab"), Category: record.Labs}
	recLabMH      = RecordInfo{ID: rid("lab-mh"), Category: record.Labs, Labels: []record.Label{record.MH}}
	recLabHIV     = RecordInfo{ID: rid("lab-hiv"), Category: record.Labs, Labels: []record.Label{record.HIV, record.STD}}
	recLabOdd     = RecordInfo{ID: rid("lab-odd"), Category: record.Labs, Labels: []record.Label{"XYZ"}}
	recMedActive  = RecordInfo{ID: rid("med-active"), Category: record.Medications, Active: true}
	recMedOld     = RecordInfo{ID: rid("med-old"), Category: record.Medications}
	recProbActMH  = RecordInfo{ID: rid("problem-mh"), Category: record.Problems, Active: true, Labels: []record.Label{record.MH}}
	recProbActive = RecordInfo{ID: rid("problem-active"), Category: record.Problems, Active: true}
	recProbOld    = RecordInfo{ID: rid("problem-old"), Category: record.Problems}
	recAllergy    = RecordInfo{ID: rid("allergy"), Category: record.Allergies, Active: true}
	recImmun      = RecordInfo{ID: rid("immunization"), Category: record.Immunizations, Active: true}
	recAdvDir     = RecordInfo{ID: rid("advance-directive"), Category: record.AdvanceDirectives, Active: true}
	recBill       = RecordInfo{ID: rid("bill"), Category: record.Billing}
	recNoteSUD    = RecordInfo{ID: rid("note-sud"), Category: record.Notes, Labels: []record.Label{record.SUD}}
	recVitals     = RecordInfo{ID: rid("vitals"), Category: record.Vitals}

	allRecs = []RecordInfo{recLab, recLabMH, recLabHIV, recLabOdd, recMedActive, recMedOld, recProbActMH,
		recProbActive, recProbOld, recAllergy, recImmun, recAdvDir, recBill, recNoteSUD, recVitals}
)

func newTestState() *MemState {
	m := NewMemState(patient.ID(), testVault)
	for _, r := range allRecs {
		m.AddRecord(r)
	}
	return m
}

func ids(rs ...RecordInfo) []record.ID {
	out := make([]record.ID, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	sortIDs(out)
	return out
}

func grantWith(t testing.TB, edit func(*GrantParams)) *Grant {
	p := baseParams()
	edit(&p)
	return mustGrant(t, p)
}

func TestDecide(t *testing.T) {
	gLabs := mustGrant(t, baseParams())
	gLabsMH := grantWith(t, func(p *GrantParams) { p.Labels = []record.Label{record.MH}; p.Nonce = fixedNonce(1) })
	gLabsAll := grantWith(t, func(p *GrantParams) { p.Labels = record.Labels(); p.Nonce = fixedNonce(2) })
	gEmerg := grantWith(t, func(p *GrantParams) {
		p.Scope = Scope{EmergencySummary: true}
		p.Purpose = EmergencyTreatment
		p.Nonce = fixedNonce(3)
	})
	gNamed := grantWith(t, func(p *GrantParams) {
		p.Scope = Scope{Records: []record.ID{recNoteSUD.ID, recBill.ID, rid("deleted")}}
		p.Nonce = fixedNonce(4)
	})
	gLater := grantWith(t, func(p *GrantParams) {
		p.NotBefore = t0.Add(time.Hour)
		p.Expiry = t0.Add(2 * time.Hour)
		p.Nonce = fixedNonce(5)
	})
	gStranger, err := IssueGrant(stranger, baseParams(), t0)
	if err != nil {
		t.Fatal(err)
	}
	gOtherVault := grantWith(t, func(p *GrantParams) { p.Vault = VaultID{9}; p.Nonce = fixedNonce(6) })
	// A grant whose signature is bad, built without verification.
	gForged, err := decodeGrant(resign(gLabs.Bytes(), DomainGrant, stranger), false)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	req := func(g *Grant, items ...RecordInfo) *Request {
		p := RequestParams{Grant: g.ID(), All: len(items) == 0}
		for _, it := range items {
			p.Items = append(p.Items, it.ID)
		}
		return mustRequest(t, provider, p, now)
	}
	reqAt := func(g *Grant, at time.Time) *Request {
		return mustRequest(t, provider, RequestParams{Grant: g.ID(), All: true}, at)
	}
	reqForged, err := decodeRequest(resign(req(gLabs).Bytes(), DomainRequest, stranger), false)
	if err != nil {
		t.Fatal(err)
	}
	reqStranger := mustRequest(t, stranger, RequestParams{Grant: gLabs.ID(), All: true}, now)
	reqOnce := req(gLabs)
	reqMissing := mustRequest(t, provider, RequestParams{Grant: gNamed.ID(), Items: []record.ID{rid("deleted"), rid("never")}}, now)

	failing := func(which string) func(m *MemState) State {
		return func(m *MemState) State {
			st := m.State()
			boom := errors.New("disk on fire")
			switch which {
			case "revoked":
				st.Revoked = func(GrantID) (bool, error) { return false, boom }
			case "revoked-nil":
				st.Revoked = nil
			case "nonce":
				st.NonceSeen = func(GrantID, Nonce) (bool, error) { return false, boom }
			case "nonce-nil":
				st.NonceSeen = nil
			case "lookup":
				st.Lookup = func(record.ID) (RecordInfo, bool, error) { return RecordInfo{}, false, boom }
			case "lookup-nil":
				st.Lookup = nil
			case "lookup-wrong":
				st.Lookup = func(record.ID) (RecordInfo, bool, error) { return recBill, true, nil }
			case "all":
				st.All = func() ([]RecordInfo, error) { return nil, boom }
			case "all-nil":
				st.All = nil
			}
			return st
		}
	}

	tests := []struct {
		name     string
		g        *Grant
		r        *Request
		remote   identity.ID
		now      time.Time
		setup    func(m *MemState) // before deciding
		state    func(m *MemState) State
		want     Reason
		auth     bool
		items    []record.ID
		denied   []Denial
		sentinel error
	}{
		{name: "no grant", g: nil, r: req(gLabs), want: ReasonMalformed},
		{name: "no request", g: gLabs, r: nil, want: ReasonMalformed},
		{name: "zero grant", g: &Grant{}, r: req(gLabs), want: ReasonMalformed},
		{name: "zero request", g: gLabs, r: &Request{}, want: ReasonMalformed},
		{name: "grant signature bad", g: gForged, r: req(gForged), want: ReasonBadSignature, sentinel: ErrBadSignature},
		{name: "grant by someone else", g: gStranger, r: req(gStranger), want: ReasonWrongIssuer, sentinel: ErrWrongIssuer},
		{name: "grant for another vault", g: gOtherVault, r: req(gOtherVault), want: ReasonWrongVault, sentinel: ErrWrongVault},
		{name: "request for another grant", g: gLabs, r: req(gLabsMH), want: ReasonGrantMismatch, sentinel: ErrGrantMismatch},
		{name: "request signature bad", g: gLabs, r: reqForged, want: ReasonBadRequestSignature, sentinel: ErrBadSignature},
		{name: "request signed by non-audience", g: gLabs, r: reqStranger, remote: stranger.ID(), want: ReasonWrongAudience, sentinel: ErrWrongAudience},
		{name: "remote peer is not the audience", g: gLabs, r: req(gLabs), remote: stranger.ID(), want: ReasonWrongAudience, sentinel: ErrWrongAudience},
		{name: "remote peer unknown", g: gLabs, r: req(gLabs), remote: identity.ID{}, want: ReasonWrongAudience},
		{name: "revoked", g: gLabs, r: req(gLabs), setup: func(m *MemState) { m.Revoke(gLabs.ID()) }, want: ReasonRevoked, auth: true, sentinel: ErrRevoked},
		{name: "other grant revoked", g: gLabs, r: req(gLabs), setup: func(m *MemState) { m.Revoke(gLabsMH.ID()) }, want: ReasonAllowed, auth: true, items: ids(recLab)},
		// The grant's window is the issuing (and deciding) node's clock:
		// no skew widens it, whatever the request's time says.
		{name: "not yet valid", g: gLater, r: reqAt(gLater, t0), now: t0.Add(time.Hour - ClockSkew - time.Second), want: ReasonNotYetValid, auth: true, sentinel: ErrNotYetValid},
		{name: "a second before not-before", g: gLater, r: reqAt(gLater, t0.Add(time.Hour)), now: t0.Add(time.Hour - time.Second), want: ReasonNotYetValid, auth: true, sentinel: ErrNotYetValid},
		{name: "at not-before", g: gLater, r: reqAt(gLater, t0.Add(time.Hour-ClockSkew)), now: t0.Add(time.Hour), want: ReasonAllowed, auth: true},
		{name: "at expiry", g: gLater, r: reqAt(gLater, t0.Add(2*time.Hour-ClockSkew)), now: t0.Add(2 * time.Hour), want: ReasonExpired, auth: true, sentinel: ErrExpired},
		{name: "expired a second ago", g: gLater, r: reqAt(gLater, t0.Add(2*time.Hour)), now: t0.Add(2*time.Hour + time.Second), want: ReasonExpired, auth: true, sentinel: ErrExpired},
		{name: "expired within what was the skew", g: gLater, r: reqAt(gLater, t0.Add(2*time.Hour+ClockSkew-time.Second)), now: t0.Add(2*time.Hour + ClockSkew - time.Second), want: ReasonExpired, auth: true, sentinel: ErrExpired},
		{name: "a second before expiry", g: gLater, r: reqAt(gLater, t0.Add(2*time.Hour+ClockSkew-time.Second)), now: t0.Add(2*time.Hour - time.Second), want: ReasonAllowed, auth: true},
		{name: "request from the past", g: gLabs, r: reqAt(gLabs, now.Add(-ClockSkew-time.Second)), want: ReasonStaleRequest, auth: true, sentinel: ErrStaleRequest},
		{name: "request from the future", g: gLabs, r: reqAt(gLabs, now.Add(ClockSkew+time.Second)), want: ReasonStaleRequest, auth: true},
		{name: "request time at skew", g: gLabs, r: reqAt(gLabs, now.Add(-ClockSkew)), want: ReasonAllowed, auth: true},
		{name: "nonce reused", g: gLabs, r: reqOnce, setup: func(m *MemState) { m.UseNonce(reqOnce) }, want: ReasonNonceReused, auth: true, sentinel: ErrNonceReused},
		{name: "item allowed", g: gLabs, r: req(gLabs, recLab), want: ReasonAllowed, auth: true, items: ids(recLab)},
		{name: "item out of scope", g: gLabs, r: req(gLabs, recBill), want: ReasonOutOfScope, auth: true, denied: []Denial{{recBill.ID, ReasonOutOfScope}}, sentinel: ErrOutOfScope},
		{name: "item label excluded", g: gLabs, r: req(gLabs, recLabMH), want: ReasonLabelExcluded, auth: true, denied: []Denial{{recLabMH.ID, ReasonLabelExcluded}}, sentinel: ErrLabelExcluded},
		{name: "item label included", g: gLabsMH, r: req(gLabsMH, recLabMH), want: ReasonAllowed, auth: true, items: ids(recLabMH)},
		{name: "every label must be named", g: gLabsMH, r: req(gLabsMH, recLabHIV), want: ReasonLabelExcluded, auth: true, denied: []Denial{{recLabHIV.ID, ReasonLabelExcluded}}},
		{name: "unknown label never named", g: gLabsAll, r: req(gLabsAll, recLabOdd), want: ReasonLabelExcluded, auth: true, denied: []Denial{{recLabOdd.ID, ReasonLabelExcluded}}},
		{name: "partial", g: gLabs, r: req(gLabs, recLab, recLabMH, recBill), want: ReasonAllowed, auth: true, items: ids(recLab),
			denied: sortedDenials(Denial{recLabMH.ID, ReasonLabelExcluded}, Denial{recBill.ID, ReasonOutOfScope})},
		{name: "named record without its label", g: gNamed, r: req(gNamed, recNoteSUD), want: ReasonLabelExcluded, auth: true, denied: []Denial{{recNoteSUD.ID, ReasonLabelExcluded}}},
		{name: "named record", g: gNamed, r: req(gNamed, recBill), want: ReasonAllowed, auth: true, items: ids(recBill)},
		{name: "named but deleted, unnamed and absent", g: gNamed, r: reqMissing, want: firstReason(sortedDenials(Denial{rid("deleted"), ReasonNotFound}, Denial{rid("never"), ReasonOutOfScope})), auth: true,
			denied: sortedDenials(Denial{rid("deleted"), ReasonNotFound}, Denial{rid("never"), ReasonOutOfScope})},
		{name: "all in scope", g: gLabs, r: req(gLabs), want: ReasonAllowed, auth: true, items: ids(recLab),
			denied: sortedDenials(Denial{recLabMH.ID, ReasonLabelExcluded}, Denial{recLabHIV.ID, ReasonLabelExcluded}, Denial{recLabOdd.ID, ReasonLabelExcluded})},
		{name: "all in scope with every label", g: gLabsAll, r: req(gLabsAll), want: ReasonAllowed, auth: true, items: ids(recLab, recLabMH, recLabHIV),
			denied: []Denial{{recLabOdd.ID, ReasonLabelExcluded}}},
		{name: "emergency summary", g: gEmerg, r: req(gEmerg), want: ReasonAllowed, auth: true,
			items:  ids(recMedActive, recProbActive, recAllergy, recImmun, recAdvDir),
			denied: []Denial{{recProbActMH.ID, ReasonLabelExcluded}}},
		{name: "emergency summary excludes inactive", g: gEmerg, r: req(gEmerg, recMedOld, recProbOld, recLab), want: ReasonOutOfScope, auth: true,
			denied: sortedDenials(Denial{recMedOld.ID, ReasonOutOfScope}, Denial{recProbOld.ID, ReasonOutOfScope}, Denial{recLab.ID, ReasonOutOfScope})},
		{name: "empty vault", g: gLabs, r: req(gLabs), state: func(m *MemState) State { return NewMemState(m.Owner, m.Vault).State() }, want: ReasonAllowed, auth: true, items: []record.ID{}},
		{name: "revoked lookup fails", g: gLabs, r: req(gLabs), state: failing("revoked"), want: ReasonUnavailable, auth: true, sentinel: ErrUnavailable},
		{name: "revoked func missing", g: gLabs, r: req(gLabs), state: failing("revoked-nil"), want: ReasonUnavailable, auth: true},
		{name: "nonce lookup fails", g: gLabs, r: req(gLabs), state: failing("nonce"), want: ReasonUnavailable, auth: true},
		{name: "nonce func missing", g: gLabs, r: req(gLabs), state: failing("nonce-nil"), want: ReasonUnavailable, auth: true},
		{name: "record lookup fails", g: gLabs, r: req(gLabs, recLab), state: failing("lookup"), want: ReasonUnavailable, auth: true},
		{name: "record lookup missing", g: gLabs, r: req(gLabs, recLab), state: failing("lookup-nil"), want: ReasonUnavailable, auth: true},
		{name: "record lookup answers for another record", g: gLabs, r: req(gLabs, recLab), state: failing("lookup-wrong"), want: ReasonUnavailable, auth: true},
		{name: "all fails", g: gLabs, r: req(gLabs), state: failing("all"), want: ReasonUnavailable, auth: true},
		{name: "all missing", g: gLabs, r: req(gLabs), state: failing("all-nil"), want: ReasonUnavailable, auth: true},
		{name: "owner unset", g: gLabs, r: req(gLabs), state: func(m *MemState) State { st := m.State(); st.Owner = identity.ID{}; return st }, want: ReasonWrongIssuer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestState()
			if tc.setup != nil {
				tc.setup(m)
			}
			st := m.State()
			if tc.state != nil {
				st = tc.state(m)
			}
			remote := tc.remote
			if remote.IsZero() && tc.name != "remote peer unknown" {
				remote = provider.ID()
			}
			at := tc.now
			if at.IsZero() {
				at = now
			}
			d := Decide(tc.g, tc.r, remote, at, st)
			if d.Reason != tc.want {
				t.Fatalf("reason %q, want %q (decision %+v)", d.Reason, tc.want, d)
			}
			if d.Allowed != (tc.want == ReasonAllowed) {
				t.Fatalf("allowed = %v with reason %q", d.Allowed, d.Reason)
			}
			if d.Authenticated != tc.auth {
				t.Fatalf("authenticated = %v, want %v", d.Authenticated, tc.auth)
			}
			if tc.items != nil {
				if !slices.Equal(d.Items, tc.items) {
					t.Fatalf("items %v, want %v", d.Items, tc.items)
				}
			}
			if !d.Allowed && len(d.Items) != 0 {
				t.Fatal("items on a refusal")
			}
			if tc.denied != nil && !slices.Equal(d.Denied, tc.denied) {
				t.Fatalf("denied %v, want %v", d.Denied, tc.denied)
			}
			err := d.Err()
			if d.Allowed != (err == nil) {
				t.Fatalf("Err() = %v for allowed = %v", err, d.Allowed)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("Err() = %v, want %v", err, tc.sentinel)
			}
		})
	}
}

func sortedDenials(ds ...Denial) []Denial {
	slices.SortFunc(ds, func(a, b Denial) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return ds
}

func firstReason(ds []Denial) Reason { return ds[0].Reason }

// TestServeRevokeThenRefuse follows the product's story: a request is
// served, its replay is refused, a revocation refuses the very next one.
func TestServeRevokeThenRefuse(t *testing.T) {
	m := newTestState()
	g := mustGrant(t, baseParams())
	now := t0.Add(time.Minute)
	r1 := mustRequest(t, provider, RequestParams{Grant: g.ID(), All: true}, now)
	if d := m.Serve(g, r1, provider.ID(), now); !d.Allowed {
		t.Fatalf("first request: %v", d.Err())
	}
	if d := m.Serve(g, r1, provider.ID(), now); d.Reason != ReasonNonceReused {
		t.Fatalf("replay: %v", d.Reason)
	}
	rv, err := Revoke(patient, g.ID(), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := rv.Check(g); err != nil {
		t.Fatal(err)
	}
	m.Revoke(rv.Grant())
	r2 := mustRequest(t, provider, RequestParams{Grant: g.ID(), All: true}, now)
	if d := m.Serve(g, r2, provider.ID(), now); d.Reason != ReasonRevoked {
		t.Fatalf("after revoke: %v", d.Reason)
	}
	// Nonces of old requests can be forgotten: the replay is then stale.
	later := now.Add(3 * ClockSkew)
	m.ForgetNonces(later)
	if d := m.Serve(g, r1, provider.ID(), later); d.Reason != ReasonRevoked {
		t.Fatalf("old replay: %v", d.Reason)
	}
	m2 := newTestState()
	m2.UseNonce(r1)
	m2.ForgetNonces(later)
	if d := m2.Serve(g, r1, provider.ID(), later); d.Reason != ReasonStaleRequest {
		t.Fatalf("old replay after forgetting: %v", d.Reason)
	}
}

func TestSelect(t *testing.T) {
	g := grantWith(t, func(p *GrantParams) {
		p.Scope = Scope{Categories: []record.Category{record.Vitals}, EmergencySummary: true, Records: []record.ID{recBill.ID, recNoteSUD.ID}}
		p.Labels = []record.Label{record.SUD}
	})
	sel := Select(g, allRecs)
	want := ids(recMedActive, recProbActive, recAllergy, recImmun, recAdvDir, recVitals, recBill, recNoteSUD)
	if !slices.Equal(sel.Items, want) {
		t.Fatalf("items %v, want %v", sel.Items, want)
	}
	if !slices.Equal(sel.Withheld, []Denial{{recProbActMH.ID, ReasonLabelExcluded}}) {
		t.Fatalf("withheld %v", sel.Withheld)
	}
	// Select agrees with Covers item by item.
	for _, r := range allRecs {
		in := slices.Contains(sel.Items, r.ID)
		if (g.Covers(r) == ReasonAllowed) != in {
			t.Errorf("%v: Covers and Select disagree", r.ID)
		}
	}
	// A duplicated ID is covered only if every occurrence is.
	dup := recVitals
	dup.Labels = []record.Label{record.MH}
	sel = Select(g, []RecordInfo{recVitals, dup})
	if len(sel.Items) != 0 || len(sel.Withheld) != 1 {
		t.Fatalf("duplicate: %+v", sel)
	}
	if s := Select(nil, allRecs); len(s.Items) != 0 {
		t.Fatal("nil grant selected records")
	}
}

func TestScopeParse(t *testing.T) {
	sc, err := ParseScope(" labs, Vitals ,emergency-summary,labs," + recBill.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sc.Categories, []record.Category{record.Labs, record.Vitals}) || !sc.EmergencySummary || !slices.Equal(sc.Records, []record.ID{recBill.ID}) {
		t.Fatalf("%+v", sc)
	}
	for _, bad := range []string{"lab", "labs,xyz", "emergency", "0123456789abcdef0123456789abcdeg"} {
		if _, err := ParseScope(bad); !errors.Is(err, ErrUnknownCategory) {
			t.Errorf("ParseScope(%q): %v", bad, err)
		}
	}
	if sc, err := ParseScope(""); err != nil || !sc.IsEmpty() {
		t.Error("empty")
	}
	// The bit table covers every category and label the record package has.
	for _, c := range record.Categories() {
		if _, ok := categoryBit(c); !ok {
			t.Errorf("category %s has no bit in the grant format", c)
		}
	}
	for _, l := range record.Labels() {
		if _, ok := labelBit(l); !ok {
			t.Errorf("label %s has no bit in the grant format", l)
		}
	}
	for i, c := range categoryBits {
		if b, ok := categoryBit(c); !ok || b != 1<<uint(i) {
			t.Errorf("categoryBit(%s) disagrees with categoryBits", c)
		}
	}
	if len(categoryBits) != 18 || len(labelBits) != 7 {
		t.Error("bit tables changed size: that is a format change")
	}
}

func TestPresets(t *testing.T) {
	names := map[string]bool{}
	for _, p := range Presets() {
		if names[p.Name] || p.Description == "" || !p.Purpose.Valid() || p.Scope.IsEmpty() {
			t.Errorf("preset %q: bad entry", p.Name)
		}
		names[p.Name] = true
		params := baseParams()
		params.Scope, params.Purpose = p.Scope, p.Purpose
		if _, err := IssueGrant(patient, params, t0); err != nil {
			t.Errorf("preset %q does not issue: %v", p.Name, err)
		}
		got, err := LookupPreset(" " + p.Name)
		if err != nil || got.Name != p.Name {
			t.Errorf("LookupPreset(%q): %v", p.Name, err)
		}
	}
	for _, n := range []string{"nurse", "billing", "emergency"} {
		if !names[n] {
			t.Errorf("preset %q missing", n)
		}
	}
	nurse, _ := LookupPreset("nurse")
	wantNurse := []record.Category{record.Medications, record.Allergies, record.Vitals, record.Immunizations}
	if !slices.Equal(nurse.Scope.Categories, wantNurse) {
		t.Errorf("nurse: %v", nurse.Scope.Categories)
	}
	nurse.Scope.Categories[0] = record.Genomics
	if again, _ := LookupPreset("nurse"); again.Scope.Categories[0] != record.Medications {
		t.Error("LookupPreset exposes the table")
	}
	if b, _ := LookupPreset("billing"); !slices.Equal(b.Scope.Categories, []record.Category{record.Billing}) || b.Purpose != Payment {
		t.Error("billing")
	}
	if e, _ := LookupPreset("emergency"); !e.Scope.EmergencySummary || len(e.Scope.Categories) != 0 {
		t.Error("emergency")
	}
	if _, err := LookupPreset("admin"); !errors.Is(err, ErrUnknownPreset) {
		t.Error(err)
	}
}

// TestServeConcurrentReplay sends one request from many goroutines at once:
// exactly one is served.
func TestServeConcurrentReplay(t *testing.T) {
	m := newTestState()
	g := mustGrant(t, baseParams())
	now := t0.Add(time.Minute)
	r := mustRequest(t, provider, RequestParams{Grant: g.ID(), Items: []record.ID{recLab.ID}}, now)
	const n = 16
	results := make(chan Decision, n)
	for range n {
		go func() { results <- m.Serve(g, r, provider.ID(), now) }()
	}
	allowed := 0
	for range n {
		d := <-results
		switch {
		case d.Allowed:
			allowed++
		case d.Reason != ReasonNonceReused:
			t.Errorf("unexpected reason %s", d.Reason)
		}
	}
	if allowed != 1 {
		t.Fatalf("%d copies of one request served, want 1", allowed)
	}
	m.RemoveRecord(recLab.ID)
	r2 := mustRequest(t, provider, RequestParams{Grant: g.ID(), Items: []record.ID{recLab.ID}}, now)
	if d := m.Serve(g, r2, provider.ID(), now); d.Reason != ReasonOutOfScope {
		t.Fatalf("removed record: %s", d.Reason)
	}
}

// WithheldLabels counts the withheld records per label, in the labels'
// order, leaving out the labels the grant names.
func TestWithheldLabels(t *testing.T) {
	a, b, c := record.ID{1}, record.ID{2}, record.ID{3}
	labels := map[record.ID][]record.Label{a: {record.MH}, b: {record.MH, record.SUD}, c: {record.HIV, record.SUD}}
	sel := Selection{Withheld: []Denial{{ID: a}, {ID: b}, {ID: c}}}
	got := sel.WithheldLabels(func(id record.ID) []record.Label { return labels[id] }, []record.Label{record.HIV})
	want := []LabelCount{{record.MH, 2}, {record.SUD, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
}
