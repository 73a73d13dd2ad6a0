package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault/record"
)

// registerCompletions gives shell completion the values of the flags that
// take one of a fixed set (categories, labels, purposes, presets, formats,
// ledger actions and outcomes), on every command that has them. Record,
// contact and grant IDs are not completed: listing them would need the
// passphrase.
func registerCompletions(root *cobra.Command) {
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
}
