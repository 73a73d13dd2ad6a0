package main

import (
	"testing"
	"time"
)

func TestTableZone(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no zone database: %v", err)
	}
	a := &app{loc: berlin}
	jan := time.Date(2026, 1, 10, 8, 30, 0, 0, time.UTC)
	jul := time.Date(2026, 7, 10, 8, 30, 0, 0, time.UTC)
	const layout = "2006-01-02 15:04"

	z := a.tableZone(jan, jan.Add(time.Hour))
	if z.title != " (CET)" || z.format(jan, layout) != "2026-01-10 09:30" {
		t.Errorf("one zone: title %q, cell %q", z.title, z.format(jan, layout))
	}
	// Across a daylight-saving change each cell names its zone.
	z = a.tableZone(jan, jul)
	if z.title != "" || z.format(jan, layout) != "2026-01-10 09:30 CET" || z.format(jul, layout) != "2026-07-10 10:30 CEST" {
		t.Errorf("two zones: title %q, cells %q %q", z.title, z.format(jan, layout), z.format(jul, layout))
	}
	if z := a.tableZone(); z.title != "" || z.cell == "" {
		t.Errorf("no times: %+v", z)
	}
}

// TestZoneOf: a command the node runs shows times in its client's zone,
// chosen from the client's TZ as Go chooses time.Local.
func TestZoneOf(t *testing.T) {
	if _, err := time.LoadLocation("Asia/Tokyo"); err != nil {
		t.Skipf("no zone database: %v", err)
	}
	at := time.Date(2026, 1, 10, 8, 30, 0, 0, time.UTC)
	for tz, want := range map[string]string{"Asia/Tokyo": "JST", ":Asia/Tokyo": "JST", "UTC": "UTC", "No/Such_Zone": "UTC"} {
		if got, _ := at.In(zoneOf(tz)).Zone(); got != want {
			t.Errorf("TZ=%q: zone %s, want %s", tz, got, want)
		}
	}
}
