// Package fhir reads FHIR R4 JSON exports into records for the medvault
// vault, classifies and labels them, and writes them back out.
//
// It has no FHIR model: a resource is kept as the exact bytes it arrived
// in (Resource.Raw) and only a small index is read from those bytes: type,
// id, subject, a date, codes, references, meta.security, a title, the
// medvault category and the sensitivity labels. The vault stores Raw,
// encrypted, as the record's content and the index as its metadata.
//
// # Input
//
// NewReader detects the format from the content, not the file name:
//
//   - A JSON object whose resourceType is "Bundle" (any of the nine R4
//     bundle types). Its entries are streamed: memory stays bounded
//     whatever the bundle's size. Bundle.entry members may come in any
//     order. If "entry" comes before "resourceType" in the top-level
//     object, the object is buffered (up to Limits.MaxResourceSize) until
//     its resourceType is known, then replayed; larger bundles must name
//     their resourceType first, as every FHIR server writes them.
//   - A JSON object holding any other resource: one record.
//   - NDJSON (FHIR bulk data): one resource per line, recognised when a
//     complete object is followed by more content. Blank lines are
//     allowed. An NDJSON line may hold a Bundle resource; it is stored as
//     one record and not expanded.
//
// Entries without a resource are skipped when they carry no data (a GET,
// HEAD or DELETE request in a transaction or history bundle) and refused
// otherwise; searchset entries whose search.mode is "outcome" are skipped.
// A nested Bundle in an entry is one record of type Bundle.
//
// # Invariants
//
//   - Raw is byte-for-byte the resource as it appears in the input, from
//     its opening brace to its closing brace: Offset locates it. It is
//     never re-serialised (the NDJSON writer's compaction is the only
//     documented exception, and only on output).
//   - Every resource is validated strictly before it is indexed: RFC 8259
//     syntax, valid UTF-8, no duplicate member names in any object, at
//     most 256 levels of nesting, a resourceType from the R4 list (146
//     types, embedded from resourcetypes.txt), and a valid id. An entry in
//     a bundle may lack an id when its fullUrl identifies it (resources
//     created by POST in a transaction); anywhere else an id is required.
//     Duplicate names are refused because parsers disagree on which value
//     wins, so a label derived from one reading could be missed by another.
//   - Every error from Reader.Next other than io.EOF is a *ParseError with
//     the caller's file name, the entry index and, where known, the line and
//     byte offset, wrapping a sentinel (ErrNotJSON, ErrUnknownType, ErrNoID,
//     ErrTooLarge, ErrTruncated, ...). Errors never contain resource content.
//   - Limits bound each resource (64 MiB by default) and the number of
//     resources per file (1,000,000 by default).
//
// # Categories and labels
//
// CATEGORIES.md documents the category tables and the label rules; the
// value lists behind the labels are plain text files in valuesets/, each
// citing its sources. In short: meta.security codes are honoured (a
// Bundle's own apply to every entry: Reader.BundleLabels), labels
// are also derived from clinical codes (SNOMED CT, ICD-10, ICD-9, LOINC,
// RxNorm, CPT), and Propagate spreads labels to the resources that
// reference a labelled one (an encounter's claim, the claim's explanation
// of benefit, a prescription whose reason is a labelled condition).
//
// # Output
//
// BundleWriter writes a collection Bundle and NDJSONWriter writes NDJSON,
// both streaming and both writing each resource's bytes as given.
// AddSecurityLabels adds labels to a resource's meta.security (export's
// one change to a resource) and RewriteReferences changes references (an
// NDJSON export's urn:uuid ones to "Type/id").
// Generate writes synthetic NDJSON for benchmarks, tests and the demo.
//
// # Caveats
//
//   - A file is valid only when Next has returned io.EOF. Errors can come
//     after resources have been returned (a truncated bundle, a bad entry
//     near the end); a caller that wants all-or-nothing must not commit
//     earlier, or must read the file twice.
//   - SNOMED CT codes match the value lists exactly; there is no
//     terminology server, so unlisted descendants of a listed concept are
//     not recognised. Derived labels are a safety net, not a guarantee:
//     the patient can add and remove labels by hand.
//   - Propagation only sees the resources passed to it (one import batch
//     plus what the caller adds) and only ever adds labels.
//   - A fullUrl that disagrees with its resource's id (HL7's own examples
//     contain one) is accepted; references resolve by the exact fullUrl and
//     by Type/id separately.
//   - Title, Why, Codes, References and the other index fields are derived
//     from record content and are as sensitive as it: store them encrypted
//     with the record and never log them.
//   - An NDJSON file whose first line is a Bundle naming its resourceType
//     first is read as a bundle and then refused (data after the bundle).
//   - Peak memory for a bundle is about three times the largest resource
//     (decoder buffer and the copy kept in Raw); typical exports use a few MiB.
package fhir
