package share

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

func BenchmarkIssueGrant(b *testing.B) {
	p := baseParams()
	for b.Loop() {
		if _, err := IssueGrant(patient, p, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeGrant(b *testing.B) {
	raw := mustGrant(b, baseParams()).Bytes()
	for b.Loop() {
		if _, err := DecodeGrant(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseGrantText(b *testing.B) {
	txt := mustGrant(b, baseParams()).Text()
	for b.Loop() {
		if _, err := ParseGrant(txt); err != nil {
			b.Fatal(err)
		}
	}
}

// benchState is a vault of n records, a tenth of them labs, one in fifty
// labelled MH.
func benchState(n int) *MemState {
	m := NewMemState(patient.ID(), testVault)
	cats := record.Categories()
	for i := range n {
		r := RecordInfo{ID: rid(fmt.Sprint(i)), Category: cats[i%len(cats)]}
		if i%10 == 0 {
			r.Category = record.Labs
		}
		if i%50 == 0 {
			r.Labels = []record.Label{record.MH}
		}
		m.AddRecord(r)
	}
	return m
}

// BenchmarkDecide is one decision on a request for 4 items: two signature
// verifications, the state lookups and the per-item rule.
func BenchmarkDecide(b *testing.B) {
	m := benchState(1000)
	g := mustGrant(b, baseParams())
	now := t0.Add(time.Minute)
	r := mustRequest(b, provider, RequestParams{Grant: g.ID(), Items: []record.ID{rid("0"), rid("10"), rid("20"), rid("1")}}, now)
	st := m.State()
	for b.Loop() {
		if d := Decide(g, r, provider.ID(), now, st); !d.Allowed {
			b.Fatal(d.Err())
		}
	}
}

// BenchmarkDecideAll10k decides a request for all records in scope over a
// vault of 10,000 records.
func BenchmarkDecideAll10k(b *testing.B) {
	m := benchState(10000)
	g := mustGrant(b, baseParams())
	now := t0.Add(time.Minute)
	r := mustRequest(b, provider, RequestParams{Grant: g.ID(), All: true}, now)
	recs, _ := m.State().All()
	st := m.State()
	st.All = func() ([]RecordInfo, error) { return recs, nil } // exclude the map copy
	for b.Loop() {
		if d := Decide(g, r, provider.ID(), now, st); !d.Allowed {
			b.Fatal(d.Err())
		}
	}
}

func BenchmarkNewRequest(b *testing.B) {
	g := mustGrant(b, baseParams())
	p := RequestParams{Grant: g.ID(), All: true}
	for b.Loop() {
		if _, err := NewRequest(provider, p, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelect10k is the per-item rule alone over 10,000 records (what
// grant --dry-run and a request of all records in scope cost beyond the
// signatures).
func BenchmarkSelect10k(b *testing.B) {
	recs, _ := benchState(10000).State().All()
	g := mustGrant(b, baseParams())
	for b.Loop() {
		if s := Select(g, recs); len(s.Items) == 0 {
			b.Fatal("nothing selected")
		}
	}
}

// BenchmarkFetchPipeline fetches one record (MEDVAULT_BENCH_SIZE bytes,
// default 256 MiB) between two vaults in this process over TCP on
// 127.0.0.1, without libp2p: the vaults' own work (reading and sending
// chunks on one side; checking, hashing and storing them durably on the
// other) with the transport's encryption and multiplexing left out. Each
// iteration stores into a new provider vault. The vaults live in the
// test's temporary directory ($TMPDIR).
func BenchmarkFetchPipeline(b *testing.B) {
	size := int64(256 << 20)
	if s, err := strconv.ParseInt(os.Getenv("MEDVAULT_BENCH_SIZE"), 10, 64); err == nil && s > 0 {
		size = s
	}
	patient := openVault(b, "Ada", identity.Patient)
	if _, err := patient.Add(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), vault.NewRecord{Category: record.Imaging}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		provider := openVault(b, "Dr. Hopper", identity.Provider)
		SaveContact(patient, "dr", cardOf(b, provider), true)
		g, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Imaging}},
			Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		served := make(chan error, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				_, err = ServeConn(patient, frame.NewConn(c, nil), provider.Owner().ID(), time.Now)
				c.Close()
			}
			served <- err
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := FetchConn(provider, frame.NewConn(c, nil), g, time.Now(), nil)
		b.StopTimer()
		c.Close()
		l.Close()
		if serr := <-served; err != nil || serr != nil || res.Records != 1 {
			b.Fatalf("fetch: %+v %v %v", res, err, serr)
		}
		provider.Close()
		b.StartTimer()
	}
}
