package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/share"
)

// contactJSON is a contact in --json output.
type contactJSON struct {
	Alias  string `json:"alias"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Safety string `json:"safety_number"`
}

func toContactJSON(al share.Alias, c *share.Card) contactJSON {
	return contactJSON{Alias: string(al), ID: c.ID().String(), Name: c.Name(), Role: string(c.Role()), Safety: c.ID().SafetyNumber()}
}

// withName is a contact's alias followed by the name its card gives, or the
// alias alone when the card gives none.
func withName(alias, name string) string {
	if name = sanitize(name); name == "" {
		return alias
	}
	return alias + " (" + name + ")"
}

// cardFacts joins what is known of a card, leaving out a missing name.
func cardFacts(name string, facts ...string) string {
	if name = sanitize(name); name != "" {
		facts = append([]string{name}, facts...)
	}
	return strings.Join(facts, ", ")
}

func newContactsCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contacts",
		Short: "Your address book of pinned contact cards",
		Long: `Contacts are the people you share with (or receive from), pinned by key: a
card for a known contact with a different key is refused with a warning
unless you compare safety numbers and give --replace.`,
		Example: `  medvault contacts add medvault-card-v1:... --as dr-hopper
  medvault contacts list
  medvault contacts show dr-hopper
  medvault contacts rm dr-hopper`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return withHint(usagef("unknown command %q for \"medvault contacts\"", args[0]), "see 'medvault contacts --help'")
			}
			return cmd.Help()
		},
	}
	var alias string
	var replace bool
	add := &cobra.Command{
		Use:   "add CARD --as ALIAS [--replace]",
		Short: "Pin a contact card under an alias",
		Example: `  medvault contacts add "$(cat hopper.card)" --as dr-hopper
  medvault contacts add medvault-card-v1:... --as dr-hopper --replace`,
		// 'contacts add CARD ALIAS': the alias is a flag's value.
		Args: exactArgsOr(1, func(_ *cobra.Command, args []string) error {
			if len(args) != 2 || alias != "" {
				return nil
			}
			return withHint(usagef("unexpected argument %q: the alias goes with --as", sanitize(args[1])),
				fmt.Sprintf("as in: medvault contacts add CARD --as %s", sanitize(args[1])))
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			if alias == "" {
				return usagef("give --as ALIAS, the short name you will use for this contact")
			}
			al, err := share.ParseAlias(alias)
			if err != nil {
				return usageError{err}
			}
			c, err := share.ParseCard(args[0])
			if err != nil {
				return withHint(usageError{fmt.Errorf("contact card: %w", err)}, "paste the whole card line exactly as 'medvault id' printed it")
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			if c.ID() == v.Owner().ID() {
				return usagef("that is your own card")
			}
			var before *share.Card
			if _, old, err := share.ResolveContact(v, string(al)); err == nil {
				before = old
			}
			res, err := share.SaveContact(v, al, c, replace)
			if errors.Is(err, share.ErrKeyChanged) && len(res.SameName) > 0 {
				fmt.Fprintf(a.stderr, "medvault: WARNING: CONTACT %q ALREADY SHOWS THE NAME %q WITH ANOTHER KEY.\n", res.SameName[0], sanitize(c.Name()))
				fmt.Fprintf(a.stderr, "medvault: WARNING: someone may be posing as them. Compare safety numbers by phone:\n")
				fmt.Fprintf(a.stderr, "medvault: WARNING:   new card %s  safety number %s\n", c.ID(), c.ID().SafetyNumber())
				return withHint(err, "only if this really is a different person, run again with --replace")
			}
			if errors.Is(err, share.ErrKeyChanged) {
				fmt.Fprintf(a.stderr, "medvault: WARNING: THE KEY FOR %q HAS CHANGED.\n", al)
				fmt.Fprintf(a.stderr, "medvault: WARNING: someone may be impersonating this contact. Compare safety numbers by phone:\n")
				fmt.Fprintf(a.stderr, "medvault: WARNING:   new card %s  safety number %s\n", c.ID(), c.ID().SafetyNumber())
				return withHint(err, "only if the contact confirms the new safety number, run again with --replace")
			}
			if err != nil {
				return err
			}
			for _, other := range res.SameName {
				fmt.Fprintf(a.stderr, "medvault: WARNING: contact %q shows the same name %q with a different key: check who is who\n", other, sanitize(c.Name()))
			}
			fmt.Fprintf(a.stdout, "%s %s\n", al, pinActionText(res.Action))
			if res.Action == share.PinReplaced && before != nil && before.ID() != c.ID() {
				if active, err := share.ActiveGrantsTo(v, before.ID(), time.Now()); err == nil && len(active) > 0 {
					fmt.Fprintf(a.stderr, "medvault: warning: %s issued to the old key %s; your node refuses them while no contact has that key (pinning its card again would bring them back), so revoke them: medvault revoke --all %s\n",
						count(len(active), "active grant was", "active grants were"), before.ID(), before.ID())
				}
			}
			a.say("%s: %s", al, cardFacts(c.Name(), string(c.Role()), c.ID().String(), "safety number "+c.ID().SafetyNumber()))
			return nil
		},
	}
	add.Flags().StringVar(&alias, "as", "", "the `ALIAS` to pin the card under")
	add.Flags().BoolVar(&replace, "replace", false, "accept a changed key (after comparing safety numbers)")
	list := &cobra.Command{
		Use:     "list [--json]",
		Short:   "List contacts",
		Example: "  medvault contacts list --json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			b, err := share.LoadBook(v)
			if err != nil {
				return err
			}
			cs := b.Contacts()
			if a.jsonOut {
				out := struct {
					V        int           `json:"v"`
					Contacts []contactJSON `json:"contacts"`
				}{V: 1, Contacts: []contactJSON{}}
				for _, c := range cs {
					out.Contacts = append(out.Contacts, toContactJSON(c.Alias, c.Card))
				}
				return printJSON(a.stdout, out)
			}
			if len(cs) == 0 {
				a.say("No contacts.")
				return nil
			}
			var rows [][]string
			for _, c := range cs {
				rows = append(rows, []string{string(c.Alias), c.Card.Name(), string(c.Card.Role()), c.Card.ID().String()})
			}
			a.printTable([]string{"ALIAS", "NAME", "ROLE", "ID"}, rows)
			return nil
		},
	}
	list.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	show := &cobra.Command{
		Use:     "show ALIAS",
		Short:   "Show a contact, with its safety number and card",
		Example: "  medvault contacts show dr-hopper",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			al, c, err := share.ResolveContact(v, args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return printJSON(a.stdout, struct {
					V int `json:"v"`
					contactJSON
					Addresses []string `json:"addresses"`
					Card      string   `json:"card"`
				}{1, toContactJSON(al, c), append([]string{}, c.Hints()...), c.Text()})
			}
			fmt.Fprintf(a.stdout, "Alias:          %s\nName:           %s\nRole:           %s\nID:             %s\nSafety number:  %s\nAddresses:      %s\nCard:           %s\n",
				al, sanitize(c.Name()), c.Role(), c.ID(), c.ID().SafetyNumber(), strings.Join(c.Hints(), " "), c.Text())
			return nil
		},
	}
	show.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	rm := &cobra.Command{
		Use:     "rm ALIAS",
		Short:   "Remove a contact (revoke its active grants first)",
		Example: "  medvault contacts rm dr-hopper",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			al, err := share.ParseAlias(args[0])
			if err != nil {
				return usageError{err}
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			// A grant is served only to a pinned contact (the records
			// are encrypted to its card's key): removing the contact
			// would leave its grants listed active but unusable, and
			// no alias to revoke them by.
			if _, card, err := share.ResolveContact(v, string(al)); err == nil {
				active, err := share.ActiveGrantsTo(v, card.ID(), time.Now())
				if err != nil {
					return err
				}
				if len(active) > 0 {
					return withHint(fmt.Errorf("%s holds %s: revoke them first", al, count(len(active), "active grant")),
						fmt.Sprintf("medvault revoke --all %s, then medvault contacts rm %s", al, al))
				}
			}
			if err := share.RemoveContact(v, al); err != nil {
				return err
			}
			a.say("Removed %s.", al)
			return nil
		},
	}
	cmd.AddCommand(add, list, show, rm)
	return cmd
}

func pinActionText(p share.PinAction) string {
	switch p {
	case share.PinAdded:
		return "added"
	case share.PinUpdated:
		return "updated"
	case share.PinUnchanged:
		return "unchanged"
	case share.PinReplaced:
		return "replaced (new key)"
	}
	return "?"
}

// parseDuration accepts Go durations plus days ("7d", "90d").
func parseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err == nil && n > 0 && n < 100000 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usagef("invalid duration %q: use e.g. 30m, 1h, 7d", s)
	}
	return d, nil
}

func presetHelp() string {
	var b strings.Builder
	for _, p := range share.Presets() {
		fmt.Fprintf(&b, "  %-13s %s\n", p.Name, p.Description)
	}
	return b.String()
}

func purposeHelp() string {
	var b strings.Builder
	for _, p := range share.Purposes() {
		fmt.Fprintf(&b, "  %-9s %s\n", p.Purpose, p.Description)
	}
	return b.String()
}
