package main

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault/record"
)

// registerCompletions gives shell completion the values of the flags that
// take one of a fixed set (categories, labels, purposes, presets, formats,
// ledger actions and outcomes), on every command that has them, and, while
// the user's node runs, record IDs, contact aliases and grant IDs (see
// nodeCompletions).
func registerCompletions(a *app, root *cobra.Command) {
	var categories, labels, actions []string
	for _, c := range record.Categories() {
		categories = append(categories, string(c))
	}
	for _, l := range record.Labels() {
		labels = append(labels, string(l))
	}
	for _, a := range ledger.Actions() {
		actions = append(actions, a.String())
	}
	var purposes, presets []cobra.Completion
	for _, p := range share.Purposes() {
		purposes = append(purposes, cobra.CompletionWithDesc(string(p.Purpose), p.Description))
	}
	for _, p := range share.Presets() {
		presets = append(presets, cobra.CompletionWithDesc(p.Name, p.Description))
	}
	formats := map[string][]string{"audit": {"text", "json", "fhir"}, "export": {"fhir", "ndjson", "files"}}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		fixed := map[string][]cobra.Completion{
			"category": categories,
			"label":    labels,
			"purpose":  purposes,
			"preset":   presets,
			"action":   actions,
			"outcome":  {"ok", "denied", "failed"},
			"format":   formats[c.Name()],
		}
		for name, values := range fixed {
			if c.LocalFlags().Lookup(name) != nil && len(values) > 0 {
				c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
			}
		}
		if c.LocalFlags().Lookup("scope") != nil {
			// A comma-separated list: complete the item after the last comma.
			scopes := append(append([]string(nil), categories...), "emergency-summary")
			c.RegisterFlagCompletionFunc("scope", func(_ *cobra.Command, _ []string, typed string) ([]cobra.Completion, cobra.ShellCompDirective) {
				done := typed[:strings.LastIndex(typed, ",")+1]
				var out []cobra.Completion
				for _, s := range scopes {
					out = append(out, done+s)
				}
				return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	a.registerNodeCompletions(root)
}

// registerNodeCompletions completes the arguments that name what is in the
// vault: records, contacts, grants. They are asked of the running node,
// which holds the vault unlocked; without a node nothing is offered, as
// listing them here would need the passphrase, and completion never asks
// for it. Nothing asked this way is a content read, so none is logged.
func (a *app) registerNodeCompletions(root *cobra.Command) {
	records := func(typed string) []cobra.Completion {
		var out struct {
			Records []struct{ ID, Title, Category string }
		}
		var c []cobra.Completion
		if a.askNode(&out, "list", "--json") {
			for _, r := range out.Records {
				desc := r.Title
				if desc == "" {
					desc = r.Category
				}
				c = offer(c, typed, r.ID[:min(12, len(r.ID))], desc)
			}
		}
		return c
	}
	contacts := func(typed string) []cobra.Completion {
		var out struct {
			Contacts []struct{ Alias, Name, Role string }
		}
		var c []cobra.Completion
		if a.askNode(&out, "contacts", "list", "--json") {
			for _, x := range out.Contacts {
				c = offer(c, typed, x.Alias, strings.TrimSpace(x.Name+" ("+x.Role+")"))
			}
		}
		return c
	}
	grants := func(typed string, args ...string) []cobra.Completion {
		var out struct {
			Grants []struct{ ID, Contact, Patient, Scope, State string }
		}
		var c []cobra.Completion
		if a.askNode(&out, args...) {
			for _, g := range out.Grants {
				if g.State != "active" {
					continue
				}
				who := g.Contact
				if who == "" {
					who = g.Patient
				}
				c = offer(c, typed, g.ID[:min(12, len(g.ID))], strings.TrimSpace(who+" "+g.Scope))
			}
		}
		return c
	}
	first := func(f func(string) []cobra.Completion) cobra.CompletionFunc {
		return func(_ *cobra.Command, args []string, typed string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return f(typed), cobra.ShellCompDirectiveNoFileComp
		}
	}
	set := func(path string, f cobra.CompletionFunc) {
		if c, _, err := root.Find(strings.Fields(path)); err == nil {
			c.ValidArgsFunction = f
		}
	}
	for _, name := range []string{"get", "show", "rm", "label"} {
		set(name, first(records))
	}
	set("grant", first(contacts))
	set("contacts show", first(contacts))
	set("contacts rm", first(contacts))
	set("revoke", first(func(typed string) []cobra.Completion { return grants(typed, "grants", "--json") }))
	set("fetch", first(func(typed string) []cobra.Completion {
		return append(grants(typed, "inbox", "--json"), contacts(typed)...)
	}))
	flagFrom := func(path, flag string, f func(string) []cobra.Completion) {
		if c, _, err := root.Find(strings.Fields(path)); err == nil && c.Flags().Lookup(flag) != nil {
			c.RegisterFlagCompletionFunc(flag, func(_ *cobra.Command, _ []string, typed string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return f(typed), cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
	flagFrom("grant", "record", records)
	flagFrom("log", "record", records)
	flagFrom("revoke", "all", contacts)
	flagFrom("list", "from", contacts)
	flagFrom("export", "from", contacts)
}

// offer appends value, described by desc, when it starts with what was typed.
func offer(c []cobra.Completion, typed, value, desc string) []cobra.Completion {
	if !strings.HasPrefix(value, typed) {
		return c
	}
	desc = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, desc)
	return append(c, cobra.CompletionWithDesc(value, desc))
}

// askNode runs a listing command in the running node and decodes its JSON
// output into v. It reports false when no node runs or the command failed.
func (a *app) askNode(v any, args ...string) bool {
	dir, err := a.dataDir()
	if err != nil {
		return false
	}
	sock := filepath.Join(dir, nodeSocket)
	if !control.Running(sock) {
		return false
	}
	if checkDataDir(dir) != nil {
		return false
	}
	var out bytes.Buffer
	// Listing reads no path: any absolute directory will do.
	code, err := control.Call(sock, control.Request{Args: args, Dir: "/", NoColor: true}, nil, &out, io.Discard)
	return err == nil && code == 0 && json.Unmarshal(out.Bytes(), v) == nil
}
