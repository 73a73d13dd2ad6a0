package share

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// timedConn is a Framer with a movable stream end, as a p2p.Stream has; it
// records the end in force at each read.
type timedConn struct {
	Framer
	end   time.Time
	reads []time.Time
}

func (c *timedConn) Deadline() time.Time     { return c.end }
func (c *timedConn) SetDeadline(t time.Time) { c.end = t }
func (c *timedConn) ReadFrame(limit int) (byte, []byte, error) {
	c.reads = append(c.reads, c.end)
	return c.Framer.ReadFrame(limit)
}

// The request must be in within RequestTimeout, however slowly a peer sends
// it; the answer then has the stream's whole life again.
func TestRequestPhaseDeadline(t *testing.T) {
	patient, provider, g := labsGrant(t)
	a, b := net.Pipe()
	defer a.Close()
	life := time.Now().Add(time.Hour)
	tc := &timedConn{Framer: frame.NewConn(a, nil), end: life}
	start := time.Now()
	done := make(chan struct{})
	go func() { ServeConn(patient, tc, provider.Owner().ID(), time.Now); a.Close(); close(done) }()
	res, err := FetchConn(provider, frame.NewConn(b, nil), g, time.Now(), nil)
	b.Close()
	<-done
	if err != nil || res.Records != 1 {
		t.Fatalf("fetch: %+v %v", res, err)
	}
	if len(tc.reads) < 3 {
		t.Fatalf("%d reads", len(tc.reads))
	}
	for i, end := range tc.reads {
		if end.After(start.Add(RequestTimeout+time.Second)) || end.Before(start) {
			t.Errorf("read %d of the request ran under an end %v after the start, want at most %v", i, end.Sub(start), RequestTimeout)
		}
	}
	if !tc.end.Equal(life) {
		t.Errorf("after the request the stream ends at %v, want its life back (%v)", tc.end, life)
	}
}

// Strangers (not contacts) can hold at most MaxStrangers requests at once;
// the next is dropped unread, and contacts are still served.
func TestStrangersBusy(t *testing.T) {
	patient, provider, g := labsGrant(t)
	l := NewLimiter(20, time.Second)
	// Strangers that open a stream and send nothing.
	var held []net.Conn
	done := make(chan *Served, MaxStrangers+1)
	for range MaxStrangers {
		a, b := net.Pipe()
		held = append(held, b)
		stranger := openVault(t, "Eve", identity.Patient).Owner().ID()
		go func() {
			sv, _ := l.ServeConn(patient, frame.NewConn(a, nil), stranger, time.Now)
			a.Close()
			done <- sv
		}()
	}
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.strangers == MaxStrangers })
	a, b := net.Pipe()
	defer b.Close()
	sv, err := l.ServeConn(patient, frame.NewConn(a, nil), openVault(t, "Mallory", identity.Patient).Owner().ID(), time.Now)
	if err != nil || sv.Reason != ReasonBusy {
		t.Fatalf("one stranger too many: %+v %v, want %q", sv, err, ReasonBusy)
	}
	// A contact is served meanwhile.
	c1, c2 := net.Pipe()
	go func() { l.ServeConn(patient, frame.NewConn(c1, nil), provider.Owner().ID(), time.Now); c1.Close() }()
	res, err := FetchConn(provider, frame.NewConn(c2, nil), g, time.Now(), nil)
	c2.Close()
	if err != nil || res.Records != 1 {
		t.Fatalf("a contact's fetch while strangers hold their share: %+v %v", res, err)
	}
	for _, c := range held {
		c.Close()
	}
	for range MaxStrangers {
		<-done
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.strangers != 0 {
		t.Fatalf("%d stranger slots still taken", l.strangers)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out waiting")
}

// labsGrant returns a patient holding one lab record, a provider pinned as
// the patient's contact, and an hour's grant of labs to it.
func labsGrant(t *testing.T) (patient, provider *vault.Vault, g *Grant) {
	t.Helper()
	patient = openVault(t, "Ada", identity.Patient)
	provider = openVault(t, "Dr. Hopper", identity.Provider)
	if _, err := patient.Add(strings.NewReader("HbA1c 6.1%"), vault.NewRecord{Category: record.Labs}); err != nil {
		t.Fatal(err)
	}
	return patient, provider, pinAndGrantLabs(t, patient, provider)
}

// pinAndGrantLabs pins provider as the patient's contact "dr" and issues
// it an hour's grant of labs.
func pinAndGrantLabs(t testing.TB, patient, provider *vault.Vault) *Grant {
	t.Helper()
	if _, err := SaveContact(patient, "dr", cardOf(t, provider), false); err != nil {
		t.Fatal(err)
	}
	g, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// revokeAfter revokes the grant once the patient's node has sent the end
// of its first record.
type revokeAfter struct {
	Framer
	revoke func()
	done   bool
}

func (r *revokeAfter) WriteFrame(typ byte, p []byte) error {
	err := r.Framer.WriteFrame(typ, p)
	if typ == frameEnd && !r.done {
		r.done = true
		r.revoke()
	}
	return err
}

// A revocation during a transfer stops it before the next record: the
// provider keeps what it received and is told the grant is revoked; the
// patient's ledger says which admitted records were not sent, and why.
func TestRevokeStopsTransfer(t *testing.T) {
	patient, provider, g := labsGrant(t)
	for i := range 9 {
		patient.Add(strings.NewReader(fmt.Sprint("lab ", i)), vault.NewRecord{Category: record.Labs})
	}
	a, b := net.Pipe()
	defer a.Close()
	served := make(chan *Served, 1)
	go func() {
		rc := &revokeAfter{Framer: frame.NewConn(a, nil), revoke: func() {
			issued, _ := FindIssued(patient, g.ID().String())
			if _, _, err := RevokeAndStore(patient, issued, time.Now()); err != nil {
				t.Error(err)
			}
		}}
		sv, err := ServeConn(patient, rc, provider.Owner().ID(), time.Now)
		if err != nil {
			t.Error(err)
		}
		a.Close()
		served <- sv
	}()
	res, err := FetchConn(provider, frame.NewConn(b, nil), g, time.Now(), nil)
	b.Close()
	sv := <-served
	if !errors.Is(err, ErrRevoked) || res == nil || res.Records != 1 {
		t.Fatalf("fetch revoked after the first record: %+v %v", res, err)
	}
	if sv.Sent != 1 || sv.Ended != ReasonRevoked {
		t.Fatalf("served %+v", sv)
	}
	var unsent int
	patient.Entries(0, func(i int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionServe && e.Outcome == ledger.OutcomeFailed && e.Reason == string(ReasonRevoked) {
			unsent += len(e.Subjects)
		}
		return nil
	})
	if unsent != 9 {
		t.Fatalf("the ledger says %d records were not sent, want 9", unsent)
	}
}
