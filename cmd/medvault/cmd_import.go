package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/record"
)

func newImportCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE|-...",
		Short: "Import FHIR R4 exports (Bundle JSON or NDJSON)",
		Long: `Import FHIR R4 files from a hospital portal or a bulk-data export: Bundles of
any type, NDJSON (one resource per line), or a single resource. Each resource
becomes one record holding its original bytes exactly, with its category and
sensitivity labels derived from its type and clinical codes.

Each file is imported whole or not at all. Importing the same data again adds
nothing; a changed resource with the same id is kept as a new version beside
the old one.`,
		Example: `  medvault import ~/Downloads/patient-export.json
  medvault import bulk/*.ndjson --json
  curl -s "$EXPORT_URL" | medvault import -`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("give at least one FILE to import (- for standard input)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			// An import's working set (batches of resources being
			// encrypted, bbolt's dirty pages) is larger than the low
			// memory target set after unlock: it would only make the GC
			// thrash. The target comes back when the last import ends,
			// for the node's later commands (add, fetch).
			defer liftMemoryLimit()()
			// A vault from before the reference index gets it first:
			// every earlier record is read once, which takes a while.
			noticed, drawn := false, false
			_, err = v.IndexReferences(func(done, total int) {
				if a.stderrTTY() && a.remote == nil {
					drawn = true
					fmt.Fprintf(a.stderr, "\r\033[Kindexing the references of earlier imports (once) %s %d/%d records", progressBar(int64(done), int64(total), 30), done, total)
					return
				}
				if !noticed {
					noticed = true
					a.say("indexing the references of %s imported earlier (once, so that labels cross imports)", count(total, "record", "records"))
				}
			})
			if drawn {
				fmt.Fprint(a.stderr, "\r\033[K")
			}
			if err != nil {
				return err
			}
			var all []*vault.ImportStats
			// stopped says, when file i failed, what the files before it
			// and after it became: each file is imported whole or not at
			// all, and the import stops at the first that fails.
			// With --json, the summary of what was committed is printed
			// even when a file fails: a script must know what is stored.
			stopped := func(i int, err error) {
				if a.jsonOut {
					a.printImportJSON(all, &failedImport{args[i], err.Error()}, args[i+1:])
				}
				if len(all) > 0 {
					a.say("%s imported; %s was not imported at all", count(len(all), "earlier file was", "earlier files were"), args[i])
				}
				if rest := args[i+1:]; len(rest) > 0 {
					a.say("not tried: %s", strings.Join(rest, ", "))
				}
			}
			if n := slices.Index(args, "-"); n >= 0 {
				if slices.Index(args[n+1:], "-") >= 0 {
					return usagef("- (standard input) given twice")
				}
				if a.isTTY(a.stdin) {
					return withHint(usagef("- reads FHIR from standard input, which is a terminal"), "pipe a file into it: medvault import - < export.json")
				}
			}
			for i, name := range args {
				var r io.Reader = a.stdin
				label := "standard input"
				progress := func(int, int64) {}
				var f *os.File
				if a.fromClient(name) {
					label = name
				} else if name != "-" {
					if f, err = a.openArg(name); err != nil {
						stopped(i, err)
						return err
					}
					r, label = f, name
					if st, err := f.Stat(); err == nil && a.stderrTTY() && a.remote == nil {
						progress = func(n int, off int64) {
							if off < 0 {
								off = st.Size()
							}
							fmt.Fprintf(a.stderr, "\r\033[Kimporting %s %s %d resources", filepath.Base(name), progressBar(off, st.Size(), 30), n)
						}
					}
				}
				st, err := v.Import(label, r, progress)
				if f != nil {
					f.Close()
					if a.stderrTTY() && a.remote == nil {
						fmt.Fprint(a.stderr, "\r\033[K")
					}
				}
				if err != nil {
					stopped(i, err)
					return err
				}
				all = append(all, st)
				if !a.jsonOut {
					a.say("%s: %d resources: %d added, %d new versions, %d unchanged, %d with sensitivity labels",
						label, st.Resources, st.Added, st.Versions, st.Unchanged, st.Labelled)
					if st.Relabelled > 0 {
						a.say("%s: %s imported earlier gained sensitivity labels, through references or from newer versions", label, count(st.Relabelled, "record", "records"))
					}
					if st.RelabelledHand > 0 {
						a.say("%s: of those, %s had a label you removed by hand put back, since a sensitive record stays out unless you name it: see 'medvault log --action label'",
							label, count(st.RelabelledHand, "record"))
					}
				}
			}
			if a.jsonOut {
				return a.printImportJSON(all, nil, nil)
			}
			totals := map[record.Category]int{}
			for _, st := range all {
				for c, n := range st.ByCategory {
					totals[c] += n
				}
			}
			cats := record.Categories()
			slices.SortStableFunc(cats, func(x, y record.Category) int { return totals[y] - totals[x] })
			var rows [][]string
			for _, c := range cats {
				if n := totals[c]; n > 0 {
					rows = append(rows, []string{string(c), fmt.Sprint(n)})
				}
			}
			if len(rows) > 0 {
				a.printTable([]string{"CATEGORY", "NEW RECORDS"}, rows)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

// failedImport is the file an import stopped at, and why.
type failedImport struct {
	File  string `json:"file"`
	Error string `json:"error"`
}

// printImportJSON prints import's --json summary: the files imported
// (stored, whatever happens after), and when a file failed, that file with
// its error and the files not tried after it.
func (a *app) printImportJSON(all []*vault.ImportStats, failed *failedImport, notTried []string) error {
	type fileJSON struct {
		File       string         `json:"file"`
		Resources  int            `json:"resources"`
		Added      int            `json:"added"`
		Versions   int            `json:"versions"`
		Unchanged  int            `json:"unchanged"`
		Labelled   int            `json:"labelled"`
		ByCategory map[string]int `json:"by_category"`
		Relabelled int            `json:"relabelled"`
		// Of those, records that gained a label removed from them by hand.
		RelabelledHand int `json:"relabelled_hand,omitempty"`
	}
	out := struct {
		V     int        `json:"v"`
		Files []fileJSON `json:"files"`
		// Failed: the file the import stopped at, not imported at all.
		Failed *failedImport `json:"failed,omitempty"`
		// NotTried: the files after it, given but not read (omitted
		// when there are none).
		NotTried []string `json:"not_tried,omitempty"`
	}{V: 1, Files: []fileJSON{}, Failed: failed, NotTried: notTried}
	for _, st := range all {
		fj := fileJSON{st.File, st.Resources, st.Added, st.Versions, st.Unchanged, st.Labelled, map[string]int{}, st.Relabelled, st.RelabelledHand}
		for c, n := range st.ByCategory {
			fj.ByCategory[string(c)] = n
		}
		out.Files = append(out.Files, fj)
	}
	return printJSON(a.stdout, out)
}

// progressBar draws done/total as a bar of width cells and a percentage;
// the percentage carries the meaning, the bar only helps the eye.
func progressBar(done, total int64, width int) string {
	if total <= 0 {
		return ""
	}
	n := int(done * int64(width) / total)
	n = min(max(n, 0), width)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + fmt.Sprintf("] %3d%%", done*100/total)
}

// importsRunning counts the imports running in this process (the node runs
// several at once) and keeps the memory target the first one lifted.
var importsRunning struct {
	sync.Mutex
	n    int
	kept int64
}

// liftMemoryLimit lifts Go's memory target for an import and returns what
// puts it back, once no other import runs.
func liftMemoryLimit() (restore func()) {
	importsRunning.Lock()
	defer importsRunning.Unlock()
	if importsRunning.n == 0 {
		importsRunning.kept = debug.SetMemoryLimit(math.MaxInt64)
	}
	importsRunning.n++
	return func() {
		importsRunning.Lock()
		defer importsRunning.Unlock()
		if importsRunning.n--; importsRunning.n == 0 {
			debug.SetMemoryLimit(importsRunning.kept)
		}
	}
}
