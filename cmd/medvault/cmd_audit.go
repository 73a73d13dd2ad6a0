package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/identity"
)

func newAuditCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "audit [--format text|json|fhir] [--json]",
		Short: "Who accessed your records, what was refused, and what looks wrong",
		Long: `Summarise your ledger: every person other than you who read your records
(requests served, distinct records sent, purposes, first and last time), every refused
request and why, and anomalies (a peer refused 3 or more times within an hour).
--format fhir writes the accesses and refusals as a FHIR R4 Bundle of
AuditEvent resources, for an EHR or a compliance tool; --json is --format
json. Run 'medvault verify' to check the ledger itself.`,
		Example: `  medvault audit
  medvault audit --json
  medvault audit --format fhir > audit-events.json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" && format != "fhir" {
				return usagef("unknown --format %q (text, json or fhir)", format)
			}
			// --json is --format json, as every reporting command has it.
			if a.jsonOut {
				if cmd.Flags().Changed("format") && format != "json" {
					return usagef("--json and --format %s ask for two forms: give one", format)
				}
				format = "json"
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			if format == "fhir" {
				bw := fhir.NewBundleWriter(a.stdout)
				if err := v.AuditEvents(bw.WriteRaw); err != nil {
					return err
				}
				return bw.Close()
			}
			au, err := v.Audit()
			if err != nil {
				return err
			}
			if format == "json" {
				type actorJSON struct {
					ID       string   `json:"id"`
					Contact  string   `json:"contact,omitempty"`
					Served   int      `json:"served"`
					Records  int      `json:"records"`
					Denied   int      `json:"denied"`
					Purposes []string `json:"purposes"`
					First    string   `json:"first"`
					Last     string   `json:"last"`
				}
				type denialJSON struct {
					Time   string `json:"time"`
					Actor  string `json:"actor"`
					Action string `json:"action"`
					Reason string `json:"reason"`
				}
				out := struct {
					V         int          `json:"v"`
					Entries   int64        `json:"entries"`
					Actors    []actorJSON  `json:"actors"`
					Denials   []denialJSON `json:"denials"`
					Anomalies []string     `json:"anomalies"`
				}{V: 1, Entries: au.Entries, Actors: []actorJSON{}, Denials: []denialJSON{}, Anomalies: au.Anomalies}
				if out.Anomalies == nil {
					out.Anomalies = []string{}
				}
				for _, x := range au.Actors {
					aj := actorJSON{ID: x.Actor.String(), Served: x.Served, Records: x.Records, Denied: x.Denied, Purposes: x.Purposes,
						First: x.First.UTC().Format(time.RFC3339), Last: x.Last.UTC().Format(time.RFC3339)}
					if n := a.contactName(v, x.Actor); !strings.Contains(n, "…") {
						aj.Contact = n
					}
					if aj.Purposes == nil {
						aj.Purposes = []string{}
					}
					out.Actors = append(out.Actors, aj)
				}
				for _, e := range au.Denials {
					dj := denialJSON{Time: e.Time.UTC().Format(time.RFC3339), Action: e.Action.String(), Reason: e.Reason}
					if id, err := identity.IDFromBytes(e.Actor); err == nil {
						dj.Actor = id.String()
					}
					out.Denials = append(out.Denials, dj)
				}
				return printJSON(a.stdout, out)
			}
			w := a.stdout
			fmt.Fprintf(w, "Ledger: %d entries.\n\nWho accessed your records:\n", au.Entries)
			if len(au.Actors) == 0 {
				fmt.Fprintln(w, "  nobody but you")
			} else {
				var times []time.Time
				for _, x := range au.Actors {
					times = append(times, x.First, x.Last)
				}
				z := a.tableZone(times...)
				var rows [][]string
				for _, x := range au.Actors {
					rows = append(rows, []string{a.contactName(v, x.Actor), fmt.Sprint(x.Served), fmt.Sprint(x.Records), fmt.Sprint(x.Denied),
						strings.Join(x.Purposes, ","), z.format(x.First, "2006-01-02 15:04"), z.format(x.Last, "2006-01-02 15:04")})
				}
				a.printTable([]string{"WHO", "SERVED", "RECORDS", "REFUSED", "PURPOSES", "FIRST" + z.title, "LAST" + z.title}, rows)
			}
			fmt.Fprintf(w, "\nRefused requests: %d\n", len(au.Denials))
			for _, e := range au.Denials {
				who := "?"
				if id, err := identity.IDFromBytes(e.Actor); err == nil {
					who = a.contactName(v, id)
				}
				fmt.Fprintf(w, "  %s  %s  %s: %s\n", e.Time.In(a.zone()).Format("2006-01-02 15:04:05"), who, e.Action, e.Reason)
			}
			fmt.Fprintf(w, "\nAnomalies: %d\n", len(au.Anomalies))
			for _, s := range au.Anomalies {
				fmt.Fprintf(w, "  %s\n", s)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text, json or fhir")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON (the same as --format json)")
	return cmd
}
