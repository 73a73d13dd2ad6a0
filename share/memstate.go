package share

import (
	"slices"
	"sync"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// MemState is an in-memory decision state: revocations, used nonces and
// records. It is safe for concurrent use. Tests and the demo use it; the
// vault keeps the same facts in its database.
type MemState struct {
	Owner identity.ID
	Vault VaultID

	serveMu sync.Mutex // serialises Serve
	mu      sync.Mutex
	revoked map[GrantID]bool
	nonces  map[nonceKey]time.Time // request time, for Forget
	records map[record.ID]RecordInfo
}

type nonceKey struct {
	g GrantID
	n Nonce
}

// NewMemState returns an empty state for owner's vault v.
func NewMemState(owner identity.ID, v VaultID) *MemState {
	return &MemState{Owner: owner, Vault: v}
}

// AddRecord adds or replaces a record.
func (m *MemState) AddRecord(r RecordInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.records == nil {
		m.records = make(map[record.ID]RecordInfo)
	}
	r.Labels = slices.Clone(r.Labels)
	m.records[r.ID] = r
}

// RemoveRecord deletes a record.
func (m *MemState) RemoveRecord(id record.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.records, id)
}

// Revoke marks grant g revoked.
func (m *MemState) Revoke(g GrantID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revoked == nil {
		m.revoked = make(map[GrantID]bool)
	}
	m.revoked[g] = true
}

// UseNonce records the request's nonce as seen for its grant.
func (m *MemState) UseNonce(r *Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nonces == nil {
		m.nonces = make(map[nonceKey]time.Time)
	}
	m.nonces[nonceKey{r.grant, r.nonce}] = r.time
}

// ForgetNonces drops nonces of requests timed before now - 2*ClockSkew:
// Decide refuses such requests as stale whatever their nonce, so they no
// longer need remembering.
func (m *MemState) ForgetNonces(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, t := range m.nonces {
		if t.Before(now.Add(-2 * ClockSkew)) {
			delete(m.nonces, k)
		}
	}
}

// State returns the State view Decide reads.
func (m *MemState) State() State {
	return State{
		Owner: m.Owner,
		Vault: m.Vault,
		Revoked: func(g GrantID) (bool, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.revoked[g], nil
		},
		NonceSeen: func(g GrantID, n Nonce) (bool, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			_, ok := m.nonces[nonceKey{g, n}]
			return ok, nil
		},
		Lookup: func(id record.ID) (RecordInfo, bool, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			r, ok := m.records[id]
			r.Labels = slices.Clone(r.Labels)
			return r, ok, nil
		},
		All: func() ([]RecordInfo, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			out := make([]RecordInfo, 0, len(m.records))
			for _, r := range m.records {
				r.Labels = slices.Clone(r.Labels)
				out = append(out, r)
			}
			return out, nil
		},
	}
}

// Serve decides req and, when the decision is authenticated, records its
// nonce, atomically: the pattern a real store follows inside one write
// transaction.
func (m *MemState) Serve(g *Grant, req *Request, remote identity.ID, now time.Time) Decision {
	// Decide calls the State funcs, which take m.mu; serialise whole
	// decisions with a separate lock so check-and-record is atomic.
	m.serveMu.Lock()
	defer m.serveMu.Unlock()
	d := Decide(g, req, remote, now, m.State())
	if d.Authenticated {
		m.UseNonce(req)
	}
	return d
}
