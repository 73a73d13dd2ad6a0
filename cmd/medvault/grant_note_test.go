package main

import (
	"testing"

	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault/record"
)

// A grant naming only record IDs never covers records added later: its
// note must not say it does.
func TestNoRecordNote(t *testing.T) {
	id := record.NewID()
	for _, c := range []struct {
		sc       share.Scope
		withheld int
		want     string
	}{
		{share.Scope{Categories: []record.Category{"labs"}}, 0, "it covers no record yet; records you add in its scope are covered while it lasts"},
		{share.Scope{EmergencySummary: true}, 2, "it covers no record yet (2 records in its scope withheld as sensitive: name the label with --label to include it); records you add in its scope are covered while it lasts"},
		{share.Scope{Records: []record.ID{id}}, 1, "it covers no record yet (1 record in its scope withheld as sensitive: name the label with --label to include it)"},
	} {
		if got := noRecordNote(c.sc, c.withheld); got != c.want {
			t.Errorf("noRecordNote(%+v, %d) =\n%q, want\n%q", c.sc, c.withheld, got, c.want)
		}
	}
}
