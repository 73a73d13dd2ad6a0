package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/vault"
)

func newExportCommand(a *app) *cobra.Command {
	var format, out, category, label, since, from string
	cmd := &cobra.Command{
		Use:   "export [--format fhir|ndjson|files] [--category C] [--label L] [--since D] [--from PATIENT] -o OUT",
		Short: "Export records as FHIR R4 (for an EHR) or as files",
		Long: `Export the selected records. --format fhir writes one FHIR R4 Bundle (type
collection); ndjson writes one resource per line (bulk-data style); files
writes each record as a file into a new directory, unchanged. FHIR formats skip
records that are not FHIR resources.

FHIR formats keep each resource's original bytes but for one addition: its
sensitivity labels (MH, SUD, SEX, HIV, STD, GDIS, SDV), whether found in its
codes, passed on from a resource it references, or set with "medvault label",
are added to meta.security as HL7 v3 ActCode codings, so the EHR or vault that
imports the export sees them. Codings already there are kept, never removed: a
label you removed by hand that the resource's own meta.security gives stays
(the command says how many records this concerns). NDJSON, which has no fullUrl, also
turns references to exported resources by urn:uuid into Type/id, and compacts
a resource that spans lines. In a Bundle, a resource stored without a fullUrl
gets https://medvault.invalid/fhir/Type/id.

The export is written to the ledger before anything is decrypted.`,
		Example: `  medvault export -o all.json
  medvault export --format ndjson --category labs -o labs.ndjson
  medvault export --format files --category imaging -o ./scans
  medvault export --from ada -o ada.json   (a provider: one patient's records, for the EHR)`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilter(category, label, since)
			if err != nil {
				return err
			}
			fm := vault.ExportFormat(format)
			if fm != vault.ExportBundle && fm != vault.ExportNDJSON && fm != vault.ExportFiles {
				return usagef("unknown --format %q (fhir, ndjson or files)", format)
			}
			if out == "" {
				return usagef("give -o OUT (a new file, - for standard output, or a new directory for --format files)")
			}
			if a.jsonOut && out == "-" && fm != vault.ExportFiles {
				// Both would go to standard output, one inside the other.
				return withHint(usagef("--json and -o - cannot go together: the export itself goes to standard output"),
					"write the export to a file (-o FILE) to get the --json summary, or leave out --json")
			}
			if fm == vault.ExportFiles {
				// Decrypted records go into a new directory: never into one
				// named "-", which everywhere else means standard output.
				if out == "-" {
					return usagef("--format files writes a directory of files, not standard output: give -o DIR")
				}
				if _, err := os.Lstat(a.abs(out)); err == nil {
					return withHint(usagef("%s already exists", out), "--format files creates a new directory; choose another name")
				}
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			if err := fromFilter(v, from, &f); err != nil {
				return err
			}
			var st *vault.ExportStats
			switch {
			case fm == vault.ExportFiles:
				st, err = v.ExportToDir(a.context(), f, a.abs(out))
			case out == "-":
				st, err = v.ExportFHIR(f, fm, a.stdout)
			default:
				err = writeNewFile(a.context(), v.CreatePartial, a.abs(out), func(w io.Writer) error {
					var err error
					st, err = v.ExportFHIR(f, fm, w)
					return err
				})
			}
			if err != nil {
				return err
			}
			if a.jsonOut {
				return printJSON(a.stdout, map[string]any{"v": 1, "records": st.Records, "skipped": st.Skipped, "older_versions": st.Older, "duplicates": st.Duplicates, "unresolved_references": st.Unresolved, "source_labels_kept": st.SourceLabelled, "same_id": st.SameID, "output": out})
			}
			msg := "Exported " + count(st.Records, "record")
			if st.Skipped > 0 {
				msg += fmt.Sprintf("; skipped %d that are not FHIR resources (use --format files)", st.Skipped)
			}
			if st.Older > 0 {
				msg += fmt.Sprintf("; left out %s of resources held in a later version (--format files keeps every version)", count(st.Older, "older version"))
			}
			if st.Duplicates > 0 {
				msg += fmt.Sprintf("; left out %s of resources shared by more than one patient (each is written once)", count(st.Duplicates, "identical copy", "identical copies"))
			}
			a.say("%s.", msg)
			if st.Unresolved > 0 {
				a.say("medvault: note: %s in the export name resources it does not hold (left out by the selection, or not shared with you): an EHR links them only to resources it already has", count(st.Unresolved, "urn:uuid reference"))
			}
			if st.SameID > 0 {
				a.say("medvault: warning: %s the type and id of another one exported, from another server or patient: NDJSON names a resource by type and id only, so whoever imports this file may take one for a version of the other; --format fhir keeps them apart by their fullUrls", count(st.SameID, "resource shares", "resources share"))
			}
			if st.SourceLabelled > 0 {
				a.say("medvault: note: %s, in its own meta.security as imported, a sensitivity label you removed by hand: the export keeps what the source wrote, so whoever imports the export sees the label", count(st.SourceLabelled, "record has", "records have"))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "fhir", "fhir, ndjson or files")
	f.StringVarP(&out, "output", "o", "", "write to `OUT`")
	f.StringVar(&category, "category", "", "only this `CATEGORY`")
	f.StringVar(&label, "label", "", "only records with this `LABEL`")
	f.StringVar(&since, "since", "", "only records dated on or after `DATE` (undated ones: added on or after it)")
	f.StringVar(&from, "from", "", "only records shared by this `PATIENT` (contact alias or ID)")
	f.BoolVar(&a.jsonOut, "json", false, "print a JSON summary (not with -o -: refused, exit 2)")
	return cmd
}
