package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

func newLogCommand(a *app) *cobra.Command {
	var since, actor, rec, action, outcome string
	var tail int
	cmd := &cobra.Command{
		Use:   "log [--since D] [--actor A] [--record ID] [--action A] [--outcome O] [--tail N] [--json]",
		Short: "Show the ledger: every read and change of your vault",
		Long: `Show the entries of your ledger, the tamper-evident log of every read and
change of the vault, oldest first. Actions: ` + actionList() + `.
Outcomes: ok, denied, failed. A provider's request is a serve entry whatever
its outcome: --outcome denied lists every refusal (deny is only a request
refused before its action was known). A serve entry lists the records the
request was allowed; the records of the same request that were then not sent
follow in serve entries with outcome failed and the reason, or ok and
reason held (the provider already had them). --actor takes a medvault ID, a
contact's alias, or "you".
Run 'medvault verify' to check that nobody has rewritten it.`,
		Example: `  medvault log --tail 20
  medvault log --outcome denied
  medvault log --actor dr-hopper --since 2026-01-01
  medvault log --action read --since 2026-01-01
  medvault log --record 3f9a2c --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var f logFilter
			var err error
			if tail < 0 {
				return usagef("--tail must be 0 (all) or more, not %d", tail)
			}
			if since != "" {
				if f.since, err = parseDate(since); err != nil {
					return err
				}
			}
			if action != "" {
				a, err := ledger.ParseAction(action)
				if err != nil {
					return usagef("unknown --action %q (%s)", action, actionList())
				}
				f.action = a
			}
			if outcome != "" {
				o, err := ledger.ParseOutcome(outcome)
				if err != nil {
					return usagef("unknown --outcome %q (ok, denied or failed)", outcome)
				}
				f.outcome = o
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			if actor != "" {
				if f.actor, err = logActor(v, actor); err != nil {
					return err
				}
			}
			if rec != "" {
				id, err := resolveAny(v, rec)
				if err != nil {
					return err
				}
				f.record = id[:]
			}
			var rows []logRow
			err = v.Entries(0, func(i int64, e *ledger.Entry) error {
				if f.match(e) {
					rows = append(rows, logRow{i, e})
				}
				return nil
			})
			if err != nil {
				return err
			}
			if tail > 0 && len(rows) > tail {
				rows = rows[len(rows)-tail:]
			}
			return a.printLog(v, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only entries on or after `DATE`")
	f.StringVar(&actor, "actor", "", "only entries by `WHO`: a medvault ID, a contact's alias, or you")
	f.StringVar(&rec, "record", "", "only entries about this record `ID`")
	f.StringVar(&action, "action", "", "only this `ACTION`")
	f.StringVar(&outcome, "outcome", "", "only this `OUTCOME`: ok, denied or failed")
	f.IntVar(&tail, "tail", 0, "only the last `N` matching entries")
	f.BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

func actionList() string {
	var s []string
	for _, a := range ledger.Actions() {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

// logActor resolves --actor: a medvault ID (anyone, contact or not), a
// contact's alias, or "you".
func logActor(v *vault.Vault, s string) ([]byte, error) {
	if strings.EqualFold(strings.TrimSpace(s), "you") {
		return v.Owner().ID().Bytes(), nil
	}
	if id, err := identity.ParseID(s); err == nil {
		return id.Bytes(), nil
	}
	_, card, err := share.ResolveContact(v, s)
	if err != nil {
		return nil, withHint(usagef("--actor %q is neither a medvault ID nor a contact", s),
			"give an ID as the log prints it with --json, a contact alias ('medvault contacts'), or you")
	}
	return card.ID().Bytes(), nil
}

type logFilter struct {
	since   time.Time
	action  ledger.Action
	outcome ledger.Outcome
	actor   []byte
	record  []byte
}

func (f *logFilter) match(e *ledger.Entry) bool {
	if !f.since.IsZero() && e.Time.Before(f.since) {
		return false
	}
	if f.action != 0 && e.Action != f.action {
		return false
	}
	if f.outcome != 0 && e.Outcome != f.outcome {
		return false
	}
	if f.actor != nil && !bytes.Equal(e.Actor, f.actor) {
		return false
	}
	if f.record != nil {
		for _, s := range e.Subjects {
			if bytes.Equal(s, f.record) {
				return true
			}
		}
		return false
	}
	return true
}

type logRow struct {
	i int64
	e *ledger.Entry
}

// resolveAny resolves a record ID prefix among current records, or parses a
// full ID (which may name a deleted record).
func resolveAny(v *vault.Vault, s string) (record.ID, error) {
	if id, err := record.ParseID(s); err == nil {
		return id, nil
	}
	return resolve(v, s)
}

func (a *app) actorName(v *vault.Vault, b []byte) string {
	id, err := identity.IDFromBytes(b)
	if err != nil {
		return hex.EncodeToString(b)
	}
	if id == v.Owner().ID() {
		return "you"
	}
	return a.contactName(v, id)
}

func (a *app) subjectText(v *vault.Vault, s []byte) string {
	if len(s) == 16 {
		return record.ID(s).String()[:12]
	}
	if _, err := identity.IDFromBytes(s); err == nil {
		return a.actorName(v, s)
	}
	return hex.EncodeToString(s)[:min(len(s)*2, 16)]
}

func (a *app) printLog(v *vault.Vault, rows []logRow) error {
	if a.jsonOut {
		type entryJSON struct {
			Index    int64    `json:"index"`
			Time     string   `json:"time"`
			Actor    string   `json:"actor"`
			Action   string   `json:"action"`
			Subjects []string `json:"subjects"`
			Grant    string   `json:"grant,omitempty"`
			Purpose  string   `json:"purpose,omitempty"`
			Outcome  string   `json:"outcome"`
			Reason   string   `json:"reason,omitempty"`
		}
		out := struct {
			V       int         `json:"v"`
			Entries []entryJSON `json:"entries"`
		}{V: 1, Entries: []entryJSON{}}
		for _, r := range rows {
			ej := entryJSON{Index: r.i, Time: r.e.Time.UTC().Format(time.RFC3339Nano), Action: r.e.Action.String(),
				Purpose: r.e.Purpose, Outcome: r.e.Outcome.String(), Reason: r.e.Reason, Subjects: []string{}}
			if id, err := identity.IDFromBytes(r.e.Actor); err == nil {
				ej.Actor = id.String()
			} else {
				ej.Actor = hex.EncodeToString(r.e.Actor)
			}
			for _, s := range r.e.Subjects {
				ej.Subjects = append(ej.Subjects, hex.EncodeToString(s))
			}
			if len(r.e.Grant) > 0 {
				ej.Grant = hex.EncodeToString(r.e.Grant)
			}
			out.Entries = append(out.Entries, ej)
		}
		return printJSON(a.stdout, out)
	}
	if len(rows) == 0 {
		a.say("No matching ledger entries.")
		return nil
	}
	var times []time.Time
	for _, r := range rows {
		times = append(times, r.e.Time)
	}
	z := a.tableZone(times...)
	var table [][]string
	for _, r := range rows {
		subj := ""
		if r.e.Action == ledger.ActionImport && len(r.e.Subjects) == 0 {
			subj = "(all visible)" // the import's commit
		}
		if n := len(r.e.Subjects); n == 1 {
			subj = a.subjectText(v, r.e.Subjects[0])
		} else if n > 1 {
			subj = fmt.Sprintf("%s (+%d)", a.subjectText(v, r.e.Subjects[0]), n-1)
		}
		outcome := r.e.Outcome.String()
		if r.e.Reason != "" {
			outcome += ": " + r.e.Reason
		}
		table = append(table, []string{fmt.Sprint(r.i), z.format(r.e.Time, "2006-01-02 15:04:05"),
			a.actorName(v, r.e.Actor), r.e.Action.String(), subj, r.e.Purpose, outcome})
	}
	a.printTable([]string{"#", "TIME" + z.title, "ACTOR", "ACTION", "SUBJECT", "PURPOSE", "OUTCOME"}, table)
	return nil
}

func newVerifyCommand(a *app) *cobra.Command {
	var full, incremental bool
	cmd := &cobra.Command{
		Use:   "verify [--incremental] [--json]",
		Short: "Check the integrity of the vault and its ledger",
		Long: `Check that the ledger's Merkle tree, entries and signed checkpoints are intact
and consistent, and that every record's stored ciphertext and metadata are
exactly what the ledger committed to. Exits 13 and names each problem when
anything was changed outside medvault.

By default verify checks everything: every ledger entry and checkpoint, and
every record's content re-hashed. --incremental checks only what was added
since the last successful verify (ledger entries, and records added or
changed since): fast, for a cron job, but it does not see a change to
something an earlier verify already checked. With no earlier verify, it
checks everything.

What verify cannot see: the whole vault replaced by an older copy of itself
(every value in it is authentic), or the newest ledger entries cut off
together with the checkpoints that sign them (what is left is an older,
authentic ledger). Providers who hold your signed checkpoints can detect
both.`,
		Example: `  medvault verify
  medvault verify --incremental --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			if full && incremental {
				return usagef("--full and --incremental contradict each other")
			}
			full = !incremental
			rep, verr := v.Verify(full)
			if a.jsonOut {
				type problemJSON struct {
					What   string `json:"what"`
					Record string `json:"record,omitempty"`
					Detail string `json:"detail"`
				}
				out := struct {
					V        int           `json:"v"`
					OK       bool          `json:"ok"`
					Full     bool          `json:"full"`
					Entries  int64         `json:"entries"`
					Checked  [2]int64      `json:"checked_entries"`
					Records  int           `json:"records_checked"`
					Bytes    int64         `json:"bytes_rehashed"`
					Problems []problemJSON `json:"problems"`
				}{V: 1, OK: verr == nil, Full: full || rep.Full, Records: rep.Records, Bytes: rep.Bytes, Problems: []problemJSON{}}
				if rep.Ledger != nil {
					out.Entries, out.Checked = rep.Ledger.Size, [2]int64{rep.Ledger.From, rep.Ledger.To}
				}
				for _, p := range rep.Problems {
					pj := problemJSON{What: p.What, Detail: p.Detail}
					if p.Record != (record.ID{}) {
						pj.Record = p.Record.String()
					}
					out.Problems = append(out.Problems, pj)
				}
				if err := printJSON(a.stdout, out); err != nil {
					return err
				}
				if verr != nil {
					return withHint(verr, "something changed the vault outside medvault: keep this copy for evidence and restore from a backup")
				}
				return nil
			}
			if verr != nil {
				for _, p := range rep.Problems {
					fmt.Fprintf(a.stdout, "FAIL  %s\n", p)
				}
				return withHint(verr, "something changed the vault outside medvault: keep this copy for evidence and restore from a backup")
			}
			l := rep.Ledger
			fmt.Fprintf(a.stdout, "OK    ledger: %d entries, checked %d..%d, %s\n", l.Size, l.From, l.To, count(l.Checkpoints, "signed checkpoint"))
			fmt.Fprintf(a.stdout, "OK    records: %d checked against the ledger, %s of ciphertext re-hashed\n", rep.Records, vault.FormatSize(rep.Bytes))
			if l.Latest != nil {
				fmt.Fprintf(a.stdout, "      latest checkpoint: size %d, root %s\n", l.Latest.Size, l.Latest.Root)
			}
			switch {
			case !full && l.MarkerIgnored:
				a.say("medvault: note: the mark of the last verify did not authenticate (an older medvault wrote it, or it was changed), so everything was checked")
			case !full && rep.Full:
				a.say("medvault: note: no verify had completed before, so everything was checked")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&incremental, "incremental", false, "check only what was added since the last successful verify")
	// --full was needed before verify checked everything by default;
	// scripts may still pass it.
	cmd.Flags().BoolVar(&full, "full", false, "check everything (the default)")
	cmd.Flags().MarkHidden("full")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

// contactName returns the alias of a contact with this ID, or a short ID.
func (a *app) contactName(v *vault.Vault, id identity.ID) string {
	a.bookMu.Lock()
	defer a.bookMu.Unlock()
	// The serving node (not a command it runs) reloads, at most once a
	// second: contacts change while it runs, and a stream of requests
	// must not reload the book for each. Commands load it once.
	if a.book == nil || (a.node != nil && a.remote == nil && time.Since(a.bookAt) > time.Second) {
		if b, err := share.LoadBook(v); err == nil {
			a.book = b
		} else {
			a.book = &share.Book{}
		}
		a.bookAt = time.Now()
	}
	if al, _, ok := a.book.Find(id); ok {
		return string(al)
	}
	return shortPeerID(id)
}

// shortPeerID is a peer ID as tables show it: its first 8 and last 6
// characters.
func shortPeerID(id identity.ID) string {
	s := id.String()
	return s[:8] + "…" + s[len(s)-6:]
}
