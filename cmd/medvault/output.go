package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
	"github.com/muesli/termenv"

	"github.com/medvault/medvault/share"
)

// styled reports whether output to stdout may use colour and borders: only
// on a terminal, and never under NO_COLOR.
func (a *app) styled() bool {
	return a.stdoutTTY() && a.getenv("NO_COLOR") == "" && a.getenv("TERM") != "dumb"
}

// printTable writes rows under headers: a lipgloss table on a colour
// terminal, tab-aligned plain text otherwise. Meaning never depends on
// colour: the same words appear either way.
func (a *app) printTable(headers []string, rows [][]string) {
	if !a.styled() {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(sanitizeRow(r), "\t"))
		}
		tw.Flush()
		return
	}
	// Styles for this command's stdout, not the process's: inside the
	// node, stdout is the caller's terminal, whose colours the node's own
	// os.Stdout (a log file, or nothing) would say nothing about. The
	// caller said it is a terminal that takes styles (styled), so plain
	// ANSI colours and bold.
	r := lipgloss.NewRenderer(a.stdout)
	if a.remote != nil {
		r.SetColorProfile(termenv.ANSI)
	}
	head := r.NewStyle().Bold(true).Padding(0, 1)
	cell := r.NewStyle().Padding(0, 1)
	t := table.New().
		Border(lipgloss.RoundedBorder()).
		BorderStyle(r.NewStyle().Foreground(lipgloss.Color("8"))).
		Headers(headers...).
		StyleFunc(func(row, _ int) lipgloss.Style {
			if row == table.HeaderRow {
				return head
			}
			return cell
		})
	for _, r := range rows {
		t.Row(sanitizeRow(r)...)
	}
	fmt.Fprintln(a.stdout, t.Render())
}

// sanitizeRow strips control characters so that record titles from imported
// files cannot move the cursor or change the terminal.
func sanitizeRow(r []string) []string {
	out := make([]string, len(r))
	for i, s := range r {
		out[i] = sanitize(s)
	}
	return out
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
}

// printJSON writes v as one JSON document. Every --json document carries
// "v": 1 and only ever gains fields.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// say writes a status line to stderr (never stdout, which carries only what
// was asked for).
func (a *app) say(format string, args ...any) {
	fmt.Fprintf(a.stderr, format+"\n", args...)
}

// localTimes formats times in the local zone for table cells. A table
// names its zone once, in the column title (title gets " (CET)"), when all
// its times share one; across a daylight-saving change, or with no times,
// each cell names its own. layout has no zone.
type localTimes struct {
	loc   *time.Location
	title string // appended to the column title
	cell  string // appended to each cell's layout
}

func (a *app) tableZone(ts ...time.Time) localTimes {
	loc := a.zone()
	zone := ""
	for i, t := range ts {
		name, _ := t.In(loc).Zone()
		if i > 0 && name != zone {
			return localTimes{loc: loc, cell: " MST"}
		}
		zone = name
	}
	if zone == "" {
		return localTimes{loc: loc, cell: " MST"}
	}
	return localTimes{loc: loc, title: " (" + zone + ")"}
}

func (z localTimes) format(t time.Time, layout string) string {
	return t.In(z.loc).Format(layout + z.cell)
}

// zone is where times are shown: the caller's zone (for a command run by
// the node, the client's, not the node's).
func (a *app) zone() *time.Location {
	if a.loc != nil {
		return a.loc
	}
	return time.Local
}

// zoneOf returns the zone a process whose TZ variable is tz ("" when
// unset) shows times in, as Go's time package chooses it: TZ unset, the
// system's zone (/etc/localtime); else the named zone, and UTC for "",
// "UTC" or a name it cannot load.
func zoneOf(tz string) *time.Location {
	if tz == "" {
		if data, err := os.ReadFile("/etc/localtime"); err == nil {
			if loc, err := time.LoadLocationFromTZData("Local", data); err == nil {
				return loc
			}
		}
		return time.UTC
	}
	if loc, err := time.LoadLocation(strings.TrimPrefix(tz, ":")); err == nil {
		return loc
	}
	return time.UTC
}

// expiries returns the grants' expiry times, for tableZone.
func expiries(gs []*share.Issued) []time.Time {
	out := make([]time.Time, len(gs))
	for i, g := range gs {
		out[i] = g.Grant.Expiry()
	}
	return out
}
