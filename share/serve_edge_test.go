package share

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// onFirstMeta runs hook, once, as the patient's node writes its first M
// frame: between the decision and the sending of the other records.
type onFirstMeta struct {
	Framer
	hook func(first record.ID)
	done bool
}

func (o *onFirstMeta) WriteFrame(typ byte, p []byte) error {
	if typ == frameMeta && !o.done {
		o.done = true
		var sm sharedMeta
		if err := json.Unmarshal(p, &sm); err != nil {
			return err
		}
		id, err := record.ParseID(sm.ID)
		if err != nil {
			return err
		}
		o.hook(id)
	}
	return o.Framer.WriteFrame(typ, p)
}

// twoLabs is a patient with two lab records, a provider, and a grant of
// labs without any sensitivity label.
func twoLabs(t testing.TB) (patient, provider *vault.Vault, g *Grant, ids []record.ID) {
	t.Helper()
	patient = openVault(t, "Ada", identity.Patient)
	provider = openVault(t, "Dr. Hopper", identity.Provider)
	for _, s := range []string{"ferritin 80", "lithium 0.8 mmol/L"} {
		m, err := patient.Add(strings.NewReader(s), vault.NewRecord{Category: record.Labs, Title: s})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	return patient, provider, pinAndGrantLabs(t, patient, provider), ids
}

// serveWith runs one request between the two vaults, the patient's side
// of the stream wrapped by wrap.
func serveWith(t testing.TB, patient, provider *vault.Vault, g *Grant, wrap func(Framer) Framer) (*Served, *FetchResult, error) {
	t.Helper()
	a, b := net.Pipe()
	served := make(chan *Served, 1)
	go func() {
		sv, _ := ServeConn(patient, wrap(frame.NewConn(a, nil)), provider.Owner().ID(), time.Now)
		a.Close() // as the p2p handler does: a clean close, not a reset
		served <- sv
	}()
	res, err := FetchConn(provider, frame.NewConn(b, nil), g, time.Now(), nil)
	b.Close()
	return <-served, res, err
}

// A record the patient labels sensitive, or removes, while its node is
// sending the others is not sent: the per-item rule runs again on the
// metadata that would go out (TOKEN.md 8.2), and the provider is told the
// record was withdrawn.
func TestChangedAfterDecisionWithdrawn(t *testing.T) {
	for name, change := range map[string]func(v *vault.Vault, id record.ID) error{
		"relabelled": func(v *vault.Vault, id record.ID) error {
			_, _, err := v.SetLabels(id, []record.Label{record.MH}, nil)
			return err
		},
		"removed": func(v *vault.Vault, id record.ID) error { return v.Remove(id) },
	} {
		t.Run(name, func(t *testing.T) {
			patient, provider, g, ids := twoLabs(t)
			var other record.ID
			sv, res, err := serveWith(t, patient, provider, g, func(f Framer) Framer {
				return &onFirstMeta{Framer: f, hook: func(first record.ID) {
					other = ids[0]
					if first == ids[0] {
						other = ids[1]
					}
					if err := change(patient, other); err != nil {
						t.Error(err)
					}
				}}
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Records != 1 || !slices.Equal(res.Withdrawn, []record.ID{other}) || len(res.Withheld) != 0 {
				t.Fatalf("provider: %d record(s), withdrawn %v, withheld %v; want 1, [%s], none", res.Records, res.Withdrawn, res.Withheld, other)
			}
			if sv.Sent != 1 || !slices.Equal(sv.Withdrawn, []record.ID{other}) {
				t.Fatalf("patient: sent %d, withdrawn %v", sv.Sent, sv.Withdrawn)
			}
			checkNotSentLogged(t, patient, provider.Owner().ID(), g, other, "withdrawn", 1)
			ms, err := provider.List(vault.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if m.SourceID == other || len(m.Labels) != 0 {
					t.Fatalf("the provider holds %s labelled %v", m.SourceID, m.Labels)
				}
			}
		})
	}
}

// noEnd is a patient's node that fails instead of sending E, as it does
// when a record fails late, and then closes the stream cleanly.
type noEnd struct{ Framer }

func (n *noEnd) WriteFrame(typ byte, p []byte) error {
	if typ == frameEnd {
		return errors.New("test: no E")
	}
	return n.Framer.WriteFrame(typ, p)
}

// A stream that ends cleanly inside a record has not delivered it, even
// when the bytes that came form a whole age file: only E ends a record.
func TestCleanEndInsideRecordIsCut(t *testing.T) {
	patient, provider, g, _ := twoLabs(t)
	_, res, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return &noEnd{f} })
	if err == nil || !strings.Contains(err.Error(), "connection lost") || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("fetch: %v, want a lost connection", err)
	}
	if ms, _ := provider.List(vault.Filter{}); len(ms) != 0 || res.Records != 0 {
		t.Fatalf("stored %d record(s) (result says %d) without their E frame", len(ms), res.Records)
	}
}

// cleanEndAfter closes the stream cleanly after n chunk frames.
type cleanEndAfter struct {
	Framer
	n int
}

func (c *cleanEndAfter) WriteFrame(typ byte, p []byte) error {
	if typ == frameChunk {
		if c.n == 0 {
			return errors.New("test: stop")
		}
		c.n--
	}
	return c.Framer.WriteFrame(typ, p)
}

// A clean end of stream inside a resumed record keeps the partial, grown
// by what arrived, as a broken connection does.
func TestCleanEndKeepsPartial(t *testing.T) {
	patient, provID, dir, g, content := resumeSetup(t)
	provider := openAt(t, dir, provID)
	defer provider.Close()
	if _, err := fetchCut(t, patient, provider, g, 12); err == nil {
		t.Fatal("the cut fetch succeeded")
	}
	parts, err := provider.Partials(patient.Owner().ID())
	if err != nil || len(parts) != 1 {
		t.Fatalf("partials after the cut: %v, %v", parts, err)
	}
	before := parts[0].Stored
	_, res, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return &cleanEndAfter{Framer: f, n: 3} })
	if err == nil || !res.Kept {
		t.Fatalf("fetch: kept %v, %v; want the partial kept and an error", res.Kept, err)
	}
	parts, err = provider.Partials(patient.Owner().ID())
	if err != nil || len(parts) != 1 || parts[0].Stored <= before {
		t.Fatalf("partials after a clean end: %v, %v (stored %d before)", parts, err, before)
	}
	// And the next fetch completes it.
	if res, err := serveAll(t, patient, provider, g); err != nil || res.Records != 1 || res.Resumed != 1 {
		t.Fatalf("resume: %+v, %v", res, err)
	}
	ms, _ := provider.List(vault.Filter{})
	var got bytes.Buffer
	if len(ms) != 1 {
		t.Fatalf("%d records", len(ms))
	}
	if _, err := provider.Get(ms[0].ID, &got); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("the resumed record is not the patient's: %v", err)
	}
}

func serveAll(t *testing.T, patient, provider *vault.Vault, g *Grant) (*FetchResult, error) {
	_, res, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return f })
	return res, err
}

// lateDenial ends the response with a D whose reason carries terminal
// escapes in place of Z.
type lateDenial struct{ Framer }

func (l *lateDenial) WriteFrame(typ byte, p []byte) error {
	if typ == frameDone {
		return l.Framer.WriteFrame(frameDenied, []byte("\x1b]0;owned\a\x1b[2Jfake"))
	}
	return l.Framer.WriteFrame(typ, p)
}

// A refusal's reason reaches the provider's terminal as printable ASCII,
// after the receipt as before it.
func TestLateDenialReasonSanitized(t *testing.T) {
	patient, provider, g, _ := twoLabs(t)
	_, _, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return &lateDenial{f} })
	if err == nil || strings.ContainsAny(err.Error(), "\x1b\a") || !strings.Contains(err.Error(), "fake") {
		t.Fatalf("fetch: %q", err)
	}
}

// A record the provider already holds whole, sent again because the have
// frame could not list it (more than 65,536 held), is read and dropped.
func TestHeldRecordSentAgainDropped(t *testing.T) {
	provider := openVault(t, "Dr", identity.Provider)
	patient, _ := identity.Generate("P", identity.Patient)
	g, err := IssueGrant(patient, GrantParams{Audience: provider.Owner().ID(), Vault: VaultID{1},
		Scope: Scope{Categories: []record.Category{record.Labs}}, Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	w, _ := age.Encrypt(&file, provider.Owner().Recipient())
	w.Write([]byte("hello"))
	w.Close()
	src := record.ID{0x11, 0x22}
	meta := []byte(`{"id":"` + src.String() + `","title":"t","category":"labs","size":5}`)
	frames, _ := frame.AppendFrame(nil, frameChunk, file.Bytes())
	frames, _ = frame.AppendFrame(frames, frameEnd, nil)
	accept := func(record.ID) error { return nil }
	in := &scripted{frames}
	m, err := receiveRecord(provider, in, g, meta, &FetchResult{}, map[record.ID]bool{src: true}, nil, nil, accept)
	if err != nil || m != nil || len(in.b) != 0 {
		t.Fatalf("held record: %v, %v, %d bytes left unread", m, err, len(in.b))
	}
	if ms, _ := provider.List(vault.Filter{}); len(ms) != 0 {
		t.Fatal("a record already held was stored again")
	}
	// Its frames are still checked.
	bad, _ := frame.AppendFrame(nil, frameChunk, file.Bytes())
	bad, _ = frame.AppendFrame(bad, frameEnd, []byte{1})
	if _, err := receiveRecord(provider, &scripted{bad}, g, meta, &FetchResult{}, map[record.ID]bool{src: true}, nil, nil, accept); !errors.Is(err, ErrProtocol) {
		t.Fatalf("a held record with a bad end frame: %v", err)
	}
}

// miscount sends Z with a count one too high.
type miscount struct{ Framer }

func (m *miscount) WriteFrame(typ byte, p []byte) error {
	if typ == frameDone {
		return m.Framer.WriteFrame(frameDone, binary.BigEndian.AppendUint32(nil, binary.BigEndian.Uint32(p)+1))
	}
	return m.Framer.WriteFrame(typ, p)
}

// Z must count the records sent.
func TestDoneFrameCounted(t *testing.T) {
	patient, provider, g, _ := twoLabs(t)
	if _, _, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return &miscount{f} }); !errors.Is(err, ErrProtocol) {
		t.Fatalf("a miscounting end frame: %v", err)
	}
	if res, err := serveAll(t, patient, provider, g); err != nil || res.Records != 0 {
		t.Fatalf("fetch again: %+v, %v (the records arrived whole the first time)", res, err)
	}
}

// checkNotSentLogged asserts that the patient's ledger ends with the entry
// saying record id was admitted but not sent (action serve, outcome
// failed, reason why), and that the audit counts sent records sent to the
// provider.
func checkNotSentLogged(t *testing.T, patient *vault.Vault, provider identity.ID, g *Grant, id record.ID, why string, sent int) {
	t.Helper()
	n, err := patient.LedgerSize()
	if err != nil {
		t.Fatal(err)
	}
	var last *ledger.Entry
	if err := patient.Entries(n-1, func(_ int64, e *ledger.Entry) error { last = e; return nil }); err != nil {
		t.Fatal(err)
	}
	gid := g.ID()
	if last.Action != ledger.ActionServe || last.Outcome != ledger.OutcomeFailed || last.Reason != why ||
		len(last.Subjects) != 1 || !bytes.Equal(last.Subjects[0], id[:]) || !bytes.Equal(last.Grant, gid[:]) ||
		!bytes.Equal(last.Actor, provider.Bytes()) || last.Purpose != "TREAT" {
		t.Fatalf("last ledger entry: %+v; want serve failed %q for %s", last, why, id)
	}
	a, err := patient.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Actors) != 1 || a.Actors[0].Records != sent || a.Actors[0].Served != 1 || a.Actors[0].Denied != 0 {
		t.Fatalf("audit: %+v; want %d record(s) sent in 1 request, no denial", a.Actors, sent)
	}
}

// statesSize rewrites the size in every M frame the patient's node sends.
type statesSize struct {
	Framer
	size int64
}

func (s *statesSize) WriteFrame(typ byte, p []byte) error {
	if typ == frameMeta {
		var sm sharedMeta
		if err := json.Unmarshal(p, &sm); err != nil {
			return err
		}
		sm.Size = s.size
		b, err := json.Marshal(sm)
		if err != nil {
			return err
		}
		p = b
	}
	return s.Framer.WriteFrame(typ, p)
}

// A record larger than the provider's free disk (or a patient stating an
// absurd size) is refused before any of it is written: the fetch stops
// with a full-disk error, and the provider's vault holds no record and no
// partial of it. A size past any real record is a protocol error.
func TestRecordLargerThanDiskRefused(t *testing.T) {
	patient, provider, g, _ := twoLabs(t)
	_, _, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return &statesSize{Framer: f, size: 1 << 45} })
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "does not fit on the vault's disk") {
		t.Fatalf("fetch of a 32 TiB record: %v, want a full-disk error", err)
	}
	if ms, err := provider.List(vault.Filter{}); err != nil || len(ms) != 0 {
		t.Fatalf("the provider stored %d records (%v)", len(ms), err)
	}
	if ps, err := provider.Partials(g.Issuer()); err != nil || len(ps) != 0 {
		t.Fatalf("the provider kept %d partials (%v)", len(ps), err)
	}
	_, _, err = serveWith(t, patient, provider, g, func(f Framer) Framer { return &statesSize{Framer: f, size: 1<<62 + 1} })
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("a record stating 2^62 bytes: %v, want ErrProtocol", err)
	}
}

// A patient's node whose signed entry refuses the request admits nothing,
// even if the entry lists subjects: the provider stores no record it then
// sends, or the patient's own ledger would say the provider got records
// it was refused.
func TestRefusedReceiptAdmitsNothing(t *testing.T) {
	for name, ev := range map[string]vault.Event{
		"denied": {Action: ledger.ActionServe, Outcome: ledger.OutcomeDenied, Reason: string(ReasonRevoked)},
		"failed": {Action: ledger.ActionServe, Outcome: ledger.OutcomeFailed, Reason: withheldWithdrawn},
		"deny":   {Action: ledger.ActionDeny, Outcome: ledger.OutcomeOK},
	} {
		t.Run(name, func(t *testing.T) {
			patient, provider, g, ids := twoLabs(t)
			id := ids[0]
			a, b := net.Pipe()
			go func() {
				defer a.Close()
				c := frame.NewConn(a, nil)
				_, p, err := c.ReadFrame(maxRequest)
				if err != nil {
					return
				}
				raw := bytes.Clone(p)
				readHave(c, func(record.ID) {})
				c.ReadFrame(maxPartial)
				c.ReadFrame(ledger.MaxCheckpointSize)
				gid := g.ID()
				e := ev
				e.Actor, e.Grant, e.Request, e.Subjects = provider.Owner().ID(), gid[:], raw, [][]byte{id[:]}
				adm, err := patient.Admit(func(*vault.AdmitState) (vault.Decision, error) {
					return vault.Decision{Event: e, Allowed: []record.ID{id}}, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				c.WriteFrame(frameReceipt, encodeReceipt(&adm.Receipt))
				c.WriteFrame(frameExtends, nil)
				to, _ := age.ParseX25519Recipient(provider.Owner().Recipient().String())
				out, err := patient.Share(adm, id, to, 0)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := sendRecord(c, out); err == nil {
					c.WriteFrame(frameDone, binary.BigEndian.AppendUint32(nil, 1))
				}
			}()
			res, err := FetchConn(provider, frame.NewConn(b, nil), g, time.Now(), nil)
			b.Close()
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("fetch under a %s entry: %v, want a protocol violation", name, err)
			}
			if got, _ := provider.List(vault.Filter{}); len(got) != 0 || res != nil && res.Records != 0 {
				t.Fatalf("the provider stored %d record(s) under a %s entry", len(got), name)
			}
		})
	}
}

// floodingNode plays a patient's node whose receipt lists exactly
// ledger.MaxSubjects records (so it may continue in entries the receipt
// does not cover) and which then sends withheld frames for fresh record
// IDs without end.
type floodingNode struct {
	t        *testing.T
	patient  *vault.Vault
	provider identity.ID
	g        *Grant
	req      []byte
	sent     int // frames sent after the receipt
	receipt  []byte
}

func (f *floodingNode) WriteFrame(typ byte, p []byte) error {
	if typ == frameRequest {
		f.req = bytes.Clone(p)
	}
	return nil
}

func (f *floodingNode) ReadFrame(limit int) (byte, []byte, error) {
	switch {
	case f.receipt == nil:
		gid := f.g.ID()
		e := vault.Event{Action: ledger.ActionServe, Outcome: ledger.OutcomeOK, Actor: f.provider, Grant: gid[:], Request: f.req}
		for i := range ledger.MaxSubjects {
			id := rid(fmt.Sprint("listed ", i))
			e.Subjects = append(e.Subjects, id[:])
		}
		adm, err := f.patient.Admit(func(*vault.AdmitState) (vault.Decision, error) { return vault.Decision{Event: e}, nil })
		if err != nil {
			f.t.Fatal(err)
		}
		f.receipt = encodeReceipt(&adm.Receipt)
		return frameReceipt, f.receipt, nil
	case f.sent == 0:
		f.sent++
		return frameExtends, nil, nil
	case f.sent > maxUnlisted+10:
		return 0, nil, io.EOF // the provider should have stopped long ago
	}
	var id record.ID
	binary.BigEndian.PutUint64(id[8:], uint64(f.sent))
	f.sent++
	return frameWithheld, append(id[:], withheldWithdrawn...), nil
}

// A patient's node cannot make a provider remember without limit: under a
// receipt whose entry may continue beyond what it lists, the provider
// accepts any record ID, but no more than maxUnlisted records and withheld
// frames in all; more is a protocol violation.
func TestIncompleteReceiptBounded(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	g := pinAndGrantLabs(t, patient, provider)
	f := &floodingNode{t: t, patient: patient, provider: provider.Owner().ID(), g: g}
	res, err := FetchConn(provider, f, g, time.Now(), nil)
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("after %d withheld frames: %v, want a protocol violation", f.sent-1, err)
	}
	if n := len(res.Withheld) + len(res.Withdrawn); n != maxUnlisted {
		t.Fatalf("the provider kept %d withheld records, want %d", n, maxUnlisted)
	}
}

// hangUp closes the provider's connection once it has read a frame of
// type read, or as it writes one of type write: a provider that stops
// reading, or whose connection drops, right there.
type hangUp struct {
	Framer
	conn        net.Conn
	read, write byte
}

func (h *hangUp) ReadFrame(limit int) (byte, []byte, error) {
	typ, p, err := h.Framer.ReadFrame(limit)
	if err == nil && typ == h.read {
		h.conn.Close()
	}
	return typ, p, err
}

func (h *hangUp) WriteFrame(typ byte, p []byte) error {
	if typ == h.write {
		h.conn.Close()
	}
	return h.Framer.WriteFrame(typ, p)
}

// An answer that breaks off sends fewer records than the decision
// admitted: the patient's ledger lists the others as not sent (reason
// "cut"), the record being sent among them, and 'medvault audit' counts
// only the records the provider received.
func TestCutAnswerLogsUnsent(t *testing.T) {
	for _, tc := range []struct {
		name        string
		read, write byte // where the provider hangs up
		sent        int
	}{
		{"provider stops reading after the first record", frameEnd, 0, 1},
		{"connection drops inside the first record", frameChunk, 0, 0},
		{"connection drops before the request is complete", 0, frameHave, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patient, provider, g := labsGrant(t)
			for i := range 9 {
				if _, err := patient.Add(strings.NewReader(fmt.Sprint("lab ", i)), vault.NewRecord{Category: record.Labs}); err != nil {
					t.Fatal(err)
				}
			}
			a, b := net.Pipe()
			served := make(chan *Served, 1)
			go func() {
				sv, err := ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now)
				if err == nil {
					t.Error("an answer that broke off ended without an error")
				}
				a.Close()
				served <- sv
			}()
			res, err := FetchConn(provider, &hangUp{Framer: frame.NewConn(b, nil), conn: b, read: tc.read, write: tc.write}, g, time.Now(), nil)
			sv := <-served
			if err == nil || res != nil && res.Records != tc.sent || sv.Sent != tc.sent {
				t.Fatalf("fetch: %+v %v; node sent %d; want %d record(s) and an error", res, err, sv.Sent, tc.sent)
			}
			var unsent int
			patient.Entries(0, func(_ int64, e *ledger.Entry) error {
				if e.Action == ledger.ActionServe && e.Outcome == ledger.OutcomeFailed {
					if e.Reason != unsentCut {
						t.Errorf("admitted records not sent logged with reason %q, want %q", e.Reason, unsentCut)
					}
					unsent += len(e.Subjects)
				}
				return nil
			})
			if unsent != 10-tc.sent {
				t.Errorf("the ledger says %d admitted records were not sent, want %d", unsent, 10-tc.sent)
			}
			au, err := patient.Audit()
			if err != nil {
				t.Fatal(err)
			}
			if len(au.Actors) != 1 || au.Actors[0].Records != tc.sent || au.Actors[0].Served != 1 {
				t.Fatalf("audit: %+v; want %d record(s) received in 1 request", au.Actors, tc.sent)
			}
		})
	}
}

// A provider fetching again under a grant is sent nothing it holds, and
// the patient's log says so: the decision's entry lists the admitted
// records, and an ok entry with reason "held" names those not sent again,
// so a record read once does not read as read twice (audit: 2 records, 2
// requests). A third record added meanwhile is the only one sent.
func TestFetchAgainLogsHeld(t *testing.T) {
	patient, provider, g, ids := twoLabs(t)
	if res, err := exchange(t, patient, provider, provider.Owner().ID(), g); err != nil || res.Records != 2 {
		t.Fatalf("first fetch: %+v, %v", res, err)
	}
	third, err := patient.Add(strings.NewReader("LDL 2.9 mmol/L"), vault.NewRecord{Category: record.Labs})
	if err != nil {
		t.Fatal(err)
	}
	before, err := patient.LedgerSize()
	if err != nil {
		t.Fatal(err)
	}
	if res, err := exchange(t, patient, provider, provider.Owner().ID(), g); err != nil || res.Records != 1 {
		t.Fatalf("second fetch: %+v, %v", res, err)
	}
	var es []*ledger.Entry
	patient.Entries(before, func(_ int64, e *ledger.Entry) error { es = append(es, e); return nil })
	if len(es) != 2 || es[0].Outcome != ledger.OutcomeOK || es[0].Reason != "" || len(es[0].Subjects) != 3 {
		t.Fatalf("second fetch logged %d entries, first %+v; want the decision over 3 records, then held", len(es), es[0])
	}
	held := es[1]
	gid := g.ID()
	if held.Action != ledger.ActionServe || held.Outcome != ledger.OutcomeOK || held.Reason != "held" || !bytes.Equal(held.Grant, gid[:]) ||
		!bytes.Equal(held.Actor, provider.Owner().ID().Bytes()) || len(held.Subjects) != 2 {
		t.Fatalf("held entry: %+v", held)
	}
	for _, s := range held.Subjects {
		if !bytes.Equal(s, ids[0][:]) && !bytes.Equal(s, ids[1][:]) || bytes.Equal(s, third.ID[:]) {
			t.Errorf("held names %x, want only the two records fetched before", s)
		}
	}
	a, err := patient.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Actors) != 1 || a.Actors[0].Records != 3 || a.Actors[0].Served != 2 {
		t.Fatalf("audit: %+v; want 3 records sent in 2 requests", a.Actors)
	}
	// A third fetch: everything held, nothing sent, all of it said.
	before, _ = patient.LedgerSize()
	if res, err := exchange(t, patient, provider, provider.Owner().ID(), g); err != nil || res.Records != 0 {
		t.Fatalf("third fetch: %+v, %v", res, err)
	}
	es = es[:0]
	patient.Entries(before, func(_ int64, e *ledger.Entry) error { es = append(es, e); return nil })
	if len(es) != 2 || es[1].Reason != "held" || len(es[1].Subjects) != 3 {
		t.Fatalf("third fetch logged %d entries", len(es))
	}
}
