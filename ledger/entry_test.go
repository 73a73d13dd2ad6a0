package ledger

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEntryRoundTrip(t *testing.T) {
	maxed := &Entry{
		Time:     time.Unix(0, 1<<62).UTC(),
		Actor:    bytes.Repeat([]byte{1}, MaxActorLen),
		Action:   ActionUnlock,
		Subjects: make([][]byte, MaxSubjects),
		Grant:    bytes.Repeat([]byte{2}, GrantLen),
		Purpose:  strings.Repeat("P", MaxPurposeLen),
		Outcome:  OutcomeFailed,
		Reason:   strings.Repeat("~", MaxReasonLen),
		Request:  bytes.Repeat([]byte{3}, MaxRequestLen),
	}
	for i := range maxed.Subjects {
		maxed.Subjects[i] = bytes.Repeat([]byte{byte(i)}, MaxSubjectLen)
	}
	tests := []struct {
		name string
		e    *Entry
	}{
		{"minimal", &Entry{Time: testEpoch, Action: ActionInit, Outcome: OutcomeOK}},
		{"epoch", &Entry{Time: time.Unix(0, 0).UTC(), Action: ActionRead, Outcome: OutcomeOK}},
		{"negative time", &Entry{Time: time.Date(1700, 1, 1, 0, 0, 0, 1, time.UTC), Action: ActionRead, Outcome: OutcomeOK}},
		{"sample 0", sampleEntry(0)},
		{"sample 1", sampleEntry(1)},
		{"sample 2", sampleEntry(2)},
		{"sample 3", sampleEntry(3)},
		{"maximal", maxed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.e.Time.IsZero() {
				tt.e.Time = testEpoch
			}
			b, err := tt.e.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxEntrySize {
				t.Fatalf("encoding of %d bytes exceeds MaxEntrySize %d", len(b), MaxEntrySize)
			}
			var d Entry
			if err := d.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if !entriesEqual(&d, tt.e) {
				t.Errorf("round trip changed the entry:\n got %+v\nwant %+v", d, *tt.e)
			}
			b2, _ := d.MarshalBinary()
			if !bytes.Equal(b, b2) {
				t.Error("re-encoding differs")
			}
			if err := checkEntry(b); err != nil {
				t.Errorf("checkEntry: %v", err)
			}
		})
	}
	if maxLen, _ := maxed.MarshalBinary(); len(maxLen) != MaxEntrySize {
		t.Errorf("maximal entry is %d bytes, MaxEntrySize is %d", len(maxLen), MaxEntrySize)
	}
}

func TestEntryKnownEncoding(t *testing.T) {
	e := &Entry{
		Time:     time.Unix(0, 0x0102030405060708).UTC(),
		Actor:    []byte{0xaa, 0xbb},
		Action:   ActionServe,
		Subjects: [][]byte{{0x11}, {0x22, 0x33}},
		Grant:    bytes.Repeat([]byte{0x44}, 32),
		Purpose:  "TREAT",
		Outcome:  OutcomeDenied,
		Reason:   "expired",
		Commit:   Hash{0: 0x55, 31: 0x66},
		Request:  []byte{0x77},
	}
	want := "01" + "0102030405060708" + "0a" + "02" + "02aabb" + "0002" + "0111" + "022233" +
		"20" + strings.Repeat("44", 32) + "05" + hex.EncodeToString([]byte("TREAT")) +
		"07" + hex.EncodeToString([]byte("expired")) + "55" + strings.Repeat("00", 30) + "66" +
		"00000001" + "77"
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("encoding:\n got %s\nwant %s", got, want)
	}
}

func TestEntryMarshalRejects(t *testing.T) {
	ok := func() *Entry { return &Entry{Time: testEpoch, Action: ActionRead, Outcome: OutcomeOK} }
	tests := []struct {
		name   string
		modify func(e *Entry)
	}{
		{"zero time", func(e *Entry) { e.Time = time.Time{} }},
		{"time after 2262", func(e *Entry) { e.Time = time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"time before 1678", func(e *Entry) { e.Time = time.Date(1677, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"zero action", func(e *Entry) { e.Action = 0 }},
		{"unknown action", func(e *Entry) { e.Action = ActionKeep + 1 }},
		{"zero outcome", func(e *Entry) { e.Outcome = 0 }},
		{"unknown outcome", func(e *Entry) { e.Outcome = OutcomeFailed + 1 }},
		{"long actor", func(e *Entry) { e.Actor = make([]byte, MaxActorLen+1) }},
		{"too many subjects", func(e *Entry) { e.Subjects = make([][]byte, MaxSubjects+1) }},
		{"empty subject", func(e *Entry) { e.Subjects = [][]byte{{1}, {}} }},
		{"long subject", func(e *Entry) { e.Subjects = [][]byte{make([]byte, MaxSubjectLen+1)} }},
		{"short grant", func(e *Entry) { e.Grant = make([]byte, GrantLen-1) }},
		{"long grant", func(e *Entry) { e.Grant = make([]byte, GrantLen+1) }},
		{"long purpose", func(e *Entry) { e.Purpose = strings.Repeat("A", MaxPurposeLen+1) }},
		{"purpose with space", func(e *Entry) { e.Purpose = "TRE AT" }},
		{"purpose non-ASCII", func(e *Entry) { e.Purpose = "TRÉAT" }},
		{"reason with newline", func(e *Entry) { e.Reason = "a\nb" }},
		{"long reason", func(e *Entry) { e.Reason = strings.Repeat("r", MaxReasonLen+1) }},
		{"long request", func(e *Entry) { e.Request = make([]byte, MaxRequestLen+1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok()
			tt.modify(e)
			if _, err := e.MarshalBinary(); !errors.Is(err, ErrMalformed) {
				t.Errorf("MarshalBinary error = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestEntryUnmarshalRejects(t *testing.T) {
	good, err := sampleEntry(1).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Offsets in the encoding of sampleEntry(1).
	const actorLenOff = 1 + 8 + 2
	actorLen := int(good[actorLenOff])
	subjOff := actorLenOff + 1 + actorLen
	set := func(off int, v ...byte) []byte {
		b := bytes.Clone(good)
		copy(b[off:], v)
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"version 0", set(0, 0)},
		{"version 2", set(0, 2)},
		{"action 0", set(9, 0)},
		{"action 16", set(9, 16)},
		{"outcome 0", set(10, 0)},
		{"outcome 4", set(10, 4)},
		{"actor too long", set(actorLenOff, MaxActorLen+1)},
		{"too many subjects", set(subjOff, 0xff, 0xff)},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"request length past max", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[len(b)-len(sampleEntry(1).Request)-4:], MaxRequestLen+1)
			return b
		}()},
		{"empty subject", func() []byte {
			e := &Entry{Time: testEpoch, Action: ActionRead, Outcome: OutcomeOK, Subjects: [][]byte{{9}}}
			b, _ := e.MarshalBinary()
			return set2(b, actorLenOff+1+0+2, 0) // subject length 1 -> 0
		}()},
		{"grant of 5 bytes", func() []byte {
			e := &Entry{Time: testEpoch, Action: ActionRead, Outcome: OutcomeOK}
			b, _ := e.MarshalBinary()
			off := actorLenOff + 1 + 2 // grant length byte
			b = append(b[:off:off], append([]byte{5, 1, 2, 3, 4, 5}, b[off+1:]...)...)
			return b
		}()},
		{"purpose with space", func() []byte {
			e := &Entry{Time: testEpoch, Action: ActionRead, Outcome: OutcomeOK, Purpose: "AB"}
			b, _ := e.MarshalBinary()
			return set2(b, actorLenOff+1+2+1+1, ' ')
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Entry
			if err := e.UnmarshalBinary(tt.data); !errors.Is(err, ErrMalformed) {
				t.Errorf("UnmarshalBinary error = %v, want ErrMalformed", err)
			}
			if err := checkEntry(tt.data); !errors.Is(err, ErrMalformed) {
				t.Errorf("checkEntry error = %v, want ErrMalformed", err)
			}
		})
	}
	// Every proper prefix is truncated.
	for i := range len(good) {
		var e Entry
		if err := e.UnmarshalBinary(good[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: error = %v, want ErrMalformed", i, err)
		}
	}
}

// entriesEqual compares entries, times by instant.
func entriesEqual(a, b *Entry) bool {
	x, y := *a, *b
	if !x.Time.Equal(y.Time) {
		return false
	}
	x.Time, y.Time = time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

func set2(b []byte, off int, v byte) []byte {
	b = bytes.Clone(b)
	b[off] = v
	return b
}

func TestEntryUnmarshalCopies(t *testing.T) {
	b, _ := sampleEntry(1).MarshalBinary()
	var e Entry
	if err := e.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xff
	}
	if !entriesEqual(&e, sampleEntry(1)) {
		t.Error("decoded entry shares memory with its input")
	}
}

func TestActionOutcomeNames(t *testing.T) {
	for _, a := range Actions() {
		got, err := ParseAction(strings.ToUpper(a.String()))
		if err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a.String(), got, err)
		}
	}
	if len(Actions()) != 15 {
		t.Errorf("Actions() has %d elements", len(Actions()))
	}
	if _, err := ParseAction("fly"); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseAction(fly) error = %v", err)
	}
	if s := Action(0).String(); s != "action(0)" {
		t.Errorf("Action(0).String() = %q", s)
	}
	for _, o := range []Outcome{OutcomeOK, OutcomeDenied, OutcomeFailed} {
		got, err := ParseOutcome(" " + o.String() + " ")
		if err != nil || got != o {
			t.Errorf("ParseOutcome(%q) = %v, %v", o.String(), got, err)
		}
	}
	if _, err := ParseOutcome("meh"); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseOutcome(meh) error = %v", err)
	}
	if s := Outcome(9).String(); s != "outcome(9)" {
		t.Errorf("Outcome(9).String() = %q", s)
	}
}

func TestLeafRoundTrip(t *testing.T) {
	lf := &Leaf{Entry: *sampleEntry(1)}
	lf.Salt[0], lf.Salt[31] = 1, 2
	b, err := lf.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var d Leaf
	if err := d.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if d.Salt != lf.Salt || !entriesEqual(&d.Entry, &lf.Entry) {
		t.Error("leaf round trip changed it")
	}
	h1, _ := lf.Hash()
	if h1 != leafHash(b) {
		t.Error("Leaf.Hash differs from leafHash")
	}
	d.Salt[5] ^= 1
	if h2, _ := d.Hash(); h2 == h1 {
		t.Error("salt does not affect the leaf hash")
	}
	if err := d.UnmarshalBinary(b[:SaltSize-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short leaf error = %v", err)
	}
}
