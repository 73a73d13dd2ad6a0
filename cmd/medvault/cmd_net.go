package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/spf13/cobra"

	"github.com/medvault/medvault/p2p"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// quietLibp2p keeps go-libp2p's own log lines off the user's terminal.
func quietLibp2p() {
	p2p.SetLibp2pLogHandler(slog.NewTextHandler(io.Discard, nil))
}

// startNode starts a libp2p host on the vault owner's key that serves the
// share and push protocols from v.
func (a *app) startNode(ctx context.Context, v *vault.Vault, listen []string) (*p2p.Node, error) {
	quietLibp2p()
	// Each peer may be refused 20 times, regaining one every 3 s; past that
	// its requests are refused without a decision or a ledger entry each.
	limiter := share.NewLimiter(20, 3*time.Second)
	// Contacts are the node's own peers; anyone else's streams share a
	// small budget (p2p.Limits.MaxStrangerStreams).
	known := func(p peer.ID) bool {
		pub, err := p2p.PublicKeyFromID(p)
		if err != nil {
			return false
		}
		id, err := identity.IDFromPublicKey(pub)
		if err != nil {
			return false
		}
		ok, err := limiter.IsContact(v, id)
		return err == nil && ok
	}
	n, err := p2p.NewNode(ctx, p2p.Config{Key: v.Owner().NetworkKey(), Listen: listen, DHT: a.dht, Bootstrap: a.bootstrapPeers(), Known: known})
	if err != nil {
		return nil, err
	}
	a.pushNotes = &throttle{report: func(n int) {
		a.say("refused %s from peers that are not contacts in the last minute (not shown one by one)", count(n, "more push", "more pushes"))
	}}
	a.pushLimited = &throttle{report: func(n int) {
		a.say("refused %s from contacts pushing too many in the last minute (not shown one by one)", count(n, "more pushed grant", "more pushed grants"))
	}}
	n.Handle(p2p.ProtocolShare, func(ctx context.Context, s *p2p.Stream) {
		remote, err := identity.IDFromPublicKey(s.RemoteKey())
		if err != nil {
			return
		}
		sv, err := limiter.ServeConn(v, s, remote, time.Now)
		who := a.contactName(v, remote)
		if sv != nil && sv.Witnessed != nil {
			switch w := sv.Witnessed; {
			case w.Ahead:
				a.say("medvault: warning: %s holds a checkpoint of your ledger at %d entries, more than this vault has: this vault was put back to an older copy (a restored backup, or someone hiding entries), or your key signed another log; 'medvault verify' cannot see this", who, w.Size)
			case w.Diverged:
				a.say("medvault: warning: %s holds a checkpoint of your ledger (%d entries) that this ledger does not extend: it was put back to an older copy and written on since, or your key signed another log; 'medvault verify' cannot see this", who, w.Size)
			}
		}
		switch {
		case err != nil:
			a.say("request from %s: %v", who, err)
		case sv.Reason == share.ReasonRateLimited, sv.Reason == share.ReasonBusy:
			// Not printed: a flood would flood the terminal too.
		case sv.Reason == share.ReasonAllowed:
			a.say("served %s, %s, to %s (grant %s)", count(sv.Sent, "record"), vault.FormatSize(sv.Bytes), who, sv.Grant.String()[:12])
			for _, id := range sv.Withheld {
				a.say("medvault: warning: withheld record %s from %s: its stored copy failed its integrity check; run 'medvault verify'", id, who)
			}
			for _, id := range sv.Withdrawn {
				a.say("did not send record %s to %s: removed or relabelled out of the grant since the request was decided", id, who)
			}
			if sv.Ended != "" {
				a.say("stopped sending to %s: the grant is %s; the records not yet sent were not sent", who, sv.Ended)
			}
		default:
			a.say("refused a request from %s: %s", who, sv.Reason)
		}
	})
	n.Handle(p2p.ProtocolPush, func(ctx context.Context, s *p2p.Stream) {
		remote, err := identity.IDFromPublicKey(s.RemoteKey())
		if err != nil {
			return
		}
		if err := limiter.ServePush(v, s, remote); err != nil {
			if errors.Is(err, share.ErrNotContact) {
				// Anyone can make keys: a flood of them must not
				// flood this terminal.
				if missed, ok := a.pushNotes.allow(time.Now()); ok {
					a.say("refused a push from %s: not a contact%s", remote, missedNote(missed))
				}
				return
			}
			if errors.Is(err, share.ErrRateLimited) {
				if missed, ok := a.pushLimited.allow(time.Now()); ok {
					a.say("refused a grant pushed by %s: %d or more in a short time (one more is taken every %s)%s", a.contactName(v, remote), share.ServedBurst, share.ServedRefill, missedNote(missed))
				}
				return
			}
			a.say("push from %s refused: %v", a.contactName(v, remote), err)
		} else {
			a.say("received a grant or revocation notice from %s ('medvault inbox')", a.contactName(v, remote))
		}
	})
	return n, nil
}

// dialNode returns the running node (inside serve) or a dial-only node,
// and a function to release it.
func (a *app) dialNode(ctx context.Context, v *vault.Vault) (*p2p.Node, func(), error) {
	if a.node != nil {
		return a.node, func() {}, nil
	}
	quietLibp2p()
	n, err := p2p.NewNode(ctx, p2p.Config{Key: v.Owner().NetworkKey(), Bootstrap: a.bootstrapPeers()})
	if err != nil {
		return nil, nil, err
	}
	return n, func() { n.Close() }, nil
}

// bootstrapPeers returns the DHT bootstrap peers: serve's --bootstrap, else
// MEDVAULT_BOOTSTRAP (multiaddrs separated by spaces or commas), which is
// also what a command without a running node uses.
func (a *app) bootstrapPeers() []string {
	if len(a.bootstrap) > 0 {
		return a.bootstrap
	}
	return strings.FieldsFunc(a.getenv("MEDVAULT_BOOTSTRAP"), func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// dial opens a stream to peer at addrs, mapping failures to exit 20.
func (a *app) dial(ctx context.Context, v *vault.Vault, peer identity.ID, addrs []string, proto protocol.ID) (*p2p.Stream, func(), error) {
	if len(addrs) == 0 && (a.node == nil || !a.node.HasDHT()) && len(a.bootstrapPeers()) == 0 {
		return nil, nil, withHint(fmt.Errorf("%w: no known address for %s", p2p.ErrUnreachable, a.contactName(v, peer)),
			"ask them to run 'medvault serve' and send a fresh grant or contact card (or find them through a DHT: MEDVAULT_BOOTSTRAP)")
	}
	n, release, err := a.dialNode(ctx, v)
	if err != nil {
		return nil, nil, err
	}
	pid, err := p2p.IDFromPublicKey(peer.PublicKey())
	if err != nil {
		release()
		return nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := n.DialPeer(dctx, pid, addrs, proto)
	if err != nil {
		release()
		return nil, nil, withHint(err, "check that their 'medvault serve' is running and reachable")
	}
	return s, func() { s.Close(); release() }, nil
}

func newFetchCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fetch TOKEN|GRANT_ID|PATIENT",
		Short: "Fetch the records a patient granted you, over the network",
		Long: `Fetch, directly from the patient's node, the records a grant lets you read,
and store them in your vault as they arrive: encrypted to you, with their
provenance. Give the grant's token (as the patient sent it), the ID of a grant
in your inbox, or the patient's contact alias (or their ID) to use their
newest active grant (and the next, when the patient's node answers that it
was revoked; a note names their other active grants, which you fetch by
their IDs). A grant your vault knows has ended (you hold the patient's
signed revocation, a receipt showed it refused as revoked, or it expired) is
refused here (exit 17) without contacting the patient's node.

Fetching is incremental: records you already hold are not sent again, and a
fetch cut short keeps what arrived, so the next fetch resumes where it stopped,
inside a record too (the completed record is checked end to end before it is
stored). The patient's node logs
your signed request and returns a receipt, which is verified and kept.`,
		Example: `  medvault fetch medvault-grant-v1:...
  medvault fetch 9c1e2f3a
  medvault fetch ada`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			g, byPatient, err := a.resolveGrant(v, args[0])
			if err != nil {
				return err
			}
			if byPatient {
				a.noteOtherGrants(v, g, args[0])
			}
			fetch := func(g *share.Grant) (*share.FetchResult, error) {
				addrs := g.Hints()
				if book, err := share.LoadBook(v); err == nil {
					if _, c, ok := book.Find(g.Issuer()); ok {
						addrs = append(addrs, c.Hints()...)
					}
				}
				s, release, err := a.dial(cmd.Context(), v, g.Issuer(), addrs, p2p.ProtocolShare)
				if err != nil {
					return nil, err
				}
				defer release()
				progress := func(int, int64) {}
				if a.stderrTTY() && a.remote == nil {
					progress = func(n int, b int64) {
						fmt.Fprintf(a.stderr, "\rfetching: %s, %s", count(n, "record"), vault.FormatSize(b))
					}
				}
				res, err := share.FetchConn(v, s, g, time.Now(), progress)
				if a.stderrTTY() && a.remote == nil {
					fmt.Fprint(a.stderr, "\r\033[K")
				}
				if res != nil && res.Entry != nil {
					a.say("Receipt verified: your request is entry %d of %s's ledger.", res.Index, a.contactName(v, g.Issuer()))
				}
				return res, err
			}
			res, err := fetch(g)
			// Given a patient, a grant found revoked only now (no notice
			// reached this node) gives way to their next active one: the
			// kept receipt marks it revoked in the inbox.
			for byPatient && errors.Is(err, share.ErrRevoked) {
				next, _, rerr := a.resolveGrant(v, args[0])
				if rerr != nil || next.ID() == g.ID() {
					break
				}
				a.say("Grant %s was revoked; trying %s's next grant, %s.", g.ID().String()[:12], args[0], next.ID().String()[:12])
				g = next
				res, err = fetch(g)
			}
			if res != nil && res.Ledger != nil {
				a.warnLedger(a.contactName(v, g.Issuer()), res.Ledger)
			}
			if err != nil {
				if res != nil && res.Records > 0 {
					verb := "were"
					if res.Records == 1 {
						verb = "was"
					}
					a.say("%s arrived whole and %s kept.", count(res.Records, "record"), verb)
				}
				if res != nil && res.Kept {
					a.say("What arrived of the record in transfer is kept too: fetch again to get the rest.")
				}
				return err
			}
			if len(res.Withheld) > 0 {
				a.say("medvault: warning: %s's node withheld %s: its copy failed its integrity check; ask them to run 'medvault verify'",
					a.contactName(v, g.Issuer()), count(len(res.Withheld), "record"))
			}
			if len(res.Withdrawn) > 0 {
				a.say("medvault: note: %s withdrew %s from this grant while it was being served",
					a.contactName(v, g.Issuer()), count(len(res.Withdrawn), "record"))
			}
			if a.jsonOut {
				ids := func(l []record.ID) []string {
					out := []string{}
					for _, id := range l {
						out = append(out, id.String())
					}
					return out
				}
				return printJSON(a.stdout, map[string]any{"v": 1, "grant": g.ID().String(), "records": res.Records,
					"resumed": res.Resumed, "bytes": res.Bytes, "receipt_index": res.Index,
					"withheld": ids(res.Withheld), "withdrawn": ids(res.Withdrawn),
					"ledger": map[string]any{"seen": res.Ledger.Seen, "now": res.Ledger.Now, "problem": string(res.Ledger.Problem)}})
			}
			resumed := ""
			if res.Resumed > 0 {
				resumed = fmt.Sprintf(", %d resumed where a cut transfer stopped", res.Resumed)
			}
			fmt.Fprintf(a.stdout, "Fetched %s (%s%s) from %s under grant %s.\n", count(res.Records, "new record"), vault.FormatSize(res.Bytes),
				resumed, a.contactName(v, g.Issuer()), g.ID().String()[:12])
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

// noteOtherGrants says, for a fetch given a patient (who), which uses only
// their newest active grant g, what other active grants from them the
// inbox holds, and how to fetch under each.
func (a *app) noteOtherGrants(v *vault.Vault, g *share.Grant, who string) {
	inbox, err := share.Inbox(v)
	if err != nil {
		return
	}
	now := time.Now()
	var cmds []string
	for _, i := range inbox {
		if i.Grant.Issuer() == g.Issuer() && i.Grant.ID() != g.ID() && i.State(now) == "active" {
			cmds = append(cmds, "medvault fetch "+i.Grant.ID().String()[:12])
		}
	}
	if len(cmds) > 0 {
		a.say("medvault: note: this fetch uses %s's newest active grant, %s; %s from %s: %s",
			sanitize(who), g.ID().String()[:12], count(len(cmds), "other active grant"), sanitize(who), strings.Join(cmds, ", "))
	}
}

// resolveGrant finds the grant a provider means: a pasted token (kept in
// the inbox), a grant ID prefix in the inbox, or a patient's newest active
// grant (byPatient), the patient given by contact alias or by ID. A grant
// named by token or ID that this vault knows has ended is refused here,
// before anything is asked of the patient's node (refuseEnded).
func (a *app) resolveGrant(v *vault.Vault, s string) (g *share.Grant, byPatient bool, err error) {
	if strings.HasPrefix(s, "medvault-grant-") {
		g, err = share.ParseGrant(s)
		if err != nil {
			return nil, false, withHint(usageError{fmt.Errorf("grant token: %w", err)}, "paste the whole token exactly as the patient sent it")
		}
		if err := share.StoreInbox(v, g); err != nil {
			return nil, false, err
		}
	}
	inbox, err := share.Inbox(v)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	named := func(i *share.Issued) (*share.Grant, bool, error) {
		if err := a.refuseEnded(v, i, now); err != nil {
			return nil, false, err
		}
		return i.Grant, false, nil
	}
	if g != nil {
		for _, i := range inbox {
			if i.Grant.ID() == g.ID() {
				return named(i)
			}
		}
		return g, false, nil
	}
	ls := strings.ToLower(s)
	if len(ls) >= 8 {
		var found []*share.Issued
		for _, i := range inbox {
			if strings.HasPrefix(i.Grant.ID().String(), ls) {
				found = append(found, i)
			}
		}
		switch len(found) {
		case 1:
			return named(found[0])
		case 0:
		default:
			return nil, false, usagef("grant ID prefix %q is ambiguous: give more digits", s)
		}
	}
	patient, err := peerID(v, s)
	if err != nil {
		if len(ls) < 8 && ls != "" && strings.Trim(ls, "0123456789abcdef") == "" {
			return nil, false, usagef("no contact %q, and as a grant ID it is too short: give at least 8 hex digits", s)
		}
		return nil, false, vault.NotFoundf("no grant or contact %q", s)
	}
	var ended []string
	for _, i := range inbox {
		if i.Grant.Issuer() != patient {
			continue
		}
		if st := i.State(now); st == "active" {
			return i.Grant, true, nil
		} else if !slices.Contains(ended, st) {
			ended = append(ended, st)
		}
	}
	if len(ended) > 0 {
		// The patient gave access and it ended (or has not begun): a
		// refusal (exit 17), not a grant that does not exist.
		err := share.ErrNotYetValid
		if slices.Contains(ended, "revoked") {
			err = share.ErrRevoked
		} else if slices.Contains(ended, "expired") {
			err = share.ErrExpired
		}
		return nil, true, withHint(fmt.Errorf("%w: every grant from %s in your inbox is %s", err, s, strings.Join(ended, " or ")),
			"ask the patient for a new grant")
	}
	return nil, true, vault.NotFoundf("no grant from %s in your inbox", s)
}

// refuseEnded returns an access-denied error (exit 17) for a grant in the
// inbox that this vault knows has ended: it holds the patient's signed
// revocation (their node pushed it), a verified receipt shows their node
// refused the grant as revoked, or the grant expired. Such a grant is not
// used, even if the patient's node would still answer for it (its vault
// put back to a copy from before the revocation). A grant not yet valid
// is left to the patient's node, whose clock decides.
func (a *app) refuseEnded(v *vault.Vault, i *share.Issued, now time.Time) error {
	g := i.Grant
	who, short := a.contactName(v, g.Issuer()), g.ID().String()[:12]
	hint := "ask the patient for a new grant ('medvault inbox' shows the ones you hold)"
	switch {
	case i.Revoked != nil && i.Revoked.Check(g) == nil:
		return withHint(fmt.Errorf("%w: you hold %s's signed revocation of grant %s (signed %s), so it was not used",
			share.ErrRevoked, who, short, i.Revoked.Time().In(a.zone()).Format("2006-01-02 15:04 MST")), hint)
	case i.RefusedRevoked:
		return withHint(fmt.Errorf("%w: a receipt you hold from %s's node refused grant %s as revoked, so it was not used",
			share.ErrRevoked, who, short), hint)
	case i.State(now) == "expired":
		return withHint(fmt.Errorf("%w: grant %s from %s ended at %s",
			share.ErrExpired, short, who, g.Expiry().In(a.zone()).Format("2006-01-02 15:04 MST")), hint)
	}
	return nil
}

func newInboxCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "inbox [--json]",
		Short:   "List the grants patients sent you",
		Example: "  medvault inbox\n  medvault fetch $(medvault inbox --json | jq -r '.grants[0].id')",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			gs, err := share.Inbox(v)
			if err != nil {
				return err
			}
			now := time.Now()
			if a.jsonOut {
				book, err := share.LoadBook(v)
				if err != nil {
					return err
				}
				out := struct {
					V      int         `json:"v"`
					Grants []grantJSON `json:"grants"`
				}{V: 1, Grants: []grantJSON{}}
				for _, i := range gs {
					out.Grants = append(out.Grants, newGrantJSON(i, book, now, true))
				}
				return printJSON(a.stdout, out)
			}
			if len(gs) == 0 {
				a.say("No grants received.")
				return nil
			}
			z := a.tableZone(expiries(gs)...)
			var rows [][]string
			for _, i := range gs {
				g := i.Grant
				rows = append(rows, []string{g.ID().String()[:12], a.contactName(v, g.Issuer()), truncate(scopeText(g), 40),
					string(g.Purpose()), z.format(g.Expiry(), "2006-01-02 15:04"), i.State(now)})
			}
			a.printTable([]string{"GRANT", "PATIENT", "SCOPE", "PURPOSE", "EXPIRES" + z.title, "STATE"}, rows)
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

// pushTo delivers a grant or a revocation notice to a contact's node, if it
// can be reached; failures are reported, not fatal (the token is stored).
func (a *app) pushTo(ctx context.Context, v *vault.Vault, card *share.Card, send func(share.Framer) error) error {
	s, release, err := a.dial(ctx, v, card.ID(), card.Hints(), p2p.ProtocolPush)
	if err != nil {
		return err
	}
	defer release()
	return send(s)
}

// warnLedger says what a fetch's receipt showed about the patient's ledger,
// when it does not extend the one an earlier receipt showed.
func (a *app) warnLedger(who string, lc *share.LedgerCheck) {
	switch lc.Problem {
	case share.LedgerRolledBack:
		a.say("medvault: warning: %s's ledger has %d entries; an earlier receipt showed %d: their vault was put back to an older copy (a restored backup, or someone hiding entries), or their key signed another log. Both signed checkpoints are kept in your vault as evidence.", who, lc.Now, lc.Seen)
	case share.LedgerForked:
		a.say("medvault: warning: %s's ledger does not extend the one an earlier receipt showed (%d entries): it was rewritten. The proof, checkable with their public key, is kept in your vault as evidence.", who, lc.Seen)
	}
}

func newWitnessCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "witness [--json]",
		Short: "Show what receipts showed you about patients' ledgers",
		Long: `Show, per patient, the latest checkpoint of their ledger a receipt showed you,
and the evidence kept when a patient's ledger did not extend what you saw
before: their vault was put back to an older copy, or their log rewritten.
Every fetch checks this (the patient's node must prove that its ledger
extends your checkpoint); 'fetch' warns when it does not. --json prints the
signed checkpoints and, for a rewritten log, the proof, which anyone with the
patient's public key can check.`,
		Example: "  medvault witness\n  medvault witness --json | jq '.evidence'",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			ws, evs, err := share.Witnessed(v)
			if err != nil {
				return err
			}
			if a.jsonOut {
				type cpJSON struct {
					Size int64  `json:"size"`
					Note string `json:"note"`
				}
				type heldJSON struct {
					Patient    string `json:"patient"`
					Name       string `json:"name"`
					Checkpoint cpJSON `json:"checkpoint"`
				}
				type evJSON struct {
					Patient string `json:"patient"`
					Name    string `json:"name"`
					Problem string `json:"problem"`
					At      string `json:"at"`
					Seen    cpJSON `json:"seen"`
					Now     cpJSON `json:"now"`
					Fork    []byte `json:"fork_evidence,omitempty"`
				}
				out := struct {
					V        int        `json:"v"`
					Held     []heldJSON `json:"held"`
					Evidence []evJSON   `json:"evidence"`
				}{V: 1, Held: []heldJSON{}, Evidence: []evJSON{}}
				for _, w := range ws {
					out.Held = append(out.Held, heldJSON{w.Patient.String(), a.contactName(v, w.Patient), cpJSON{w.Checkpoint.Size, string(w.Checkpoint.Note)}})
				}
				for _, e := range evs {
					out.Evidence = append(out.Evidence, evJSON{e.Patient.String(), a.contactName(v, e.Patient), string(e.Problem),
						e.At.UTC().Format(time.RFC3339), cpJSON{e.Seen.Size, string(e.Seen.Note)}, cpJSON{e.Now.Size, string(e.Now.Note)}, e.Fork})
				}
				return printJSON(a.stdout, out)
			}
			if len(ws) == 0 {
				a.say("No receipts yet: fetch from a patient first.")
				return nil
			}
			var rows [][]string
			for _, w := range ws {
				rows = append(rows, []string{a.contactName(v, w.Patient), fmt.Sprint(w.Checkpoint.Size)})
			}
			a.printTable([]string{"PATIENT", "LEDGER ENTRIES SEEN"}, rows)
			if len(evs) == 0 {
				a.say("No patient's ledger has failed to extend what you saw.")
				return nil
			}
			var times []time.Time
			for _, e := range evs {
				times = append(times, e.At)
			}
			z := a.tableZone(times...)
			rows = nil
			for _, e := range evs {
				rows = append(rows, []string{z.format(e.At, "2006-01-02 15:04"), a.contactName(v, e.Patient), string(e.Problem),
					fmt.Sprint(e.Seen.Size), fmt.Sprint(e.Now.Size)})
			}
			fmt.Fprintln(a.stdout)
			a.printTable([]string{"WHEN" + z.title, "PATIENT", "PROBLEM", "SEEN BEFORE", "THEN"}, rows)
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

// throttle lets a kind of note through at most once a window (a minute
// unless set) and counts the ones it held back; when a window ends with
// some held back and no note since, it hands their count to report, so a
// flood that stops within the minute is still told.
type throttle struct {
	window time.Duration
	report func(missed int)

	mu      sync.Mutex
	last    time.Time
	missed  int
	timer   *time.Timer
	stopped bool
}

// stop drops what is held back and any report still due: the node that
// refused those pushes has stopped. Safe on nil.
func (t *throttle) stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped, t.missed = true, 0
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
}

func (t *throttle) span() time.Duration {
	if t.window > 0 {
		return t.window
	}
	return time.Minute
}

// allow reports whether a note may be printed at now and, if so, how many
// were held back since the last one printed.
func (t *throttle) allow(now time.Time) (missed int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && now.Sub(t.last) < t.span() {
		t.missed++
		if t.timer == nil && t.report != nil {
			t.timer = time.AfterFunc(t.last.Add(t.span()).Sub(now), t.flush)
		}
		return 0, false
	}
	missed, t.missed, t.last = t.missed, 0, now
	return missed, true
}

// flush reports what was held back when a window ended without a note.
func (t *throttle) flush() {
	t.mu.Lock()
	t.timer = nil
	if t.stopped {
		t.mu.Unlock()
		return
	}
	n := t.missed
	t.missed = 0
	if n > 0 {
		t.last = time.Now()
	}
	t.mu.Unlock()
	if n > 0 {
		t.report(n)
	}
}

func missedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s refused since the last note, not shown)", count(n, "more push", "more pushes"))
}
