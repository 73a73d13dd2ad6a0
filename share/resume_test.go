package share

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// resumeSetup gives a patient with one 5 MiB imaging record granted to a
// provider whose vault lives in dir (so the test can reopen it).
func resumeSetup(t *testing.T) (patient *vault.Vault, provID *identity.Identity, dir string, g *Grant, content []byte) {
	t.Helper()
	patient = openVault(t, "Ada", identity.Patient)
	provID, err := identity.Generate("Dr. Hopper", identity.Provider)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if err := vault.Create(dir, provID, vault.Options{}); err != nil {
		t.Fatal(err)
	}
	content = make([]byte, 5<<20)
	rand.NewChaCha8([32]byte{7}).Read(content)
	if _, err := patient.Add(bytes.NewReader(content), vault.NewRecord{Category: record.Imaging, Title: "MRI"}); err != nil {
		t.Fatal(err)
	}
	pv := openAt(t, dir, provID)
	SaveContact(patient, "dr", cardOf(t, pv), false)
	pv.Close()
	g, err = IssueAndStore(patient, GrantParams{Audience: provID.ID(), Scope: Scope{Categories: []record.Category{record.Imaging}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return patient, provID, dir, g, content
}

func openAt(t *testing.T, dir string, id *identity.Identity) *vault.Vault {
	t.Helper()
	v, err := vault.Open(dir, id, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fetchCut fetches with the connection cut after n chunk frames.
func fetchCut(t *testing.T, patient, provider *vault.Vault, g *Grant, n int) (*FetchResult, error) {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now)
		a.Close()
		close(done)
	}()
	res, err := FetchConn(provider, &cutAfter{Framer: frame.NewConn(b, nil), n: n}, g, time.Now(), nil)
	b.Close()
	<-done
	return res, err
}

// A connection cut in the middle of a large record keeps what arrived,
// across a restart of the provider, and the next fetch carries only the
// rest; the record then decrypts to the original and verify passes.
func TestFetchResumesMidRecord(t *testing.T) {
	patient, provID, dir, g, content := resumeSetup(t)
	provider := openAt(t, dir, provID)
	// 5 MiB in 256 KiB chunk frames: cut after 12 of about 21.
	if _, err := fetchCut(t, patient, provider, g, 12); err == nil {
		t.Fatal("the cut fetch succeeded")
	}
	if ms, _ := provider.List(vault.Filter{}); len(ms) != 0 {
		t.Fatalf("a partial record is listed: %d records", len(ms))
	}
	provider.Close()
	provider = openAt(t, dir, provID)
	defer provider.Close()
	parts, err := provider.Partials(patient.Owner().ID())
	if err != nil || len(parts) != 1 {
		t.Fatalf("partials after a restart: %v, %v", parts, err)
	}
	if off := parts[0].PayloadOffset(); off != 12*256<<10-parts[0].HeaderLen {
		t.Fatalf("payload offset %d, want %d", off, 12*256<<10-parts[0].HeaderLen)
	}
	if rep, err := provider.Verify(true); err != nil {
		t.Fatalf("verify with a partial record: %v %v", err, rep.Problems)
	}
	res, err := exchange(t, patient, provider, provID.ID(), g)
	if err != nil || res.Records != 1 {
		t.Fatalf("resumed fetch: %+v, %v", res, err)
	}
	// The age file is header, 16-byte nonce, and the content in 64 KiB
	// pieces of 16 bytes' overhead each; 12 frames of 256 KiB had arrived.
	file := parts[0].HeaderLen + 16 + int64(len(content)) + int64(len(content))/(64<<10)*16
	if want := file - 12*256<<10; res.Bytes != want {
		t.Fatalf("the resumed fetch carried %d bytes, want only the rest (%d)", res.Bytes, want)
	}
	ms, _ := provider.List(vault.Filter{})
	if len(ms) != 1 {
		t.Fatalf("%d records after the resume", len(ms))
	}
	var got bytes.Buffer
	if _, err := provider.Get(ms[0].ID, &got); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("resumed record differs from the original (%v)", err)
	}
	if parts, _ := provider.Partials(patient.Owner().ID()); len(parts) != 0 {
		t.Fatalf("%d partials left after completing", len(parts))
	}
	if rep, err := provider.Verify(true); err != nil {
		t.Fatalf("verify after the resume: %v %v", err, rep.Problems)
	}
}

// A partial record whose stored bytes were altered is not completed: the
// resumed record fails age's authentication, nothing is stored, the partial
// is dropped, and the fetch after that gets the record whole.
func TestResumeRefusesAlteredPartial(t *testing.T) {
	patient, provID, dir, g, content := resumeSetup(t)
	provider := openAt(t, dir, provID)
	if _, err := fetchCut(t, patient, provider, g, 8); err == nil {
		t.Fatal("the cut fetch succeeded")
	}
	parts, _ := provider.Partials(patient.Owner().ID())
	if len(parts) != 1 {
		t.Fatalf("%d partials", len(parts))
	}
	provider.Close()
	flipChunkByte(t, dir, parts[0].ID, 3, 100)
	provider = openAt(t, dir, provID)
	defer provider.Close()
	// The provider's own copy changed: not the patient's fault.
	if _, err := exchange(t, patient, provider, provID.ID(), g); !errors.Is(err, vault.ErrTampered) || errors.Is(err, ErrProtocol) {
		t.Fatalf("an altered partial: %v", err)
	}
	if ms, _ := provider.List(vault.Filter{}); len(ms) != 0 {
		t.Fatalf("%d records stored from an altered partial", len(ms))
	}
	if parts, _ := provider.Partials(patient.Owner().ID()); len(parts) != 0 {
		t.Fatal("the altered partial was kept")
	}
	res, err := exchange(t, patient, provider, provID.ID(), g)
	if err != nil || res.Records != 1 {
		t.Fatalf("fetch after dropping the partial: %+v %v", res, err)
	}
	ms, _ := provider.List(vault.Filter{})
	var got bytes.Buffer
	if _, err := provider.Get(ms[0].ID, &got); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("record differs (%v)", err)
	}
}

// The patient's node takes any H and P frames a provider sends: offsets
// past the payload, zero, huge, for records not admitted, repeated,
// truncated. It answers with whole records or with the rest after a valid
// offset, never more bytes than the stored file, and ends with Z.
func FuzzServePartials(f *testing.F) {
	patient := openVault(f, "Ada", identity.Patient)
	provider := openVault(f, "Dr", identity.Provider)
	content := bytes.Repeat([]byte("scan "), 200_000) // ~1 MiB
	m, err := patient.Add(bytes.NewReader(content), vault.NewRecord{Category: record.Imaging})
	if err != nil {
		f.Fatal(err)
	}
	SaveContact(patient, "dr", cardOf(f, provider), false)
	g, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Imaging}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	entry := func(id record.ID, off uint64) []byte {
		return binary.BigEndian.AppendUint64(bytes.Clone(id[:]), off)
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte{}, entry(m.ID, 1000))
	f.Add([]byte{}, entry(m.ID, 1<<40))
	f.Add([]byte{}, entry(m.ID, 1<<63))
	f.Add([]byte{}, entry(m.ID, 1<<63-1)) // the largest positive offset: n+offset overflowed
	f.Add([]byte{}, entry(m.ID, 1<<63-100))
	f.Add([]byte{}, append(entry(m.ID, 5), entry(m.ID, 7)...))
	f.Add(bytes.Clone(m.ID[:]), entry(m.ID, 5))
	f.Add(append(bytes.Repeat([]byte{0xff}, 16), m.ID[:]...), []byte{}) // out of order
	f.Add(append(bytes.Clone(m.ID[:]), m.ID[:]...), []byte{})           // repeated
	f.Add([]byte{}, entry(record.NewID(), 5))
	f.Add([]byte{}, entry(m.ID, 9)[:20])
	max := int64(len(content)) + int64(len(content))/(64<<10)*16 + 64<<10
	f.Fuzz(func(t *testing.T, have, partial []byte) {
		req, err := NewRequest(provider.Owner(), RequestParams{Grant: g.ID(), All: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		a, b := net.Pipe()
		defer b.Close()
		go func() { ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now); a.Close() }()
		c := frame.NewConn(b, nil)
		c.WriteFrame(frameRequest, req.Bytes())
		c.WriteFrame(frameHave, have)
		c.WriteFrame(framePartial, partial)
		c.WriteFrame(frameSeen, nil)
		var sent int64
		for {
			typ, p, err := c.ReadFrame(maxReceipt)
			if err != nil {
				// The node ends the exchange on a malformed H or P frame.
				if len(have)%16 == 0 && ascending(have) && len(partial)%partialEntry == 0 {
					t.Fatalf("well-formed frames, exchange ended: %v", err)
				}
				return
			}
			switch typ {
			case frameChunk:
				if sent += int64(len(p)); sent > max {
					t.Fatalf("sent %d bytes for a %d-byte record", sent, len(content))
				}
			case frameEnd:
				sent = 0
			case frameDone, frameDenied:
				return
			}
		}
	})
}

// A record whose stored bytes are not what the patient's ledger committed
// to is not delivered: the node stops before E, and the provider stores no
// record (what arrived waits as a partial, which the same check stops
// again).
func TestSendRefusesDamagedRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunk  uint32
		offset int
		want   string
	}{
		// The payload: the provider's check refuses the chunk.
		{"payload", 9, 1000, "arrived damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patient, provID, dir, g, _ := resumeSetup(t)
			provider := openAt(t, dir, provID)
			defer provider.Close()
			pdir, pid := patient.Dir(), patient.Owner()
			ms, _ := patient.List(vault.Filter{})
			patient.Close()
			flipChunkByte(t, pdir, ms[0].ID, tc.chunk, tc.offset)
			patient = openAt(t, pdir, pid)
			defer patient.Close()
			for range 2 {
				_, err := exchange(t, patient, provider, provID.ID(), g)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("a damaged record: %v", err)
				}
				if ms, _ := provider.List(vault.Filter{}); len(ms) != 0 {
					t.Fatalf("the provider stored %d records", len(ms))
				}
				if ps, _ := provider.Partials(pid.ID()); len(ps) != 0 {
					t.Fatalf("the provider kept %d partials of a damaged record", len(ps))
				}
			}
		})
	}
}

// A record whose stored header is not its own is withheld: the patient's
// node sends nothing of it, says so in a W frame, and sends the other
// admitted records.
func TestDamagedRecordWithheld(t *testing.T) {
	patient, provID, dir, g, content := resumeSetup(t)
	provider := openAt(t, dir, provID)
	defer provider.Close()
	other, err := patient.Add(bytes.NewReader([]byte("CT report")), vault.NewRecord{Category: record.Imaging})
	if err != nil {
		t.Fatal(err)
	}
	var damaged record.ID
	ms, _ := patient.List(vault.Filter{})
	for _, m := range ms {
		if m.ID != other.ID {
			damaged = m.ID
		}
	}
	pdir, pid := patient.Dir(), patient.Owner()
	patient.Close()
	flipChunkByte(t, pdir, damaged, 0, 40)
	patient = openAt(t, pdir, pid)
	defer patient.Close()

	a, b := net.Pipe()
	served := make(chan *Served, 1)
	go func() {
		sv, _ := ServeConn(patient, frame.NewConn(a, nil), provID.ID(), time.Now)
		a.Close()
		served <- sv
	}()
	res, err := FetchConn(provider, frame.NewConn(b, nil), g, time.Now(), nil)
	b.Close()
	sv := <-served
	if err != nil || res.Records != 1 || len(res.Withheld) != 1 || res.Withheld[0] != damaged {
		t.Fatalf("fetch: %+v %v", res, err)
	}
	if sv.Sent != 1 || len(sv.Withheld) != 1 || sv.Withheld[0] != damaged {
		t.Fatalf("served: %+v", sv)
	}
	checkNotSentLogged(t, patient, provID.ID(), g, damaged, "damaged", 1)
	got, _ := provider.List(vault.Filter{})
	if len(got) != 1 || got[0].SourceID != other.ID {
		t.Fatalf("the provider stored %d records", len(got))
	}
	var buf bytes.Buffer
	if _, err := provider.Get(got[0].ID, &buf); err != nil || bytes.Equal(buf.Bytes(), content) || buf.String() != "CT report" {
		t.Fatalf("stored record: %q %v", buf.String(), err)
	}
}

// A provider keeps at most maxPartials partial records per patient.
func TestPartialsCapped(t *testing.T) {
	patient, provID, dir, g, _ := resumeSetup(t)
	provider := openAt(t, dir, provID)
	defer provider.Close()
	r := provID.Recipient()
	for i := range maxPartials + 3 {
		var b bytes.Buffer
		w, _ := age.Encrypt(&b, r)
		w.Write(bytes.Repeat([]byte{byte(i)}, 600<<10))
		w.Close()
		_, err := provider.AddCiphertext(&brokenReader{bytes.NewReader(b.Bytes()[:300<<10])}, vault.NewRecord{Category: record.Imaging},
			vault.Received{From: patient.Owner().ID(), SourceID: record.NewID(), KeepPartial: func(error) bool { return true }})
		if !errors.Is(err, vault.ErrPartialKept) {
			t.Fatal(err)
		}
	}
	// A refused fetch (revoked) still trims them before asking.
	issued, err := FindIssued(patient, g.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := RevokeAndStore(patient, issued, time.Now()); err != nil {
		t.Fatal(err)
	}
	exchange(t, patient, provider, provID.ID(), g)
	if ps, _ := provider.Partials(patient.Owner().ID()); len(ps) != maxPartials {
		t.Fatalf("%d partials kept, want %d", len(ps), maxPartials)
	}
}

// brokenReader yields r, then fails like a cut connection.
type brokenReader struct{ r *bytes.Reader }

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.r.Len() == 0 {
		return 0, errors.New("connection reset")
	}
	return b.r.Read(p)
}

// flipChunkByte changes one byte of chunk i of record id in the closed
// vault in dir, as damage or an attacker with the file would.
func flipChunkByte(t *testing.T, dir string, id record.ID, i uint32, off int) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, vault.DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("chunks"))
		k := binary.BigEndian.AppendUint32(bytes.Clone(id[:]), i)
		v := bytes.Clone(b.Get(k))
		v[off] ^= 0x40
		return b.Put(k, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// beforeDone hands the provider extra frames just before the patient's Z,
// as a patient node could send them.
type beforeDone struct {
	Framer
	extra [][]byte // each a type byte and a payload
	held  []byte
}

func (f *beforeDone) ReadFrame(limit int) (byte, []byte, error) {
	if len(f.extra) > 0 && f.held != nil {
		x := f.extra[0]
		f.extra = f.extra[1:]
		return x[0], x[1:], nil
	}
	if f.held != nil {
		p := f.held
		f.held = nil
		return frameDone, p, nil
	}
	typ, p, err := f.Framer.ReadFrame(limit)
	if err == nil && typ == frameDone && len(f.extra) > 0 {
		f.held = bytes.Clone(p)
		return f.ReadFrame(limit)
	}
	return typ, p, err
}

// Withheld frames name a record the receipt admits, once, and are well
// formed; anything else is the patient's node breaking the protocol.
func TestWithheldFramesChecked(t *testing.T) {
	patient, provID, _, g, _ := resumeSetup(t)
	ms, _ := patient.List(vault.Filter{})
	sent := ms[0].ID
	notAdmitted := record.NewID()
	for name, w := range map[string][]byte{
		"not admitted": append([]byte{frameWithheld}, append(notAdmitted[:], "damaged"...)...),
		"sent already": append([]byte{frameWithheld}, append(sent[:], "damaged"...)...),
		"too short":    {frameWithheld, 1, 2, 3},
		"reason long":  append([]byte{frameWithheld}, append(sent[:], bytes.Repeat([]byte("x"), maxReason+1)...)...),
	} {
		t.Run(name, func(t *testing.T) {
			pdir := t.TempDir()
			if err := vault.Create(pdir, provID, vault.Options{}); err != nil {
				t.Fatal(err)
			}
			provider := openAt(t, pdir, provID)
			defer provider.Close()
			a, b := net.Pipe()
			go func() { ServeConn(patient, frame.NewConn(a, nil), provID.ID(), time.Now); a.Close() }()
			_, err := FetchConn(provider, &beforeDone{Framer: frame.NewConn(b, nil), extra: [][]byte{w}}, g, time.Now(), nil)
			b.Close()
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("%s: %v", name, err)
			}
		})
	}
}

// ascending reports whether have lists 16-byte IDs in strictly ascending
// order, as have frames must.
func ascending(have []byte) bool {
	for i := 16; i+16 <= len(have); i += 16 {
		if bytes.Compare(have[i-16:i], have[i:i+16]) >= 0 {
			return false
		}
	}
	return true
}

// Two fetches from one patient that overlap (in the provider's node, a
// script's and a person's) store each record once: each lists what the
// vault holds before it asks, so at once they both asked for everything.
func TestOverlappingFetchesStoreOnce(t *testing.T) {
	patient, provID, dir, g, _ := resumeSetup(t)
	provider := openAt(t, dir, provID)
	defer provider.Close()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := exchange(t, patient, provider, provID.ID(), g); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	ms, err := provider.List(vault.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Fatalf("the patient shared 1 record; the provider holds %d after two overlapping fetches", len(ms))
	}
}
