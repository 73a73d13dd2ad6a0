package record

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Category
		ok   bool
	}{
		{"labs", Labs, true}, {" Labs ", Labs, true}, {"care-plans", CarePlans, true},
		{"advance-directives", AdvanceDirectives, true}, {"bloodwork", "", false}, {"", "", false},
	} {
		got, err := ParseCategory(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCategory(%q) = %q, %v", tc.in, got, err)
		}
	}
	if len(Categories()) != 18 {
		t.Errorf("%d categories, the brief lists 18", len(Categories()))
	}
	for _, s := range []string{"mh", "MH", " sud", "GDIS"} {
		if _, err := ParseLabel(s); err != nil {
			t.Errorf("ParseLabel(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "PSY", "M H"} {
		if _, err := ParseLabel(s); err == nil {
			t.Errorf("ParseLabel(%q) accepted", s)
		}
	}
	id := NewID()
	if back, err := ParseID(id.String()); err != nil || back != id {
		t.Fatalf("ID round trip: %v", err)
	}
	for _, s := range []string{"", "zz", id.String()[:31], id.String() + "00"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
}
