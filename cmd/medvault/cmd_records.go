package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

func categoryList() string {
	cs := record.Categories()
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// parseFilter turns the --category, --label and --since flags shared by
// list and export into a vault.Filter.
func parseFilter(category, label, since string) (vault.Filter, error) {
	var f vault.Filter
	var err error
	if category != "" {
		if f.Category, err = record.ParseCategory(category); err != nil {
			return f, usageError{err}
		}
	}
	if label != "" {
		if f.Label, err = record.ParseLabel(label); err != nil {
			return f, usageError{err}
		}
	}
	if since != "" {
		if f.Since, err = parseDate(since); err != nil {
			return f, err
		}
	}
	return f, nil
}

// parseDate accepts YYYY-MM-DD or RFC 3339.
// earliestDate bounds the dates medvault takes: nothing in a health record
// is older, and the zero time (0001-01-01) means "no date" in a record.
var earliestDate = time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC)

func parseDate(s string) (time.Time, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			return time.Time{}, usagef("invalid date %q: use YYYY-MM-DD", s)
		}
		t = t.UTC()
	}
	if t.Before(earliestDate) {
		return time.Time{}, usagef("date %q is before %s", s, earliestDate.Format("2006-01-02"))
	}
	return t, nil
}

func newAddCommand(a *app) *cobra.Command {
	var category, title, date string
	var labels []string
	cmd := &cobra.Command{
		Use:   "add FILE|- --category C [--title T] [--date D] [--label L]...",
		Short: "Encrypt a file into the vault as a new record",
		Long: `Encrypt a file (or standard input, given as -) into the vault as one record.
Content, title, category, labels and file name are all encrypted; memory use is
flat for any file size. The record appears only once fully written.

Categories: ` + categoryList() + `.
Sensitivity labels: MH, SUD, SEX, HIV, STD, GDIS, SDV.`,
		Example: `  medvault add knee-mri.pdf --category imaging --title "Knee MRI" --date 2026-03-02
  medvault add therapy-notes.txt --category notes --label MH
  pg_dump clinic | medvault add - --category other --title "clinic export"`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := record.ParseCategory(category)
			if err != nil {
				return usageError{err}
			}
			n := vault.NewRecord{Category: c, Title: title, Source: vault.SourceAdd}
			for _, l := range labels {
				lb, err := record.ParseLabel(l)
				if err != nil {
					return usageError{err}
				}
				n.Labels = append(n.Labels, lb)
			}
			if date != "" {
				if n.Date, err = parseDate(date); err != nil {
					return err
				}
			}
			var in io.Reader = a.stdin
			if args[0] == "-" && a.remote != nil && a.remote.StdinTTY {
				return withHint(usagef("cannot read a record from a terminal through the running node"), "pipe the content in (cat FILE | medvault add - ...), or give the FILE")
			}
			var size int64 // of a regular file; 0 when unknown
			if args[0] != "-" {
				if !a.fromClient(args[0]) {
					f, err := a.openArg(args[0])
					if err != nil {
						return err
					}
					defer f.Close()
					in = f
					if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
						size = st.Size()
					}
				}
				n.FileName = filepath.Base(args[0])
				if n.Title == "" {
					n.Title = n.FileName
				}
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			// A file larger than the free space fails now, not after
			// most of it was written.
			if err := v.CheckRoom(size); err != nil {
				return fmt.Errorf("add: %w", err)
			}
			n.SizeHint = size
			m, err := v.Add(in, n)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return printJSON(a.stdout, map[string]any{"v": 1, "id": m.ID.String(), "size": m.Size})
			}
			fmt.Fprintln(a.stdout, m.ID)
			a.say("Added %s (%s, %d bytes)", m.ID.String()[:8], m.Category, m.Size)
			if m.Size == 0 {
				a.say("medvault: warning: the input was empty, so the record is empty; remove it with 'medvault rm %s' if that was a mistake", m.ID.String()[:8])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&category, "category", "", "the record's `CATEGORY` (required)")
	f.StringVar(&title, "title", "", "a title (default: the file name)")
	f.StringVar(&date, "date", "", "the clinical `DATE` (YYYY-MM-DD)")
	f.StringArrayVar(&labels, "label", nil, "a sensitivity `LABEL` (repeatable)")
	f.BoolVar(&a.jsonOut, "json", false, "print JSON")
	cmd.MarkFlagRequired("category")
	return cmd
}

// openArg opens a file argument of add or import. In the node, a file
// that turns out to be under /proc or /dev once opened (a symbolic link
// changed after the client looked at it) is refused: there it would be
// the node's own (its environment, its descriptors), not the caller's.
// The client opens such files itself and sends their content (clientFile).
func (a *app) openArg(name string) (*os.File, error) {
	if f := a.preopened[name]; f != nil {
		delete(a.preopened, name)
		return f, nil
	}
	f, err := openRegular(a.abs(name))
	if err != nil || a.remote == nil {
		return f, err
	}
	if real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd()))); err == nil && procOrDev(real) {
		f.Close()
		return nil, withHint(usagef("%s leads to %s, which the node would read as its own", sanitize(name), sanitize(real)),
			"give the file's own path, or run the command again")
	}
	return f, nil
}

// openRegular opens path for reading, refusing directories and other
// non-regular files with a clear error.
func openRegular(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, usagef("%s: no such file", path)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, usagef("%s is a directory, not a file", path)
	}
	if !st.Mode().IsRegular() && st.Mode()&os.ModeNamedPipe == 0 && st.Mode()&os.ModeCharDevice == 0 {
		f.Close()
		return nil, usagef("%s is not a regular file", path)
	}
	return f, nil
}

// recordJSON is the --json form of a record's metadata (v1; only ever gains
// fields).
type recordJSON struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Category string   `json:"category"`
	Labels   []string `json:"labels"`
	// LabelsRemoved are the labels the patient removed by hand, which
	// deriving labels again leaves off.
	LabelsRemoved []string `json:"labels_removed,omitempty"`
	Date          string   `json:"date,omitempty"`
	Added         string   `json:"added"`
	Size          int64    `json:"size"`
	Source        string   `json:"source"`
	File          string   `json:"file,omitempty"`
	FHIR          *struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Version int    `json:"version"`
		Server  string `json:"server,omitempty"`
		// Also are the other servers that sent the same bytes.
		Also []string `json:"also_from,omitempty"`
	} `json:"fhir,omitempty"`
	// From, Grant and SourceID are a shared record's provenance (provider
	// side): the patient, the grant it arrived under (full ID) and its ID
	// in the patient's vault.
	From     string `json:"from,omitempty"`
	Grant    string `json:"grant,omitempty"`
	SourceID string `json:"source_id,omitempty"`
}

func toJSON(m *vault.Meta) recordJSON {
	r := recordJSON{ID: m.ID.String(), Title: m.Title, Category: string(m.Category), Labels: []string{},
		Added: m.Added.UTC().Format(time.RFC3339), Size: m.Size, Source: string(m.Source), File: m.FileName}
	for _, l := range m.Labels {
		r.Labels = append(r.Labels, string(l))
	}
	for _, l := range m.HandRemoved {
		r.LabelsRemoved = append(r.LabelsRemoved, string(l))
	}
	if !m.Date.IsZero() {
		r.Date = m.Date.UTC().Format("2006-01-02")
	}
	if m.FHIR != nil {
		servers := m.FHIR.Servers()
		r.FHIR = &struct {
			Type    string `json:"type"`
			ID      string `json:"id"`
			Version int    `json:"version"`
			Server  string `json:"server,omitempty"`
			// Also are the other servers that sent the same bytes.
			Also []string `json:"also_from,omitempty"`
		}{m.FHIR.Type, m.FHIR.ID, m.FHIR.Version, servers[0], servers[1:]}
	}
	if !m.From.IsZero() {
		r.From = m.From.String()
		r.Grant = grantText(m)
		if m.SourceID != (record.ID{}) {
			r.SourceID = m.SourceID.String()
		}
	}
	return r
}

// grantText is the full ID of the grant a shared record arrived under, ""
// if none is kept.
func grantText(m *vault.Meta) string {
	if len(m.Grant) != len(share.GrantID{}) {
		return ""
	}
	return share.GrantID(m.Grant).String()
}

func labelsText(m *vault.Meta) string {
	if len(m.Labels) == 0 {
		return "-"
	}
	s := make([]string, len(m.Labels))
	for i, l := range m.Labels {
		s[i] = string(l)
	}
	return strings.Join(s, ",")
}

func dateText(m *vault.Meta) string {
	if m.Date.IsZero() {
		return "-"
	}
	return m.Date.UTC().Format("2006-01-02")
}

func newListCommand(a *app) *cobra.Command {
	var category, since, label, from string
	cmd := &cobra.Command{
		Use:   "list [--category C] [--label L] [--since D] [--from PATIENT] [--json]",
		Short: "List records",
		Long:  "List the records in the vault, oldest first. Listing reads metadata only.",
		Example: `  medvault list
  medvault list --category labs --since 2025-01-01
  medvault list --from ada          (a provider: records a patient shared)
  medvault list --json | jq -r '.records[].id'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilter(category, label, since)
			if err != nil {
				return err
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			if err := fromFilter(v, from, &f); err != nil {
				return err
			}
			ms, err := v.List(f)
			if err != nil {
				return err
			}
			return a.printRecords(ms)
		},
	}
	f := cmd.Flags()
	f.StringVar(&category, "category", "", "only this `CATEGORY`")
	f.StringVar(&label, "label", "", "only records carrying this sensitivity `LABEL`")
	f.StringVar(&since, "since", "", "only records dated on or after `DATE` (undated ones: added on or after it)")
	f.StringVar(&from, "from", "", "only records shared by this `PATIENT` (contact alias or ID)")
	f.BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

// fromFilter narrows f to the records the patient from (a contact alias,
// or a patient's ID, a contact or not) shared; an empty from leaves f as it
// is.
func fromFilter(v *vault.Vault, from string, f *vault.Filter) error {
	if from == "" {
		return nil
	}
	id, err := peerID(v, from)
	if err != nil {
		return withHint(err, "for a patient who is no longer a contact, give their ID ('medvault show ID' names it)")
	}
	f.From = (*[32]byte)(&id)
	return nil
}

// peerID resolves a contact's alias, or else a medvault ID: a peer since
// removed from the contacts, or re-keyed, keeps its records and grants,
// found by ID. The error is the contact lookup's.
func peerID(v *vault.Vault, s string) (identity.ID, error) {
	_, card, err := share.ResolveContact(v, s)
	if err == nil {
		return card.ID(), nil
	}
	if id, perr := identity.ParseID(s); perr == nil {
		return id, nil
	}
	return identity.ID{}, err
}

func (a *app) printRecords(ms []*vault.Meta) error {
	if a.jsonOut {
		out := struct {
			V       int          `json:"v"`
			Records []recordJSON `json:"records"`
		}{V: 1, Records: []recordJSON{}}
		for _, m := range ms {
			out.Records = append(out.Records, toJSON(m))
		}
		return printJSON(a.stdout, out)
	}
	if len(ms) == 0 {
		a.say("No records.")
		return nil
	}
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		rows = append(rows, []string{m.ID.String()[:12], dateText(m), string(m.Category), labelsText(m), truncate(m.Title, 60), vault.FormatSize(m.Size)})
	}
	a.printTable([]string{"ID", "DATE", "CATEGORY", "LABELS", "TITLE", "SIZE"}, rows)
	return nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// count says how many of a noun: "1 record", "3 records". plural is the
// plural form when adding "s" is wrong.
func count(n int, noun string, plural ...string) string {
	if n == 1 {
		return "1 " + noun
	}
	if len(plural) > 0 {
		return fmt.Sprintf("%d %s", n, plural[0])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func newShowCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show ID [--json]",
		Short: "Show a record's metadata",
		Long: `Show a record's metadata. ID may be abbreviated to its first 6 or more hex
digits. For a record a patient shared with you, it names the patient (and
their contact alias), the grant it arrived under and, with --json, the
record's ID in the patient's vault (source_id).`,
		Example: `  medvault show 3f9a2c
  medvault show 3f9a2c --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			id, err := resolve(v, args[0])
			if err != nil {
				return err
			}
			m, err := v.Show(id)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return printJSON(a.stdout, struct {
					V int `json:"v"`
					recordJSON
				}{1, toJSON(m)})
			}
			w := a.stdout
			fmt.Fprintf(w, "ID:        %s\n", m.ID)
			fmt.Fprintf(w, "Title:     %s\n", sanitize(m.Title))
			fmt.Fprintf(w, "Category:  %s\n", m.Category)
			fmt.Fprintf(w, "Labels:    %s\n", labelsText(m))
			if len(m.HandRemoved) > 0 {
				fmt.Fprintf(w, "Removed:   %s (by hand: labels derived again leave them off)\n", labelsText(&vault.Meta{Labels: m.HandRemoved}))
			}
			fmt.Fprintf(w, "Date:      %s\n", dateText(m))
			fmt.Fprintf(w, "Added:     %s\n", m.Added.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "Size:      %s (%d bytes)\n", vault.FormatSize(m.Size), m.Size)
			fmt.Fprintf(w, "Source:    %s\n", m.Source)
			if m.FileName != "" {
				fmt.Fprintf(w, "File:      %s\n", sanitize(m.FileName))
			}
			if m.FHIR != nil {
				ref := sanitize(m.FHIR.Type) + "/" + sanitize(m.FHIR.ID)
				if m.FHIR.ID == "" {
					ref = sanitize(m.FHIR.Type) + " (no id)"
				}
				fmt.Fprintf(w, "FHIR:      %s (version %d)\n", ref, m.FHIR.Version)
				if srv := slices.DeleteFunc(m.FHIR.Servers(), func(s string) bool { return s == "" }); len(srv) > 0 {
					// Two servers that sent the same bytes share one record.
					fmt.Fprintf(w, "Server:    %s\n", sanitize(strings.Join(srv, ", ")))
				}
			}
			if !m.From.IsZero() {
				who := m.From.String()
				if book, err := share.LoadBook(v); err == nil {
					if al, _, ok := book.Find(m.From); ok {
						who += " (" + string(al) + ")"
					}
				}
				fmt.Fprintf(w, "From:      %s\n", who)
				if g := grantText(m); g != "" {
					fmt.Fprintf(w, "Grant:     %s\n", g)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

func resolve(v *vault.Vault, s string) (record.ID, error) {
	id, err := v.Resolve(s)
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		return id, usageError{err}
	}
	return id, err
}

func newGetCommand(a *app) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get ID [-o FILE]",
		Short: "Decrypt a record's content",
		Long: `Decrypt a record's content to standard output or to a new file. The read is
written to the ledger before any content is decrypted, so a read that then
fails or is refused (binary content for a terminal) is in the ledger too:
the entry says decryption began, not that the content was shown. Binary
content is not printed to a terminal; give -o FILE. An existing file is
never overwritten, and after a failure no partial file is left behind.`,
		Example: `  medvault get 3f9a2c -o knee-mri.pdf
  medvault get 3f9a2c | less`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			id, err := resolve(v, args[0])
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				w := io.Writer(a.stdout)
				var g *ttyGuard
				if a.stdoutTTY() {
					g = &ttyGuard{w: a.stdout}
					w = g
				}
				if _, err := v.Get(id, w); err != nil {
					return err
				}
				if g != nil {
					return g.Close()
				}
				return nil
			}
			return writeNewFile(a.context(), v.CreatePartial, a.abs(out), func(w io.Writer) error {
				_, err := v.Get(id, w)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to `FILE` (must not exist)")
	return cmd
}

// writeNewFile writes through fill into a temporary file beside path and
// renames it into place only on success, so failures leave nothing behind.
// Once ctx is cancelled (the client of a command run by the node went
// away) every write fails, and so does the whole: nothing is put in place
// for a command nobody is waiting for any more.
func writeNewFile(ctx context.Context, partial func(dir string) (*os.File, error), path string, fill func(io.Writer) error) error {
	if _, err := os.Lstat(path); err == nil {
		return withHint(usagef("%s already exists", path), "medvault never overwrites a file; choose another name")
	}
	if err := ctx.Err(); err != nil {
		return errClientGone
	}
	userFill := fill
	fill = func(w io.Writer) error {
		if err := userFill(ctxWriter{ctx, w}); err != nil {
			return err
		}
		// All written, but the file is not in place yet: a client that
		// went away at the last write still leaves nothing.
		if ctx.Err() != nil {
			return errClientGone
		}
		return nil
	}
	if done, err := writeUnnamed(path, fill); done {
		return err
	}
	// A named temporary file, which the vault notes (partial) so that the
	// next open removes it if this process is killed before it is done.
	if partial == nil {
		partial = func(dir string) (*os.File, error) { return os.CreateTemp(dir, vault.PartialPrefix+"*") }
	}
	f, err := partial(filepath.Dir(path))
	if err != nil {
		// Name the file asked for, not the temporary one.
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	// Errors name the file asked for, not the temporary one.
	named := func(err error) error {
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Path == tmp {
			pe.Path = path
		}
		return err
	}
	if err := fill(f); err != nil {
		return named(err)
	}
	if err := f.Close(); err != nil {
		return named(err)
	}
	if err := os.Link(tmp, path); err != nil { // fails if path appeared meanwhile
		return err
	}
	os.Remove(tmp)
	ok = true
	return nil
}

// errClientGone is what a write fails with once the client of a command
// run by the node went away (see app.context).
var errClientGone = errors.New("the command's client went away: its output was discarded")

// ctxWriter writes to w until ctx is cancelled, and fails from then on.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, errClientGone
	}
	return c.w.Write(p)
}

// context is cancelled when the client of a command run by the node goes
// away (killed, interrupted, or cut by a stopping node); never for a
// command run in its own process, which dies with its caller.
func (a *app) context() context.Context {
	if a.remote != nil {
		return a.remote.Context()
	}
	return context.Background()
}

// ttyGuard refuses to print binary content to a terminal. It holds back the
// first 8 KiB and decides from them; after that it checks every write, so
// a record that starts as text and turns binary (or carries escape
// sequences further on) is stopped there too. What it prints has control
// characters removed (sanitizeText).
type ttyGuard struct {
	w       io.Writer
	held    []byte // the first 8 KiB until decided; then an incomplete rune
	decided bool
	shown   int64 // bytes of content printed
	err     error // set once the content was found binary
}

var errBinary = withHint(usagef("the record is binary; not printing it to a terminal"), "give -o FILE, or pipe the output")

func (g *ttyGuard) Write(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	g.held = append(g.held, p...)
	if !g.decided && len(g.held) < 8192 {
		return len(p), nil
	}
	g.decided = true
	if err := g.flush(false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush prints what is held back, but for an incomplete UTF-8 sequence at
// its end unless final (the next write may complete it).
func (g *ttyGuard) flush(final bool) error {
	keep := 0
	if !final {
		keep = partialRune(g.held)
	}
	text := g.held[:len(g.held)-keep]
	if bytes.IndexByte(text, 0) >= 0 || !utf8.Valid(text) {
		g.err = errBinary
		if g.shown > 0 {
			g.err = withHint(usagef("the record turned out binary after %s of text; stopped printing it to the terminal", vault.FormatSize(g.shown)),
				"give -o FILE, or pipe the output")
		}
		return g.err
	}
	if _, err := io.WriteString(g.w, sanitizeText(string(text))); err != nil {
		return err
	}
	g.shown += int64(len(text))
	g.held = append(g.held[:0], g.held[len(text):]...)
	return nil
}

// Close prints what is held back.
func (g *ttyGuard) Close() error {
	if g.err != nil {
		return g.err
	}
	g.decided = true
	return g.flush(true)
}

// partialRune returns the length of an incomplete UTF-8 sequence at the end
// of b (0 if b ends with a whole rune or with bytes that start none).
func partialRune(b []byte) int {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return 0
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}

// sanitizeText drops escape sequences' introducer from text shown on a
// terminal, keeping newlines and tabs.
func sanitizeText(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r == '\r' {
			return r
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			// C0 and C1 controls: ESC and CSI start escape sequences.
			return -1
		}
		return r
	}, s)
}

func newRmCommand(a *app) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "rm ID [--yes]",
		Short: "Delete a record for good (crypto-shred)",
		Long: `Delete a record: its encrypted content and metadata are removed and the vault
file is compacted, so no copy stays in its free pages. The deletion is a ledger
entry. Copies already shared with providers are not affected.

On a terminal, rm asks for confirmation; without one, give --yes.`,
		Example: `  medvault rm 3f9a2c
  medvault rm 3f9a2c --yes`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			id, err := resolve(v, args[0])
			if err != nil {
				return err
			}
			m, err := v.Show(id)
			if err != nil {
				return err
			}
			if !yes && !a.removeConfirmed {
				if a.remote != nil {
					return withHint(usagef("refusing to delete without confirmation"), "the running node cannot ask you: give --yes")
				}
				if !a.isTTY(a.stdin) {
					return withHint(usagef("refusing to delete without confirmation"), "give --yes to delete without a terminal")
				}
				fmt.Fprintf(a.stderr, "Delete %q (%s) for good? Type yes: ", sanitize(m.Title), m.ID.String()[:12])
				line, _ := readLine(a.stdin)
				if strings.TrimSpace(line) != "yes" {
					return errCancelled
				}
			}
			err = v.Remove(id)
			deferred := errors.Is(err, vault.ErrCompactDeferred)
			if err != nil && !deferred {
				return err
			}
			if a.jsonOut {
				return printJSON(a.stdout, map[string]any{"v": 1, "id": m.ID.String(), "deleted": true, "compaction_deferred": deferred})
			}
			a.say("Deleted %s.", m.ID.String()[:12])
			if deferred {
				a.say("medvault: note: another command is reading the vault, so its old bytes leave the vault file when it is done")
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 1024 {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			b = append(b, one[0])
		}
		if err != nil {
			return string(b), err
		}
	}
	return string(b), nil
}

// flagsFirst returns label's command line, args being what followed
// "label", with the flags (and their values) given after the record ID
// moved before it, quoted for a shell: the command to run instead.
func flagsFirst(cmd *cobra.Command, args []string) string {
	var flags, rest []string
	for i := 1; i < len(args); i++ {
		s := args[i]
		if s == "--" || !strings.HasPrefix(s, "--") {
			rest = append(rest, s)
			continue
		}
		flags = append(flags, s)
		name, _, hasValue := strings.Cut(strings.TrimPrefix(s, "--"), "=")
		if f := cmd.Flags().Lookup(name); f != nil && !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	words := slices.Concat([]string{"medvault", "label"}, flags, args[:1], rest)
	for i, w := range words {
		words[i] = shellQuote(sanitize(w))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+=./:,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newLabelCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "label ID +L|-L...",
		Short: "Add or remove sensitivity labels by hand",
		Long: `Correct a record's sensitivity labels: +L adds label L, -L removes it.
Labels: MH (mental health), SUD (substance use), SEX (reproductive health),
HIV, STD, GDIS (genetics), SDV (violence). A grant never includes a labelled
record unless it names the label. For a FHIR resource imported in several
versions, the change applies to every version. A label added also reaches the
imported records that reference the resource (a claim or a prescription for a
visit labelled MH), as it does at import. Each change is a ledger entry.
Removing a label the record does not have keeps it off the record when labels
are derived again (after an update of the code lists); a command that changes
nothing is not logged.`,
		Example: `  medvault label 3f9a2c +MH
  medvault label 3f9a2c -SUD +MH
  medvault --passphrase-file pass.txt label 3f9a2c -SUD   (flags go before the ID)`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("give a record ID and at least one +LABEL or -LABEL")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var add, rm []record.Label
			for _, s := range args[1:] {
				if s == "--" {
					continue
				}
				if strings.HasPrefix(s, "--") {
					return usagef("%s: flags go before the record ID, as in: %s", s, flagsFirst(cmd, args))
				}
				if len(s) < 2 || (s[0] != '+' && s[0] != '-') {
					return usagef("%q: write +LABEL to add or -LABEL to remove", s)
				}
				l, err := record.ParseLabel(s[1:])
				if err != nil {
					return usageError{err}
				}
				if slices.Contains(add, l) && s[0] == '-' || slices.Contains(rm, l) && s[0] == '+' {
					return usagef("%s is both added and removed: give +%s or -%s", l, l, l)
				}
				switch {
				case slices.Contains(add, l) || slices.Contains(rm, l):
				case s[0] == '+':
					add = append(add, l)
				default:
					rm = append(rm, l)
				}
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			id, err := resolve(v, args[0])
			if err != nil {
				return err
			}
			// Removing a label the record lacks keeps it off the record
			// when labels are derived again (the patient says "this is
			// not SUD" before a list change could say otherwise): said,
			// so that "Removed: SUD" in show is no surprise. One already
			// kept off changes nothing, and a command that changes nothing
			// is not logged.
			m, err := v.Show(id)
			if err != nil {
				return err
			}
			add = slices.DeleteFunc(add, func(l record.Label) bool {
				if m.HasLabel(l) {
					a.say("%s is already set on this record.", l)
					return true
				}
				return false
			})
			var keptOff []record.Label
			rm = slices.DeleteFunc(rm, func(l record.Label) bool {
				switch {
				case m.HasLabel(l):
				case m.FHIR == nil:
					// Nothing derives its labels: there is nothing to keep off.
					a.say("%s is not set on this record: nothing to remove.", l)
					return true
				case slices.Contains(m.HandRemoved, l):
					a.say("%s is not set on this record and is already kept off it: nothing to remove.", l)
					return true
				default:
					keptOff = append(keptOff, l)
				}
				return false
			})
			var others vault.Relabelled
			if len(add) == 0 && len(rm) == 0 {
				a.say("Nothing changed.")
			} else if m, others, err = v.SetLabels(id, add, rm); err != nil {
				return err
			}
			for _, l := range keptOff {
				a.say("%s was not set on this record; it is now kept off it when labels are derived again ('medvault label ID +%s' ends that).", l, l)
			}
			if others.Versions > 0 {
				a.say("Also changed on %s of this resource.", count(others.Versions, "other version"))
			}
			if others.SameID > 0 {
				a.say("Also added to %s with this type and id from another server (labels spread by type and id; removals do not).",
					count(others.SameID, "record"))
			}
			if others.Referrers > 0 {
				a.say("Also added to %s that %s this resource (as an import would): see 'medvault log --action label'.",
					count(others.Referrers, "record"), map[bool]string{true: "references", false: "reference"}[others.Referrers == 1])
			}
			if others.Overrode > 0 {
				a.say("Of those, %s had it removed by hand before: it is back, since a sensitive record stays out unless you name it; 'medvault label ID -LABEL' removes it again.",
					count(others.Overrode, "record"))
			}
			if a.jsonOut {
				return printJSON(a.stdout, struct {
					V int `json:"v"`
					recordJSON
				}{1, toJSON(m)})
			}
			fmt.Fprintf(a.stdout, "%s %s\n", m.ID.String()[:12], labelsText(m))
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON (flags go before the ID)")
	return cmd
}
