// Package record holds the small vocabulary every other medvault package
// shares about a health record: its ID, its clinical Category and its
// sensitivity Labels.
//
// It is a leaf package (standard library only) so that vault, its FHIR
// importer and share can all use the same typed values without import
// cycles. The category list and the label list are the product's interface:
// they appear in grants, so a name never changes meaning once released.
package record
