package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"syscall"
	"testing"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// brokenAfter yields the first n bytes of b, then fails like a cut
// connection.
type brokenAfter struct {
	r *bytes.Reader
	n int
}

var errCut = errors.New("connection reset")

func (b *brokenAfter) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, errCut
	}
	p = p[:min(len(p), b.n)]
	n, err := b.r.Read(p)
	b.n -= n
	return n, err
}

func receivedFile(t *testing.T, v *Vault, plain []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := age.Encrypt(&b, v.id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	return b.Bytes()
}

// A broken receive is kept as a partial only when KeepPartial says so, and
// only past the age header; a resumed one completes to the original bytes.
func TestReceivePartials(t *testing.T) {
	v := newTestVault(t)
	plain := bytes.Repeat([]byte("DICOM "), 3<<20/6)
	file := receivedFile(t, v, plain)
	from := mustIdentity(t).ID()
	src := record.NewID()
	keep := func(err error) bool { return errors.Is(err, errCut) }
	n := NewRecord{Category: record.Imaging, Title: "MRI"}

	// Not kept when the caller says no, nor when cut inside the header.
	if _, err := v.AddCiphertext(&brokenAfter{bytes.NewReader(file), 1 << 20}, n, Received{Size: int64(len(plain)), From: from, SourceID: src}); err == nil || errors.Is(err, ErrPartialKept) {
		t.Fatalf("without KeepPartial: %v", err)
	}
	if _, err := v.AddCiphertext(&brokenAfter{bytes.NewReader(file), 40}, n, Received{Size: int64(len(plain)), From: from, SourceID: src, KeepPartial: keep}); errors.Is(err, ErrPartialKept) {
		t.Fatal("a stream cut inside the age header was kept")
	}
	if ps, _ := v.Partials(from); len(ps) != 0 {
		t.Fatalf("%d partials kept", len(ps))
	}

	cut := 1<<20 + 12345
	_, err := v.AddCiphertext(&brokenAfter{bytes.NewReader(file), cut}, n, Received{Size: int64(len(plain)), From: from, SourceID: src, KeepPartial: keep})
	if !errors.Is(err, ErrPartialKept) || !errors.Is(err, errCut) {
		t.Fatalf("cut receive: %v", err)
	}
	v.Close()
	reopen(t, v)
	ps, err := v.Partials(from)
	if err != nil || len(ps) != 1 || ps[0].Stored != int64(cut) || ps[0].SourceID != src {
		t.Fatalf("partials after reopening: %+v %v", ps, err)
	}
	if ms, _ := v.List(Filter{}); len(ms) != 0 {
		t.Fatal("a partial record is listed")
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify with a partial: %v %v", err, rep.Problems)
	}
	if _, err := v.AddCiphertext(bytes.NewReader(file[cut:]), n, Received{Size: int64(len(plain)), From: from, SourceID: record.NewID(), Resume: ps[0]}); err == nil {
		t.Fatal("a partial was resumed for another record")
	}
	stale := *ps[0]
	stale.Stored -= 100
	if _, err := v.AddCiphertext(bytes.NewReader(file[cut-100:]), n, Received{Size: int64(len(plain)), From: from, SourceID: src, Resume: &stale}); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("a resume from an out-of-date view of the partial: %v", err)
	}
	// A killed resume may have left chunks past the partial's: they go.
	v.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketChunks).Put(chunkKey(ps[0].ID, ps[0].Chunks+100), []byte("left by a killed resume"))
	})
	m, err := v.AddCiphertext(bytes.NewReader(file[cut:]), n, Received{Size: int64(len(plain)), From: from, SourceID: src, Resume: ps[0], KeepPartial: keep})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := v.Get(m.ID, &got); err != nil || !bytes.Equal(got.Bytes(), plain) {
		t.Fatalf("resumed record differs (%v)", err)
	}
	if ps, _ := v.Partials(from); len(ps) != 0 {
		t.Fatal("the partial outlived its completion")
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify after completing: %v %v", err, rep.Problems)
	}
}

// A pending value that is not a sealed partial of this vault (written by
// someone else) is not a partial: it is never listed, and open discards it.
func TestForgedPartialIgnored(t *testing.T) {
	v := newTestVault(t)
	id := record.NewID()
	v.update(func(tx *bbolt.Tx) error {
		tx.Bucket(bucketChunks).Put(chunkKey(id, 0), []byte("age-encryption.org/v1\n"))
		return tx.Bucket(bucketPending).Put(id[:], bytes.Repeat([]byte{7}, 200))
	})
	if ps, _ := v.Partials(v.id.ID()); len(ps) != 0 {
		t.Fatal("a forged partial is listed")
	}
	if err := v.DropPartial(id); err == nil {
		t.Fatal("DropPartial accepted a forged partial")
	}
	v.Close()
	reopen(t, v)
	v.view(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketPending).Get(id[:]) != nil || tx.Bucket(bucketChunks).Get(chunkKey(id, 0)) != nil {
			t.Error("open kept a forged partial")
		}
		return nil
	})

}

// Two receives never resume one partial at once: the second is refused
// while the first runs, and so is dropping it.
func TestResumeIsExclusive(t *testing.T) {
	v := newTestVault(t)
	file := receivedFile(t, v, bytes.Repeat([]byte("x"), 1<<20))
	from, src := mustIdentity(t).ID(), record.NewID()
	keep := func(err error) bool { return errors.Is(err, errCut) }
	n := NewRecord{Category: record.Imaging}
	if _, err := v.AddCiphertext(&brokenAfter{bytes.NewReader(file), 300 << 10}, n, Received{Size: 1 << 20, From: from, SourceID: src, KeepPartial: keep}); !errors.Is(err, ErrPartialKept) {
		t.Fatal(err)
	}
	ps, _ := v.Partials(from)
	if len(ps) != 1 {
		t.Fatalf("%d partials", len(ps))
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := v.AddCiphertext(pr, n, Received{Size: 1 << 20, From: from, SourceID: src, Resume: ps[0]})
		done <- err
	}()
	pw.Write(file[300<<10 : 400<<10]) // the first resume is under way
	if _, err := v.AddCiphertext(bytes.NewReader(file[300<<10:]), n, Received{Size: 1 << 20, From: from, SourceID: src, Resume: ps[0]}); err == nil || !strings.Contains(err.Error(), "another fetch") {
		t.Fatalf("a second resume of the same partial: %v", err)
	}
	if err := v.DropPartial(ps[0].ID); err == nil {
		t.Fatal("a partial being resumed was dropped")
	}
	pw.Write(file[400<<10:])
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ms, _ := v.List(Filter{}); len(ms) != 1 {
		t.Fatalf("%d records", len(ms))
	}
}

// A transfer that breaks off is kept as a partial only if every complete
// age chunk of what arrived checks: damaged bytes are not kept to be
// resumed, whether the damage is in the last batch written or before it.
func TestDamagedCutTransferNotKept(t *testing.T) {
	v := newTestVault(t)
	plain := make([]byte, 20<<20)
	for i := range plain {
		plain[i] = byte(i * 13)
	}
	file := receivedFile(t, v, plain)
	from := mustIdentity(t).ID()
	keep := func(err error) bool { return errors.Is(err, errCut) }
	n := NewRecord{Category: record.Imaging}
	for _, tc := range []struct {
		flip, cut int
	}{
		{1000, batchSize + 1000},           // damage in a committed batch
		{batchSize + 500, 2*batchSize - 7}, // damage in the batch not yet written
		{1000, 300 << 10},                  // a cut before the first batch
	} {
		bad := bytes.Clone(file)
		bad[tc.flip] ^= 1
		_, err := v.AddCiphertext(&brokenAfter{bytes.NewReader(bad), tc.cut}, n, Received{Size: int64(len(plain)), From: from, SourceID: record.NewID(), KeepPartial: keep})
		if errors.Is(err, ErrPartialKept) || !errors.Is(err, ErrDamaged) {
			t.Fatalf("damage at %d, cut at %d: %v", tc.flip, tc.cut, err)
		}
		if ps, _ := v.Partials(from); len(ps) != 0 {
			t.Fatalf("damage at %d, cut at %d: kept %d partials", tc.flip, tc.cut, len(ps))
		}
	}
	// The same cut of the undamaged file is kept.
	if _, err := v.AddCiphertext(&brokenAfter{bytes.NewReader(file), batchSize + 1000}, n, Received{Size: int64(len(plain)), From: from, SourceID: record.NewID(), KeepPartial: keep}); !errors.Is(err, ErrPartialKept) {
		t.Fatalf("an undamaged cut transfer: %v", err)
	}
}

// sealedWithKey writes an age file for `to` with a chosen file key and
// payload nonce, as a patient's node may: age's API always picks both.
func sealedWithKey(t *testing.T, fileKey, nonce []byte, to age.Recipient, plain []byte) []byte {
	t.Helper()
	hdr, err := ageHeader(fileKey, to)
	if err != nil {
		t.Fatal(err)
	}
	// One chunk, the last.
	return append(append(hdr, nonce...), chunkSealer(fileKey, nonce)(0, true, plain)...)
}

// Two received records may share a file key (the sender picks it). The
// header digest covers the payload nonce too, so swapping their payloads
// behind the same header is refused, though the result decrypts.
func TestHeaderDigestCoversNonce(t *testing.T) {
	v := newTestVault(t)
	from := mustIdentity(t).ID()
	fileKey := bytes.Repeat([]byte{7}, 16)
	n := NewRecord{Category: record.Labs}
	a, err := v.AddCiphertext(bytes.NewReader(sealedWithKey(t, fileKey, bytes.Repeat([]byte{1}, 16), v.id.Recipient(), []byte("result A"))), n, Received{Size: 8, From: from, SourceID: record.NewID()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := v.AddCiphertext(bytes.NewReader(sealedWithKey(t, fileKey, bytes.Repeat([]byte{2}, 16), v.id.Recipient(), []byte("result B"))), n, Received{Size: 8, From: from, SourceID: record.NewID()})
	if err != nil {
		t.Fatal(err)
	}
	v.db.Update(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketChunks)
		ca, cb := c.Get(chunkKey(a.ID, 0)), c.Get(chunkKey(b.ID, 0))
		hdrA, _ := age.ExtractHeader(bytes.NewReader(ca))
		hdrB, _ := age.ExtractHeader(bytes.NewReader(cb))
		// A's header, B's nonce and payload: decrypts to B's content.
		return c.Put(chunkKey(a.ID, 0), append(bytes.Clone(hdrA), cb[len(hdrB):]...))
	})
	var got bytes.Buffer
	if _, err := v.Get(a.ID, &got); !errors.Is(err, ErrTampered) {
		t.Fatalf("Get of A with B's payload: %q %v", got.String(), err)
	}
}

// A received record must hold the size its sender stated: the provider
// lists that size, so a record that decrypts to other bytes is refused.
func TestReceivedSizeChecked(t *testing.T) {
	v := newTestVault(t)
	plain := []byte("ferritin 80 ug/L")
	file := receivedFile(t, v, plain)
	from := mustIdentity(t).ID()
	n := NewRecord{Category: record.Labs}
	for _, stated := range []int64{0, int64(len(plain)) - 1, int64(len(plain)) + 1, 1 << 40} {
		_, err := v.AddCiphertext(bytes.NewReader(file), n, Received{Size: stated, From: from, SourceID: record.NewID()})
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), fmt.Sprintf("stated as %d bytes, it holds %d", stated, len(plain))) {
			t.Fatalf("stated %d: %v", stated, err)
		}
	}
	if ms, err := v.List(Filter{}); err != nil || len(ms) != 0 {
		t.Fatalf("%d records kept (%v)", len(ms), err)
	}
	m, err := v.AddCiphertext(bytes.NewReader(file), n, Received{Size: int64(len(plain)), From: from, SourceID: record.NewID()})
	if err != nil || m.Size != int64(len(plain)) {
		t.Fatalf("the right size: %v", err)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// CheckRoom refuses what does not fit, up to the largest sizes (a sparse
// file of exabytes), and takes what does.
func TestCheckRoom(t *testing.T) {
	v := newTestVault(t)
	free, ok := freeBytes(v.Dir())
	if !ok {
		t.Skip("free space cannot be told on this system")
	}
	for _, n := range []int64{free, free - RoomReserve/2, math.MaxInt64, math.MaxInt64 - 1, math.MaxInt64 / 4096 * 4095} {
		if err := v.CheckRoom(n); !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("CheckRoom(%d) with %d free: %v", n, free, err)
		}
	}
	for _, n := range []int64{0, 1, 1 << 20} {
		if err := v.CheckRoom(n); err != nil && free > 1<<30 {
			t.Errorf("CheckRoom(%d) with %d free: %v", n, free, err)
		}
	}
}
