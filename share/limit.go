package share

import (
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
// is written to the ledger (reason "rate-limited"). Served requests cost
// nothing. New peer IDs need new connections, which the p2p resource
// manager rate-limits per IP address. The zero value is not usable: call
// NewLimiter.
type Limiter struct {
	rate  time.Duration // one refusal of allowance regained per rate
	burst float64
	mu    sync.Mutex
	peers map[identity.ID]*allowance
}

type allowance struct {
	tokens     float64
	last       time.Time
	suppressed bool // a rate-limited refusal was logged in this window
}

// NewLimiter allows burst refusals per peer, regaining one per rate.
func NewLimiter(burst int, rate time.Duration) *Limiter {
	return &Limiter{rate: rate, burst: float64(burst), peers: map[identity.ID]*allowance{}}
}

func (l *Limiter) take(id identity.ID, now time.Time, cost float64) (ok, firstSuppressed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.peers[id]
	if a == nil {
		if len(l.peers) > 100_000 { // forget everyone rather than grow without bound
			clear(l.peers)
		}
		a = &allowance{tokens: l.burst, last: now}
		l.peers[id] = a
	}
	a.tokens = min(l.burst, a.tokens+float64(now.Sub(a.last))/float64(l.rate))
	a.last = now
	if a.tokens >= 1 {
		a.tokens -= cost
		if a.tokens >= 1 {
			a.suppressed = false
		}
		return true, false
	}
	first := !a.suppressed
	a.suppressed = true
	return false, first
}

// ServeConn is share.ServeConn under the limiter.
func (l *Limiter) ServeConn(v *vault.Vault, c Framer, remote identity.ID, now time.Time) (*Served, error) {
	if ok, first := l.take(remote, now, 0); !ok {
		// Read the request (bounded, undecided) so the exchange keeps its
		// order, then refuse.
		if _, _, err := c.ReadFrame(maxRequest); err == nil {
			if err := readHave(c, func(record.ID) {}); err == nil {
				c.ReadFrame(maxPartial)
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
	if sv != nil && sv.Reason != ReasonAllowed && sv.Reason != "" || err != nil {
		l.take(remote, now, 1)
	}
	return sv, err
}
