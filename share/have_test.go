package share

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault/record"
)

// lowIDs returns n record IDs in ascending order, all below any random ID
// whose first 12 bytes are not all zero.
func lowIDs(n int) []record.ID {
	ids := make([]record.ID, n)
	for i := range ids {
		binary.BigEndian.PutUint32(ids[i][12:], uint32(i))
	}
	return ids
}

// Have frames carry any number of IDs up to maxHeld, 65,536 to a frame, and
// a short frame always ends them, even an empty one after full frames.
func TestHaveFramesRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, haveIDs - 1, haveIDs, haveIDs + 1, 2 * haveIDs} {
		ids := lowIDs(n)
		a, b := net.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- writeHave(frame.NewConn(a, nil), ids)
			a.Close()
		}()
		c := frame.NewConn(b, nil)
		var got []record.ID
		if err := readHave(c, func(id record.ID) { got = append(got, id) }); err != nil {
			t.Fatalf("%d IDs: %v", n, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("%d IDs: write: %v", n, err)
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("%d IDs: read %d back, or not the same", n, len(got))
		}
		// Nothing follows the last frame.
		if _, _, err := c.ReadFrame(maxHave); err == nil {
			t.Fatalf("%d IDs: a frame after the last have frame", n)
		}
		b.Close()
	}
}

// A have list out of order, repeated, or longer than maxHeld ends the
// exchange as a protocol violation.
func TestHaveFramesRefused(t *testing.T) {
	full := func(from int) []byte {
		var p []byte
		for _, id := range lowIDs(from + haveIDs)[from:] {
			p = append(p, id[:]...)
		}
		return p
	}
	ids := lowIDs(3)
	for name, frames := range map[string][][]byte{
		"descending":         {append(bytes.Clone(ids[1][:]), ids[0][:]...)},
		"repeated":           {append(bytes.Clone(ids[1][:]), ids[1][:]...)},
		"across frames":      {full(0), ids[2][:]},
		"not whole IDs":      {ids[0][:15]},
		"more than maxHeld":  slices.Repeat([][]byte{nil}, maxHeld/haveIDs+1),
		"another frame type": {nil},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "more than maxHeld" {
				for i := range frames {
					frames[i] = full(i * haveIDs)
				}
			}
			a, b := net.Pipe()
			defer b.Close()
			go func() {
				c := frame.NewConn(a, nil)
				typ := byte(frameHave)
				if name == "another frame type" {
					typ = framePartial
				}
				for _, p := range frames {
					if c.WriteFrame(typ, p) != nil {
						break
					}
				}
				a.Close()
			}()
			err := readHave(frame.NewConn(b, nil), func(record.ID) {})
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("read: %v, want a protocol violation", err)
			}
		})
	}
}

// A record the provider holds is not sent again when the have frames list
// it past the first 65,536 IDs: 1.2.0 had one frame, and a provider holding
// more than that many records of a patient got the rest on every fetch.
func TestHeldPastFirstHaveFrameNotSent(t *testing.T) {
	patient, provider, g, ids := twoLabs(t)
	slices.SortFunc(ids, compareIDs)
	held, other := ids[1], ids[0]
	if bytes.Compare(lowIDs(haveIDs)[haveIDs-1][:], held[:]) >= 0 {
		t.Skip("a random record ID fell among the low test IDs")
	}
	req, err := NewRequest(provider.Owner(), RequestParams{Grant: g.ID(), All: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer b.Close()
	served := make(chan *Served, 1)
	go func() {
		sv, _ := ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now)
		a.Close()
		served <- sv
	}()
	c := frame.NewConn(b, nil)
	go func() {
		c.WriteFrame(frameRequest, req.Bytes())
		writeHave(c, append(lowIDs(haveIDs), held))
		c.WriteFrame(framePartial, nil)
		c.WriteFrame(frameSeen, nil)
	}()
	var metas []string
	for {
		typ, p, err := c.ReadFrame(maxReceipt)
		if err != nil {
			t.Fatalf("exchange ended: %v", err)
		}
		if typ == frameMeta {
			metas = append(metas, string(p))
		}
		if typ == frameDone || typ == frameDenied {
			break
		}
	}
	sv := <-served
	if sv.Reason != ReasonAllowed || sv.Sent != 1 || len(metas) != 1 || !bytes.Contains([]byte(metas[0]), []byte(other.String())) {
		t.Fatalf("served %+v, metadata %q; want only %s sent", sv, metas, other)
	}
}
