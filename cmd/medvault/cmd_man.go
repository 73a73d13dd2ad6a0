package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newManCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write a manual page (section 1) for every command into DIR",
		Long: `Write a manual page (man section 1) for medvault and for each of its commands
into DIR, created if missing: medvault.1, medvault-grant.1, medvault-contacts-add.1
and so on. The pages are made from the same text as --help, plus the exit
codes, environment variables and files on medvault(1). Pages already in DIR
under those names are replaced; nothing else there is touched.

The pages are documentation, not secrets: they are written readable by all
(0644), as man expects, so DIR can be a system manual directory.`,
		Example: `  medvault man ~/.local/share/man/man1 && man medvault-grant
  sudo medvault man /usr/local/share/man/man1`,
		Args: exactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveFilterDirs
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := writeManPages(cmd.Root(), args[0], manDate())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Wrote %d manual pages to %s\n", n, sanitize(args[0]))
			return nil
		},
	}
}

// manDate is the date the pages carry: SOURCE_DATE_EPOCH if set (for
// reproducible packaging), else the time of the commit this binary was
// built from, else none.
func manDate() string {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			return time.Unix(sec, 0).UTC().Format(time.DateOnly)
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return t.UTC().Format(time.DateOnly)
				}
			}
		}
	}
	return ""
}

// manCommands lists root and every command below it that a user can run,
// in the order of a depth-first walk.
func manCommands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && c.Name() != "help" {
			out = append(out, manCommands(c)...)
		}
	}
	return out
}

// manName is a command's page name: its path joined by dashes.
func manName(c *cobra.Command) string { return strings.ReplaceAll(c.CommandPath(), " ", "-") }

// writeManPages writes one page per command into dir, each through a
// temporary file renamed into place, and returns how many it wrote.
func writeManPages(root *cobra.Command, dir, date string) (int, error) {
	if dir == "" {
		// os.MkdirAll("") fails as a system error (exit 1); an empty
		// argument is a script's unset variable.
		return 0, withHint(usagef("no directory given"), "give a directory for the pages, e.g. ~/.local/share/man/man1")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return 0, withHint(usagef("%s is not a directory", sanitize(dir)), "give a directory for the pages, e.g. ~/.local/share/man/man1")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	root.InitDefaultHelpFlag()
	cmds := manCommands(root)
	for _, c := range cmds {
		c.InitDefaultHelpFlag()
		path := filepath.Join(dir, manName(c)+".1")
		if err := writeFileAtomic(path, 0o644, func(w io.Writer) error { return writeManPage(w, c, date) }); err != nil {
			return 0, err
		}
	}
	return len(cmds), nil
}

// writeFileAtomic writes path through a temporary file in its directory,
// renamed over path only once complete.
func writeFileAtomic(path string, perm fs.FileMode, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".medvault-man-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// writeManPage renders one command's page in man(7) roff.
func writeManPage(w io.Writer, c *cobra.Command, date string) error {
	var b strings.Builder
	name := manName(c)
	fmt.Fprintf(&b, ".TH %s 1 %s %s %s\n", roffQuote(strings.ToUpper(name)), roffQuote(date),
		roffQuote("medvault "+version()), roffQuote("medvault manual"))
	// No hyphenation and a ragged right edge: option names and IDs stay
	// whole, so they can be searched for and copied.
	b.WriteString(".nh\n.ad l\n")
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", roffEscape(name), roffEscape(c.Short))
	b.WriteString(".SH SYNOPSIS\n")
	fmt.Fprintf(&b, ".B %s\n", roffEscape(c.CommandPath()))
	if rest := strings.TrimSpace(strings.TrimPrefix(c.UseLine(), c.CommandPath())); rest != "" {
		b.WriteString(roffLine(rest) + "\n")
	}
	b.WriteString(".SH DESCRIPTION\n")
	desc := c.Long
	if desc == "" {
		desc = c.Short + "."
	}
	roffText(&b, desc)
	if subs := manSubcommands(c); len(subs) > 0 {
		b.WriteString(".SH COMMANDS\n")
		for _, s := range subs {
			fmt.Fprintf(&b, ".TP\n\\fB%s\\fR(1)\n%s\n", roffEscape(manName(s)), roffLine(s.Short))
		}
	}
	if fl := c.NonInheritedFlags(); fl.HasAvailableFlags() {
		b.WriteString(".SH OPTIONS\n")
		roffFlags(&b, fl)
	}
	if fl := c.InheritedFlags(); fl.HasAvailableFlags() {
		b.WriteString(".SH GLOBAL OPTIONS\n")
		roffFlags(&b, fl)
	}
	if c.Example != "" {
		b.WriteString(".SH EXAMPLES\n.nf\n.RS 4\n")
		for _, l := range strings.Split(strings.Trim(c.Example, "\n"), "\n") {
			b.WriteString(roffLine(strings.TrimPrefix(l, "  ")) + "\n")
		}
		b.WriteString(".RE\n.fi\n")
	}
	if !c.HasParent() {
		b.WriteString(".SH EXIT STATUS\n")
		roffText(&b, exitCodesHelp)
		b.WriteString(".SH ENVIRONMENT\n")
		for _, e := range manEnvironment {
			fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", e[0], roffLine(e[1]))
		}
		b.WriteString(".SH FILES\n")
		roffText(&b, manFiles)
	} else {
		b.WriteString(".SH EXIT STATUS\nSee \\fBmedvault\\fR(1).\n")
	}
	b.WriteString(".SH SEE ALSO\n")
	var also []*cobra.Command
	if p := c.Parent(); p != nil {
		also = append(also, p)
		for _, s := range manSubcommands(p) {
			if s != c {
				also = append(also, s)
			}
		}
	}
	for _, s := range manSubcommands(c) {
		also = append(also, s)
	}
	refs := make([]string, len(also))
	for i, s := range also {
		refs[i] = "\\fB" + roffEscape(manName(s)) + "\\fR(1)"
	}
	b.WriteString(strings.Join(refs, ",\n") + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func manSubcommands(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() && s.Name() != "help" {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(x, y *cobra.Command) int { return strings.Compare(x.Name(), y.Name()) })
	return out
}

var manEnvironment = [][2]string{
	{"MEDVAULT_HOME", "The data directory. Default: $XDG_DATA_HOME/medvault, else ~/.local/share/medvault."},
	{"MEDVAULT_PASSPHRASE_FILE", "A file whose first line is the passphrase, for scripts (after --passphrase-file, before --passphrase-fd and the prompt)."},
	{"MEDVAULT_MAX_GRANT_LIFETIME", "The longest grant allowed, e.g. 7d (default 90d, at most 3650d)."},
	{"MEDVAULT_BOOTSTRAP", "DHT bootstrap nodes (multiaddrs with /p2p/ID, separated by spaces or commas) for serve and for commands run without a node."},
	{"NO_COLOR", "When set, no colour in any output."},
	{"SOURCE_DATE_EPOCH", "The date medvault man writes into the pages, for reproducible builds."},
}

const manFiles = `The data directory holds identity.age (your Ed25519 and age X25519 keys in one
passphrase-encrypted file), vault.db (the bbolt file: encrypted records and
the ledger), vault.lock, node.ports (the ports of the node's last run) and,
while medvault serve runs, node.sock (0600), through which other commands run
inside the node. Directories are created 0700 and files 0600.`

// roffFlags lists flags as tagged paragraphs.
func roffFlags(b *strings.Builder, fl *pflag.FlagSet) {
	fl.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Deprecated != "" {
			return
		}
		varname, usage := pflag.UnquoteUsage(f)
		tag := "\\fB\\-\\-" + roffEscape(f.Name) + "\\fR"
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			tag = "\\fB\\-" + roffEscape(f.Shorthand) + "\\fR, " + tag
		}
		if varname != "" && f.NoOptDefVal == "" {
			tag += " \\fI" + roffEscape(varname) + "\\fR"
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0" && f.DefValue != "-1" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(b, ".TP\n%s\n%s\n", tag, roffLine(usage))
	})
}

// roffText renders help text written for a terminal: paragraphs separated
// by blank lines are filled; indented lines (lists, tables) are kept as
// they are.
func roffText(b *strings.Builder, text string) {
	lines := strings.Split(strings.Trim(text, "\n"), "\n")
	inPara, inPre := false, false
	for _, l := range lines {
		switch {
		case strings.TrimSpace(l) == "":
			if inPre {
				b.WriteString(".fi\n")
				inPre = false
			}
			inPara = false
		case strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t"):
			if !inPre {
				if !inPara {
					b.WriteString(".PP\n")
				}
				b.WriteString(".nf\n")
				inPre = true
			}
			b.WriteString(roffLine(l) + "\n")
		default:
			if inPre {
				b.WriteString(".fi\n")
				inPre = false
			}
			if !inPara {
				b.WriteString(".PP\n")
				inPara = true
			}
			b.WriteString(roffLine(l) + "\n")
		}
	}
	if inPre {
		b.WriteString(".fi\n")
	}
}

// roffEscape escapes text for roff: backslashes, and hyphens as minus
// signs (so options can be searched for and copied).
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// roffLine escapes one line of text, guarding a leading dot or apostrophe
// that roff would read as a request.
func roffLine(s string) string {
	s = roffEscape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

func roffQuote(s string) string {
	return `"` + strings.ReplaceAll(roffEscape(s), `"`, `\(dq`) + `"`
}
