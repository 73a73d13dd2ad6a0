package share

import (
	"fmt"
	"sync"
	"time"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// ReasonRateLimited refuses a peer that was refused too often recently.
const ReasonRateLimited Reason = "rate-limited"

// Limiter bounds what refused peers can make a patient's node write: each
// peer may be refused (and each refusal logged) DenialBurst times, with the
// allowance refilled at DenialRate; past that its requests are refused at
// once, without a decision, and only the first such refusal in each window
// is written to the ledger (reason "rate-limited"). Served requests have an
// allowance of their own, ServedBurst regaining one every ServedRefill: each
// one logs the records it admitted, so a grantee fetching in a loop would
// otherwise grow the patient's ledger by kilobytes a request, without end.
// New peer IDs need new connections, which the p2p resource manager
// rate-limits per IP address. The zero value is not usable: call
// NewLimiter.
type Limiter struct {
	rate      time.Duration // one refusal of allowance regained per rate
	burst     float64
	mu        sync.Mutex
	peers     map[identity.ID]*allowance
	strangers int // requests from non-contacts being answered

	contactsMu sync.Mutex
	contacts   map[identity.ID]bool // pinned IDs, as of loaded
	loaded     time.Time
	gen        uint64 // v.ObjectsGeneration(vault.KindContact) at loaded
}

// contactsTTL is how long the limiter trusts its copy of the pinned IDs
// while this process has changed no contact: streams from throwaway keys
// cost at most one reload per period.
const contactsTTL = time.Second

// isContact reports whether id is pinned in v's contact book. A contact
// pinned or removed through this process (the node, which runs every
// command while it holds the vault) counts at once.
func (l *Limiter) isContact(v *vault.Vault, id identity.ID) (bool, error) {
	l.contactsMu.Lock()
	defer l.contactsMu.Unlock()
	gen := v.ObjectsGeneration(vault.KindContact)
	if l.contacts == nil || gen != l.gen || time.Since(l.loaded) > contactsTTL {
		ids, err := contactIDs(v)
		if err != nil {
			return false, err
		}
		l.contacts, l.loaded, l.gen = ids, time.Now(), gen
	}
	return l.contacts[id], nil
}

type allowance struct {
	tokens     float64
	last       time.Time
	suppressed bool    // a rate-limited refusal was logged in this window
	served     float64 // served requests left
}

// A peer may be served ServedBurst requests at once, regaining one every
// ServedRefill: a provider's script can fetch twice a minute for ever, and
// a grantee fetching in a loop adds at most ~2,900 requests' entries a day
// to the patient's ledger instead of one per round trip.
const (
	ServedBurst  = 30
	ServedRefill = 30 * time.Second
)

// NewLimiter allows burst refusals per peer, regaining one per rate.
func NewLimiter(burst int, rate time.Duration) *Limiter {
	return &Limiter{rate: rate, burst: float64(burst), peers: map[identity.ID]*allowance{}}
}

// take charges id cost refusal tokens if it has one left, and, with serve,
// takes one of its served requests too (given back by refundServed if the
// request is not served): a request is admitted only while both last, and
// requests running at once each hold their own.
func (l *Limiter) take(id identity.ID, now time.Time, cost float64, serve bool) (ok, firstSuppressed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.peers[id]
	if a == nil {
		if len(l.peers) > 100_000 { // forget everyone rather than grow without bound
			clear(l.peers)
		}
		a = &allowance{tokens: l.burst, last: now, served: ServedBurst}
		l.peers[id] = a
	}
	a.tokens = min(l.burst, a.tokens+float64(now.Sub(a.last))/float64(l.rate))
	a.served = min(ServedBurst, a.served+float64(now.Sub(a.last))/float64(ServedRefill))
	a.last = now
	if a.tokens >= 1 && (!serve || a.served >= 1) {
		a.tokens -= cost
		if serve {
			a.served--
		}
		if a.tokens >= 1 {
			a.suppressed = false
		}
		return true, false
	}
	first := !a.suppressed
	a.suppressed = true
	return false, first
}

// refundServed gives back the served request take held for a request that
// was not served.
func (l *Limiter) refundServed(id identity.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.peers[id]; a != nil {
		a.served = min(ServedBurst, a.served+1)
	}
}

// ReasonBusy refuses a request from a peer that is not a contact while
// MaxStrangers such requests are already being answered. It is not sent
// nor logged: the stream is closed unread.
const ReasonBusy Reason = "busy"

// MaxStrangers is how many requests from peers that are not contacts a node
// answers at once. Every grant is issued to a contact, so a stranger's
// request can only be refused; without this bound, streams from throwaway
// keys trickling a byte at a time could hold every stream the node accepts
// and keep its providers out.
const MaxStrangers = 16

// enterStranger takes a stranger's slot, reporting false when all are taken.
func (l *Limiter) enterStranger() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.strangers >= MaxStrangers {
		return false
	}
	l.strangers++
	return true
}

func (l *Limiter) leaveStranger() {
	l.mu.Lock()
	l.strangers--
	l.mu.Unlock()
}

// ServeConn is share.ServeConn under the limiter: a request from a peer
// that is not a contact is dropped unread while MaxStrangers of them are
// being answered (ReasonBusy), and a peer refused too often is refused
// undecided.
func (l *Limiter) ServeConn(v *vault.Vault, c Framer, remote identity.ID, now func() time.Time) (*Served, error) {
	contact, err := l.isContact(v, remote)
	if err != nil {
		return nil, err
	}
	if !contact {
		if !l.enterStranger() {
			return &Served{Reason: ReasonBusy}, nil
		}
		defer l.leaveStranger()
	}
	if ok, first := l.take(remote, now(), 0, true); !ok {
		defer requestPhase(c)()
		// Read the request (bounded, undecided) so the exchange keeps its
		// order, then refuse.
		if _, _, err := c.ReadFrame(maxRequest); err == nil {
			if err := readHave(c, func(record.ID) {}); err == nil {
				if _, _, err := c.ReadFrame(maxPartial); err == nil {
					c.ReadFrame(ledger.MaxCheckpointSize)
				}
			}
		}
		if first {
			if err := v.Log(vault.Event{Action: ledger.ActionDeny, Actor: remote, Outcome: ledger.OutcomeDenied, Reason: string(ReasonRateLimited)}); err != nil {
				return nil, err
			}
		}
		return &Served{Reason: ReasonRateLimited}, c.WriteFrame(frameDenied, []byte(ReasonRateLimited))
	}
	sv, err := ServeConn(v, c, remote, now)
	if sv == nil || sv.Reason != ReasonAllowed {
		l.refundServed(remote)
	}
	if sv != nil && sv.Reason != ReasonAllowed && sv.Reason != "" || err != nil {
		l.take(remote, now(), 1, false)
	}
	return sv, err
}

// IsContact reports whether id is pinned in v's contact book, from a copy
// of the pinned IDs at most a second old: cheap enough to ask for every
// stream a peer opens.
func (l *Limiter) IsContact(v *vault.Vault, id identity.ID) (bool, error) {
	return l.isContact(v, id)
}

// ServePush is ServePush under the limiter. A stranger's push is refused
// from the cached contact IDs, without reading the contact book (which
// costs time growing with the square of its size). A contact's pushed
// grants draw on its served allowance (ServedBurst, ServedRefill), each a
// grant in the inbox and a ledger entry: past it they are refused
// rate-limited. Revocation notices are never limited.
func (l *Limiter) ServePush(v *vault.Vault, c Framer, remote identity.ID) error {
	contact, err := l.isContact(v, remote)
	if err != nil {
		c.WriteFrame(frameDenied, []byte("unavailable"))
		return err
	}
	if !contact {
		c.WriteFrame(frameDenied, []byte(PushRefusedNotContact))
		return fmt.Errorf("%w: %s", ErrNotContact, remote)
	}
	return servePush(v, c, remote, func() bool {
		ok, _ := l.take(remote, time.Now(), 0, true)
		return ok
	})
}

// RequestTimeout bounds the request phase of a stream (the request, have
// and partial frames; a pushed grant or notice): the peer must have sent
// all of it this long after the phase began, however slowly it trickles
// bytes. Only an answered request gets the stream's whole life.
const RequestTimeout = 30 * time.Second

// deadlined is a Framer whose stream's end can be moved (a p2p.Stream).
type deadlined interface {
	Deadline() time.Time
	SetDeadline(time.Time)
}

// requestPhase ends c's stream RequestTimeout from now, if that is sooner
// than its end, and returns the function that puts the end back.
func requestPhase(c Framer) (restore func()) {
	d, ok := c.(deadlined)
	if !ok {
		return func() {}
	}
	end := d.Deadline()
	if limit := time.Now().Add(RequestTimeout); end.IsZero() || limit.Before(end) {
		d.SetDeadline(limit)
	}
	return func() { d.SetDeadline(end) }
}
