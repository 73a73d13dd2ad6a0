package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

const notRecallable = "Records a provider has already fetched cannot be recalled; revoking stops further access."

func newGrantCommand(a *app) *cobra.Command {
	var scope, expires, purpose, preset string
	var records, labels []string
	var dryRun, push bool
	cmd := &cobra.Command{
		Use:   "grant CONTACT --scope CATS|--preset P [--record ID]... [--label L]... --expires DUR [--purpose P] [--dry-run] [--push]",
		Short: "Let a contact read some of your records, for a time and a purpose",
		Long: `Issue a grant: a token you sign that lets one contact read the records in its
scope until it expires, for the stated purpose. Records carrying a sensitivity
label (MH, SUD, SEX, HIV, STD, GDIS, SDV) are never included unless you name
the label with --label. Every use of the grant is written to your ledger.

--scope takes categories and derived scopes, comma-separated
(` + categoryList() + `, emergency-summary).

Presets (a preset brings its purpose; --scope given with one adds to its
scope, and --purpose replaces its purpose):
` + presetHelp() + `
Purposes of use:
` + purposeHelp() + `
Every grant expires; the longest allowed is 90 days, or what the environment
variable MEDVAULT_MAX_GRANT_LIFETIME says (e.g. 7d), up to 3650d (10 years).

The grant carries up to 8 of your running node's addresses, so the contact
can reach it: public ones first, then private ones, then loopback; one TCP
and one QUIC address per IP before a second of either.

Granting is safe to repeat: the same grant asked again (same contact, scope,
labels, purpose and node addresses, expiring no later than a minute after the
active one) returns the active grant instead of issuing another (--json says
"repeated": true).

` + notRecallable,
		Example: `  medvault grant dr-hopper --scope labs,vitals --expires 1h --purpose TREAT --dry-run
  medvault grant dr-hopper --preset nurse --expires 8h
  medvault grant dr-hopper --scope notes --label MH --expires 7d --purpose TREAT --json`,
		// 'grant ALIAS CATEGORY': the scope (or a preset) is a flag's value.
		Args: exactArgsOr(1, func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return nil
			}
			example := "--scope " + sanitize(args[1]) + " --expires DURATION --purpose P"
			if _, err := share.LookupPreset(args[1]); err == nil {
				example = "--preset " + sanitize(args[1]) + " --expires DURATION"
			}
			flag, _, _ := strings.Cut(example, " ")
			return withHint(usagef("unexpected argument %q: grant takes one CONTACT; what it covers goes with %s", sanitize(args[1]), flag),
				fmt.Sprintf("as in: medvault grant %s %s", sanitize(args[0]), example))
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p share.GrantParams
			if preset != "" {
				pr, err := share.LookupPreset(preset)
				if err != nil {
					return usageError{err}
				}
				p.Scope, p.Purpose = pr.Scope, pr.Purpose
			}
			if scope != "" {
				sc, err := share.ParseScope(scope)
				if err != nil {
					return usageError{err}
				}
				p.Scope.Categories = append(p.Scope.Categories, sc.Categories...)
				p.Scope.Records = append(p.Scope.Records, sc.Records...)
				p.Scope.EmergencySummary = p.Scope.EmergencySummary || sc.EmergencySummary
			}
			for _, l := range labels {
				lb, err := record.ParseLabel(l)
				if err != nil {
					return usageError{err}
				}
				p.Labels = append(p.Labels, lb)
			}
			if purpose != "" {
				pu, err := share.ParsePurpose(purpose)
				if err != nil {
					return usageError{err}
				}
				p.Purpose = pu
			}
			if p.Purpose == "" {
				return usagef("give --purpose (e.g. TREAT) or a --preset")
			}
			if expires == "" {
				return usagef("give --expires DURATION (e.g. 1h, 7d): every grant expires")
			}
			d, err := parseDuration(expires)
			if err != nil {
				return err
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			for _, r := range records {
				id, err := resolve(v, r)
				if err != nil {
					return err
				}
				p.Scope.Records = append(p.Scope.Records, id)
			}
			if p.Scope.IsEmpty() {
				return usagef("give --scope, --record or --preset: a grant must cover something")
			}
			al, card, err := share.ResolveContact(v, args[0])
			if err != nil {
				return err
			}
			limit := a.getenv("MEDVAULT_MAX_GRANT_LIFETIME")
			if limit != "" {
				max, err := parseDuration(limit)
				if err != nil {
					return withHint(err, "MEDVAULT_MAX_GRANT_LIFETIME must be a duration such as 30d")
				}
				p.MaxLifetime = max
			}
			// Too long a grant is told the limit in force.
			lifetime := func(err error) error {
				if errors.Is(err, share.ErrLifetimeTooLong) {
					return withHint(err, lifetimeHint(limit))
				}
				return err
			}
			now := time.Now()
			p.Audience = card.ID()
			p.Expiry = now.Add(d)
			p.Hints = a.hints("grant")
			if dryRun {
				return lifetime(a.dryRun(v, al, card, p, now))
			}
			// The same grant asked again (a script's retry) is the one
			// already issued, not another to revoke.
			var g *share.Grant
			rep, err := share.FindRepeat(v, p, now)
			if err != nil {
				return err
			}
			if rep != nil {
				g = rep.Grant
				a.say("The same grant to %s is already active (%s, until %s): nothing new was issued.", al, g.ID().String()[:12], g.Expiry().In(a.zone()).Format("2006-01-02 15:04"))
			} else if g, err = share.IssueAndStore(v, p, now); err != nil {
				return lifetime(err)
			}
			if len(p.Hints) == 0 {
				a.say("medvault: warning: your node is not running, so the grant carries no address; start 'medvault serve' for the provider to reach you")
			}
			pushed := false
			if push {
				err := a.pushTo(cmd.Context(), v, card, func(c share.Framer) error { return share.PushGrant(c, g) })
				var refused *share.PushRefusedError
				switch {
				case errors.As(err, &refused) && refused.Reason == share.PushRefusedNotContact:
					// Their node takes pushes from its contacts only.
					a.say("medvault: warning: could not deliver the grant to %s's node: %v; send them the token instead, "+
						"or have them add your card ('medvault id' shows it: they run 'medvault contacts add CARD --as ALIAS'), then push again",
						al, err)
				case errors.As(err, &refused) && refused.Reason == string(share.ReasonRateLimited):
					a.say("medvault: warning: could not deliver the grant to %s's node: %v (it takes %d grants from you at once, then one every %s); send them the token instead, or push again later",
						al, err, share.ServedBurst, share.ServedRefill)
				case err != nil:
					a.say("medvault: warning: could not deliver the grant to %s's node: %v; send them the token instead", al, err)
				default:
					pushed = true
					a.say("Delivered the grant to %s's node.", al)
				}
			}
			if a.jsonOut {
				book, err := share.LoadBook(v)
				if err != nil {
					return err
				}
				// The fields 'grants --json' has for each grant, pushed,
				// and repeated: the active grant was returned, none issued.
				err = printJSON(a.stdout, struct {
					V int `json:"v"`
					grantJSON
					Pushed   bool `json:"pushed"`
					Repeated bool `json:"repeated"`
				}{1, newGrantJSON(&share.Issued{Grant: g}, book, time.Now(), false), pushed, rep != nil})
				if err != nil {
					return err
				}
			} else {
				fmt.Fprintln(a.stdout, g.ID())
				fmt.Fprintln(a.stdout, g.Text())
				a.say("Granted %s %s for %s until %s.", withName(string(al), card.Name()), scopeText(g), g.Purpose(), g.Expiry().In(a.zone()).Format("2006-01-02 15:04 MST"))
			}
			if infos, err := share.RecordInfos(v); err == nil {
				if sel := share.Select(g, infos); len(sel.Items) == 0 {
					a.say("medvault: note: %s", noRecordNote(g.Scope(), len(sel.Withheld)))
				}
			}
			a.say("%s", notRecallable)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&scope, "scope", "", "comma-separated `CATEGORIES` (and emergency-summary)")
	f.StringVar(&preset, "preset", "", "a role `PRESET`: "+presetNames())
	f.StringArrayVar(&records, "record", nil, "also include this record `ID` (repeatable)")
	f.StringArrayVar(&labels, "label", nil, "include records with this sensitivity `LABEL` (repeatable)")
	f.StringVar(&expires, "expires", "", "how long the grant lasts, e.g. 1h, 7d (required)")
	f.StringVar(&purpose, "purpose", "", "purpose of use, e.g. TREAT")
	f.BoolVar(&dryRun, "dry-run", false, "say exactly what would be shared, change nothing")
	f.BoolVar(&push, "push", false, "deliver the grant to the contact's node now, if it is online")
	f.BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

func presetNames() string {
	var s []string
	for _, p := range share.Presets() {
		s = append(s, p.Name)
	}
	return strings.Join(s, ", ")
}

// dryRun prints, in plain language, what a grant would share.
func (a *app) dryRun(v *vault.Vault, al share.Alias, card *share.Card, p share.GrantParams, now time.Time) error {
	infos, err := share.RecordInfos(v)
	if err != nil {
		return err
	}
	// A grant signed but never stored or sent changes nothing; it lets the
	// dry run apply exactly the rule the node will.
	p.Vault = share.VaultID(v.VaultID())
	g, err := share.IssueGrant(v.Owner(), p, now)
	if err != nil {
		return err
	}
	sel := share.Select(g, infos)
	ms, err := v.List(vault.Filter{})
	if err != nil {
		return err
	}
	byID := map[record.ID]*vault.Meta{}
	for _, m := range ms {
		byID[m.ID] = m
	}
	if a.jsonOut {
		type item struct {
			ID       string `json:"id"`
			Title    string `json:"title"`
			Category string `json:"category"`
		}
		// The fields of a grant (grants --json) that exist before it is
		// issued, and what it would share.
		out := struct {
			V        int      `json:"v"`
			DryRun   bool     `json:"dry_run"`
			Audience string   `json:"audience"`
			Contact  string   `json:"contact"`
			Scope    string   `json:"scope"`
			Labels   []string `json:"labels"`
			Purpose  string   `json:"purpose"`
			Expires  string   `json:"expires"`
			Shared   []item   `json:"shared"`
			Withheld []string `json:"withheld"`
		}{V: 1, DryRun: true, Audience: card.ID().String(), Contact: string(al), Scope: g.Scope().String(), Labels: []string{},
			Purpose: string(p.Purpose), Expires: p.Expiry.UTC().Format(time.RFC3339), Shared: []item{}, Withheld: []string{}}
		for _, l := range g.Labels() {
			out.Labels = append(out.Labels, string(l))
		}
		for _, id := range sel.Items {
			m := byID[id]
			out.Shared = append(out.Shared, item{id.String(), m.Title, string(m.Category)})
		}
		for _, d := range sel.Withheld {
			out.Withheld = append(out.Withheld, d.ID.String())
		}
		return printJSON(a.stdout, out)
	}
	info := purposeInfo(p.Purpose)
	w := a.stdout
	fmt.Fprintf(w, "Dry run: nothing was granted.\n\n")
	fmt.Fprintf(w, "Would let %s (%s)\n", al, cardFacts(card.Name(), string(card.Role()), "safety number "+card.ID().SafetyNumber()))
	fmt.Fprintf(w, "read %s in scope %s\n", count(len(sel.Items), "record"), p.Scope)
	fmt.Fprintf(w, "for %s (%s)\n", p.Purpose, info)
	fmt.Fprintf(w, "until %s (%s from now).\n\n", p.Expiry.In(a.zone()).Format("2006-01-02 15:04 MST"), p.Expiry.Sub(now).Round(time.Minute))
	var rows [][]string
	for _, id := range sel.Items {
		m := byID[id]
		rows = append(rows, []string{id.String()[:12], dateText(m), string(m.Category), labelsText(m), truncate(m.Title, 50)})
	}
	if len(rows) > 0 {
		a.printTable([]string{"ID", "DATE", "CATEGORY", "LABELS", "TITLE"}, rows)
	}
	if len(sel.Withheld) > 0 {
		verb := "are"
		if len(sel.Withheld) == 1 {
			verb = "is"
		}
		fmt.Fprintf(w, "\nWithheld: %s in scope %s NOT included:", count(len(sel.Withheld), "sensitive record"), verb)
		for _, lc := range sel.WithheldLabels(func(id record.ID) []record.Label { return byID[id].Labels }, p.Labels) {
			fmt.Fprintf(w, " %d labelled %s;", lc.N, lc.Label)
		}
		fmt.Fprintf(w, " name a label with --label to include it.\n")
	}
	fmt.Fprintf(w, "\n%s\n", notRecallable)
	return nil
}

func purposeInfo(p share.Purpose) string {
	for _, i := range share.Purposes() {
		if i.Purpose == p {
			return i.Description
		}
	}
	return string(p)
}

func newGrantsCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "grants [--json]",
		Short:   "List the grants you issued, with their state",
		Example: "  medvault grants\n  medvault grants --json | jq '.grants[] | select(.state==\"active\")'",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			gs, err := share.IssuedGrants(v)
			if err != nil {
				return err
			}
			book, err := share.LoadBook(v)
			if err != nil {
				return err
			}
			now := time.Now()
			name := func(g *share.Grant) string {
				if al, _, ok := book.Find(g.Audience()); ok {
					return string(al)
				}
				return a.contactName(v, g.Audience())
			}
			if a.jsonOut {
				out := struct {
					V      int         `json:"v"`
					Grants []grantJSON `json:"grants"`
				}{V: 1, Grants: []grantJSON{}}
				for _, i := range gs {
					out.Grants = append(out.Grants, newGrantJSON(i, book, now, false))
				}
				return printJSON(a.stdout, out)
			}
			if len(gs) == 0 {
				a.say("No grants.")
				return nil
			}
			z := a.tableZone(expiries(gs)...)
			var rows [][]string
			for _, i := range gs {
				g := i.Grant
				state := i.State(now)
				if _, _, ok := book.Find(g.Audience()); !ok && state == "active" {
					// The node refuses it (no-contact) until a card
					// with this key is pinned again.
					state = "active, no contact"
				}
				rows = append(rows, []string{g.ID().String()[:12], name(g), truncate(scopeText(g), 40), string(g.Purpose()),
					z.format(g.Expiry(), "2006-01-02 15:04"), state})
			}
			a.printTable([]string{"GRANT", "CONTACT", "SCOPE", "PURPOSE", "EXPIRES" + z.title, "STATE"}, rows)
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

// grantJSON is a grant as 'grants', 'inbox' and 'grant' print it with
// --json. A grant issued names its audience, one received its patient.
type grantJSON struct {
	ID       string   `json:"id"`
	Audience string   `json:"audience,omitempty"`
	Patient  string   `json:"patient,omitempty"`
	Contact  string   `json:"contact,omitempty"` // an alias, never a shortened ID
	Scope    string   `json:"scope"`
	Labels   []string `json:"labels"`
	Purpose  string   `json:"purpose"`
	Issued   string   `json:"issued"`
	Expires  string   `json:"expires"`
	State    string   `json:"state"`
	// NoContact: a grant issued to a key that is no longer among the
	// contacts (removed, or replaced by a card with another key): the node
	// refuses it (no-contact) while it stays so.
	NoContact bool   `json:"no_contact,omitempty"`
	Token     string `json:"token"`
}

func newGrantJSON(i *share.Issued, book *share.Book, now time.Time, received bool) grantJSON {
	g := i.Grant
	j := grantJSON{ID: g.ID().String(), Scope: g.Scope().String(), Labels: []string{},
		Purpose: string(g.Purpose()), Issued: g.Issued().UTC().Format(time.RFC3339),
		Expires: g.Expiry().UTC().Format(time.RFC3339), State: i.State(now), Token: g.Text()}
	other := g.Audience()
	if received {
		other = g.Issuer()
		j.Patient = other.String()
	} else {
		j.Audience = other.String()
	}
	if al, _, ok := book.Find(other); ok {
		j.Contact = string(al)
	} else if !received && j.State == "active" {
		j.NoContact = true
	}
	for _, l := range g.Labels() {
		j.Labels = append(j.Labels, string(l))
	}
	return j
}

// scopeText is a grant's scope as tables show it: categories, and the
// sensitive labels it names.
func scopeText(g *share.Grant) string {
	sc := g.Scope().String()
	if ls := g.Labels(); len(ls) > 0 {
		sc += " +" + fmt.Sprint(ls)
	}
	return sc
}

func newRevokeCommand(a *app) *cobra.Command {
	var all string
	cmd := &cobra.Command{
		Use:   "revoke GRANT_ID | --all CONTACT",
		Short: "Revoke a grant: your node refuses it from this moment",
		Long: `Revoke a grant (or every grant of a contact). From this moment your node
refuses every request under it, and the revocation is sent to the
provider's node if it can be reached. Revoking again is safe: it changes
nothing, and sends the revocation again (while the grant has not expired),
for a provider whose node was offline the first time.

` + notRecallable,
		Example: `  medvault revoke 9c1e2f3a
  medvault revoke --all dr-hopper`,
		Args: func(cmd *cobra.Command, args []string) error {
			if (all == "") == (len(args) != 1) {
				return usagef("give one GRANT_ID, or --all CONTACT")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			var targets []*share.Issued
			if all != "" {
				to, err := peerID(v, all)
				if err != nil {
					return withHint(err, noContactHint(v, all))
				}
				gs, err := share.IssuedGrants(v)
				if err != nil {
					return err
				}
				for _, i := range gs {
					if i.Grant.Audience() == to {
						targets = append(targets, i)
					}
				}
			} else {
				i, err := share.FindIssued(v, args[0])
				if err != nil {
					return contactNotGrant(v, args[0], err)
				}
				targets = append(targets, i)
			}
			now := time.Now()
			book, err := share.LoadBook(v)
			if err != nil {
				return err
			}
			type rj struct {
				ID       string `json:"id"`
				Already  bool   `json:"already_revoked"`
				Notified bool   `json:"provider_notified"`
			}
			var results []rj
			defer func() {
				if a.jsonOut {
					if results == nil {
						results = []rj{}
					}
					printJSON(a.stdout, map[string]any{"v": 1, "revoked": results})
				}
			}()
			// A provider's node that could not be reached is not tried
			// again in this run: with --all, every grant waited out its
			// own dial (15 s each) for a node that is off.
			unreached := map[identity.ID]bool{}
			for _, i := range targets {
				r, already, err := share.RevokeAndStore(v, i, now)
				if err != nil {
					return err
				}
				res := rj{ID: i.Grant.ID().String(), Already: already}
				if !a.jsonOut {
					fmt.Fprintln(a.stdout, i.Grant.ID())
				}
				// Revoking again sends the stored revocation again: the
				// provider's node may have been offline the first time.
				// An expired grant is not sent again; nobody can use it.
				again := ""
				if already {
					a.say("Grant %s was already revoked.", i.Grant.ID().String()[:12])
					again = " again"
				} else {
					a.say("Revoked grant %s: your node refuses it from now on.", i.Grant.ID().String()[:12])
				}
				al, card, ok := book.Find(i.Grant.Audience())
				switch {
				case already && !now.Before(i.Grant.Expiry()):
					// Expired: nobody can use it, nothing to tell.
				case !ok:
					a.say("Not telling the provider's node: %s is no longer among your contacts, so medvault does not know where it is; the revocation holds anyway.", i.Grant.Audience())
				case len(card.Hints()) == 0:
					a.say("Not telling %s's node: its card gives no address to reach it; the revocation holds anyway.", al)
				case unreached[i.Grant.Audience()]:
					a.say("Not telling %s's node: it could not be reached a moment ago; the revocation holds anyway (revoke again later to tell it).", al)
				default:
					err := a.pushTo(cmd.Context(), v, card, func(c share.Framer) error { return share.PushRevocation(c, r) })
					if err != nil {
						if exitCode(err) == exitUnreachable {
							unreached[i.Grant.Audience()] = true
						}
						a.say("Could not tell %s's node (%v); the revocation holds anyway.", al, err)
					} else {
						res.Notified = true
						a.say("Told %s's node%s that the grant is revoked.", al, again)
					}
				}
				results = append(results, res)
			}
			if len(targets) == 0 {
				a.say("No grants to revoke.")
			}
			a.say("%s", notRecallable)
			return nil
		},
	}
	cmd.Flags().StringVar(&all, "all", "", "revoke every grant issued to `CONTACT` (an alias, or a provider's ID)")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

// contactNotGrant adds to err, revoke's failure to find the grant ID arg,
// a hint when arg names a contact (or a peer ID) instead: how to revoke
// all its grants, and its active grants' IDs.
func contactNotGrant(v *vault.Vault, arg string, err error) error {
	id, perr := peerID(v, arg)
	if perr != nil {
		return err
	}
	var hint string
	switch al, _, cerr := share.ResolveContact(v, arg); {
	case cerr != nil:
		hint = fmt.Sprintf("%s is a provider's ID, not a grant ID: to revoke every grant to it, run 'medvault revoke --all %s'", sanitize(arg), sanitize(arg))
	case string(al) != arg:
		hint = fmt.Sprintf("%s is the ID of your contact %s, not a grant ID: to revoke every grant of theirs, run 'medvault revoke --all %s'", sanitize(arg), al, al)
	default:
		hint = fmt.Sprintf("%s is a contact, not a grant ID: to revoke every grant of theirs, run 'medvault revoke --all %s'", al, al)
	}
	active, aerr := share.ActiveGrantsTo(v, id, time.Now())
	switch {
	case aerr != nil:
	case len(active) == 0:
		hint += "; it has no active grant"
	default:
		var ids []string
		for _, i := range active {
			ids = append(ids, i.Grant.ID().String()[:12])
		}
		hint += fmt.Sprintf("; %s: %s", count(len(active), "active grant"), strings.Join(ids, ", "))
	}
	return withHint(err, hint)
}

// noContactHint is the hint for 'revoke --all' given what is neither a
// contact nor a peer ID: the grants table shortens the IDs of providers
// who are no longer contacts, so it points to where the full ID is, and
// gives it when arg is the shortened form of one.
func noContactHint(v *vault.Vault, arg string) string {
	hint := "for a contact you removed or whose key you replaced, give the provider's full ID: 'medvault grants --json' shows it as \"audience\""
	gs, err := share.IssuedGrants(v)
	if err != nil {
		return hint
	}
	var match []identity.ID
	for _, i := range gs {
		if id := i.Grant.Audience(); shortPeerID(id) == arg && !slices.Contains(match, id) {
			match = append(match, id)
		}
	}
	if len(match) == 1 {
		return fmt.Sprintf("%s is a shortened ID; in full it is %s: run 'medvault revoke --all %s'", sanitize(arg), match[0], match[0])
	}
	return hint
}

// noRecordNote says why a new grant covers no record: sensitive records
// it withholds, and whether records added later can still fall in it (only
// a scope with categories; named record IDs never grow).
func noRecordNote(sc share.Scope, withheld int) string {
	msg := "it covers no record yet"
	if withheld > 0 {
		msg += fmt.Sprintf(" (%s in its scope withheld as sensitive: name the label with --label to include it)",
			count(withheld, "record"))
	}
	if len(sc.Categories) > 0 || sc.EmergencySummary {
		msg += "; records you add in its scope are covered while it lasts"
	}
	return msg
}
