package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
)

// minGoodPassphrase is the length below which init warns: scrypt at work
// factor 18 slows guessing, but a short passphrase falls to a search of
// days on one GPU.
const minGoodPassphrase = 12

func newInitCommand(a *app) *cobra.Command {
	var name, role string
	cmd := &cobra.Command{
		Use:   "init [--name NAME] [--role patient|provider]",
		Short: "Create your identity and an empty vault",
		Long: `Create an identity (an Ed25519 signing key, whose public half is your medvault
ID, and an age X25519 encryption key) in a passphrase-encrypted file, and an
empty vault beside it. Refuses to overwrite an existing identity.`,
		Example: `  medvault init --name "Ada Lovelace"
  medvault init --name "Dr. Grace Hopper" --role provider --passphrase-file pass.txt`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := identity.ParseRole(role)
			if err != nil {
				return usageError{err}
			}
			dir, err := a.dataDir()
			if err != nil {
				return err
			}
			idPath := filepath.Join(dir, vault.IdentityFile)
			if _, err := os.Stat(idPath); err == nil {
				if !vault.Exists(dir) {
					return finishInit(a, cmd, dir, name, r)
				}
				return withHint(fmt.Errorf("%w in %s", identity.ErrExists, dir),
					"medvault never overwrites an identity; set MEDVAULT_HOME to another directory for a second one")
			}
			if vault.Exists(dir) {
				return withHint(fmt.Errorf("%w: %s", vault.ErrExists, dir), "move the old vault away first")
			}
			id, err := identity.Generate(name, r)
			if err != nil {
				return usageError{err}
			}
			pass, err := a.passphrase("New passphrase: ", true)
			if err != nil {
				return err
			}
			defer clear(pass)
			if n := utf8.RuneCount(pass); n < minGoodPassphrase {
				// Only a warning: the passphrase is the user's to choose.
				fmt.Fprintf(a.stderr, "medvault: warning: a %d-character passphrase can be guessed by anyone who copies identity.age; four or more random words are far safer\n", n)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("create data directory: %w", err)
			}
			if err := os.Chmod(dir, 0o700); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
			if wf := a.workFactor(); wf < identity.DefaultWorkFactor {
				fmt.Fprintf(a.stderr, "medvault: warning: %s=%d: this identity's passphrase is %d times cheaper to guess than the default; for tests only\n",
					insecureWorkFactorEnv, wf, 1<<(identity.DefaultWorkFactor-wf))
			}
			if err := id.Save(idPath, pass, a.workFactor()); err != nil {
				if errors.Is(err, identity.ErrExists) {
					return withHint(err, "another 'medvault init' ran at the same time")
				}
				return err
			}
			if err := vault.Create(dir, id, vault.Options{}); err != nil {
				os.Remove(idPath)
				return err
			}
			a.id = id
			a.say("Created a %s identity and vault in %s", r, dir)
			a.say("Keep your passphrase safe: without it nobody, including you, can read this vault.")
			return printIdentity(a, id)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "your display `NAME`, shown to people you share with")
	cmd.Flags().StringVar(&role, "role", "patient", "patient or provider")
	return cmd
}

// finishInit creates the vault for an identity that has none: an earlier
// init stopped between writing the identity and the vault (killed, or the
// disk filled). The identity is never replaced, so without this the
// directory could be used neither by 'init' nor by any other command.
func finishInit(a *app, cmd *cobra.Command, dir, name string, role identity.Role) error {
	id, _, err := a.unlock()
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("name") && name != id.Name() || cmd.Flags().Changed("role") && role != id.Role() {
		fmt.Fprintf(a.stderr, "medvault: warning: --name and --role are ignored: the identity in %s keeps the name and role it was created with\n", dir)
	}
	if err := vault.Create(dir, id, vault.Options{}); err != nil {
		return err
	}
	a.say("Found an identity but no vault in %s (an earlier 'medvault init' stopped before creating it): created an empty vault for it", dir)
	return printIdentity(a, id)
}

func newIDCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "id [--json]",
		Short: "Print your medvault ID and safety number",
		Long: `Print your medvault ID (your libp2p peer ID) and a safety number: read the
safety number aloud to someone who adds you as a contact, so both of you know
you hold the same key.`,
		Example: `  medvault id
  medvault id --json | jq -r .id`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, _, err := a.unlock()
			if err != nil {
				return err
			}
			return printIdentity(a, id)
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

func printIdentity(a *app, id *identity.Identity) error {
	pub := id.ID()
	rcpt, err := share.ParseAgeRecipient(id.Recipient().String())
	if err != nil {
		return err
	}
	card, err := share.NewCard(id, share.CardParams{Recipient: rcpt, Name: id.Name(), Role: id.Role(), Hints: a.hints("card")}, time.Now())
	if err != nil {
		return err
	}
	if a.jsonOut {
		return printJSON(a.stdout, map[string]any{
			"v": 1, "id": pub.String(), "safety_number": pub.SafetyNumber(),
			"name": id.Name(), "role": id.Role(), "age_recipient": id.Recipient().String(), "card": card.Text(),
		})
	}
	fmt.Fprintf(a.stdout, "ID:             %s\n", pub)
	fmt.Fprintf(a.stdout, "Safety number:  %s\n", pub.SafetyNumber())
	if id.Name() != "" {
		fmt.Fprintf(a.stdout, "Name:           %s\n", sanitize(id.Name()))
	}
	fmt.Fprintf(a.stdout, "Role:           %s\n", id.Role())
	fmt.Fprintf(a.stdout, "Card:           %s\n", card.Text())
	return nil
}
