package vault

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// ExportFormat selects how Export writes records.
type ExportFormat string

// Export formats.
const (
	ExportBundle ExportFormat = "fhir"   // one FHIR R4 Bundle of type collection
	ExportNDJSON ExportFormat = "ndjson" // one FHIR resource per line
	ExportFiles  ExportFormat = "files"  // each record as a file in a new directory
)

// ExportStats says what an export wrote.
type ExportStats struct {
	Records int // records written
	Skipped int // records not written: not FHIR resources, in a FHIR format
	Older   int // records not written: older versions of a resource (FHIR formats)
	// Duplicates are records not written because a record with the same
	// fullUrl and the same bytes was (a Bundle: the same resource shared
	// by more than one patient).
	Duplicates int
	// Unresolved counts the distinct urn:uuid and urn:oid references of
	// the exported resources that name no entry of the Bundle (or, in
	// NDJSON, no exported resource, since those become "Type/id"):
	// resources left out by the filter, or never shared with this vault
	// (a provider's lab results reference a Patient the grant did not
	// cover).
	Unresolved int
	// SourceLabelled counts the records whose own meta.security (as
	// imported) still gives a label the patient removed by hand: the
	// export keeps what the source wrote, so whoever imports it sees the
	// label (docs/DESIGN.md, "Export").
	SourceLabelled int
	// SameID counts, in NDJSON, the resources written that share their
	// type and id with another one written: resources of different servers
	// (or, in a provider's vault, of different patients), which NDJSON,
	// naming a resource by type and id only, cannot tell apart. A Bundle
	// keeps them apart by their fullUrls.
	SameID int
}

// logExport appends Export entries naming ids (at most ledger.MaxSubjects
// per entry) and signs a checkpoint, before any content is decrypted.
func (v *Vault) logExport(ids []record.ID) error {
	return v.update(func(tx *bbolt.Tx) error {
		for len(ids) > 0 {
			n := min(len(ids), ledger.MaxSubjects)
			if err := v.logAppend(tx, Event{Action: ledger.ActionExport, Subjects: recordSubjects(ids[:n]...)}); err != nil {
				return err
			}
			ids = ids[n:]
		}
		return v.ledger.checkpoint(tx)
	})
}

// ExportFHIR writes the FHIR resources among the records matching f to w,
// as a Bundle or NDJSON, each with its original bytes but for what the
// record's labels add: each label its meta.security does not give yet
// becomes an ActCode coding there (fhir.AddSecurityLabels), so whoever
// imports the export, an EHR or another vault, gets the labels the vault
// holds (derived, propagated, or set by hand). Nothing is removed: a label
// the patient removed by hand that the resource's own meta.security gives
// stays there, and is counted (ExportStats.SourceLabelled). NDJSON, which
// has no fullUrl, also turns references by the urn:uuid or urn:oid
// fullUrl of an exported resource into its "Type/id", and compacts a
// resource that spans lines (see fhir.NDJSONWriter).
//
// Records that are not FHIR resources are skipped and counted, and so are
// older versions of a resource the vault holds in a later one: a Bundle
// may not hold one fullUrl twice without distinct meta.versionId (R4 rule
// bdl-7). For the same reason a Bundle holds a fullUrl once across
// patients (a provider's vault holds one hospital's Organization from each
// patient who shared it): a record with the bytes of one already written
// under its fullUrl is left out and counted, and one with other bytes is
// written under a urn:uuid of its own (otherURL). A record stored without
// a fullUrl gets ExportBase + "Type/id". The export is written to the
// ledger before anything is decrypted.
func (v *Vault) ExportFHIR(f Filter, format ExportFormat, w io.Writer) (*ExportStats, error) {
	ms, err := v.List(f)
	if err != nil {
		return nil, err
	}
	all := ms
	if f != (Filter{}) {
		// The latest version may be outside the filter.
		if all, err = v.List(Filter{}); err != nil {
			return nil, err
		}
	}
	older := Superseded(all)
	st := &ExportStats{}
	var ids []record.ID
	var sel []*Meta
	for _, m := range ms {
		if m.FHIR == nil {
			st.Skipped++
			continue
		}
		if older[m.ID] {
			st.Older++
			continue
		}
		ids = append(ids, m.ID)
		sel = append(sel, m)
	}
	if err := v.logExport(ids); err != nil {
		return nil, err
	}
	var write func(fullURL string, raw []byte) error
	var closeW func() error
	var relative map[string]string
	switch format {
	case ExportBundle:
		bw := fhir.NewBundleWriter(w)
		write, closeW = bw.WriteRaw, bw.Close
	case ExportNDJSON:
		nw := fhir.NewNDJSONWriter(w)
		write, closeW = func(_ string, raw []byte) error { return nw.WriteRaw(raw) }, nw.Close
		relative = relativeRefs(sel)
		st.SameID = sameIDs(sel)
	default:
		return nil, fmt.Errorf("unknown FHIR export format %q", format)
	}
	// The buffers hold decrypted records: they wipe what they outgrow and
	// what Reset drops, and are wiped at the end.
	var buf, labelled, relinked plainBuffer
	defer buf.Wipe()
	defer labelled.Wipe()
	defer relinked.Wipe()
	written := map[string][sha256.Size]byte{} // fullUrl -> hash of the bytes under it (Bundle)
	urns := map[string]bool{}                 // urn: references made
	err = v.view(func(tx *bbolt.Tx) error {
		for _, m := range sel {
			buf.Reset()
			if err := v.decryptTo(tx, m, &buf); err != nil {
				return err
			}
			labelled.Reset()
			if err := fhir.AddSecurityLabels(&labelled, buf.Bytes(), m.Labels); err != nil {
				return fmt.Errorf("export record %s: %w", m.ID, err)
			}
			if len(m.HandRemoved) > 0 && slices.ContainsFunc(fhir.SecurityLabels(buf.Bytes()), func(l record.Label) bool {
				return slices.Contains(m.HandRemoved, l)
			}) {
				st.SourceLabelled++
			}
			out := labelled.Bytes()
			if relative != nil {
				relinked.Reset()
				if _, err := fhir.RewriteReferences(&relinked, out, relative); err != nil {
					return fmt.Errorf("export record %s: %w", m.ID, err)
				}
				out = relinked.Bytes()
			}
			var url string
			if format == ExportBundle {
				url = cmp.Or(m.FHIR.FullURL, exportURL(m))
				h := sha256.Sum256(out)
				if prev, ok := written[url]; !ok {
					written[url] = h
				} else if prev == h {
					st.Duplicates++
					continue
				} else {
					url = otherURL(m)
					written[url] = h
				}
			}
			if err := write(url, out); err != nil {
				return fmt.Errorf("export record %s: %w", m.ID, err)
			}
			st.Records++
			for _, r := range fhir.References(out) {
				if strings.HasPrefix(r, "urn:uuid:") || strings.HasPrefix(r, "urn:oid:") {
					urns[r] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for r := range urns {
		if _, ok := written[r]; !ok {
			st.Unresolved++
		}
	}
	return st, closeW()
}

// sameIDs counts the records of ms (one version of each resource) whose
// type and id another record of ms has.
func sameIDs(ms []*Meta) int {
	n := map[[2]string]int{}
	for _, m := range ms {
		if m.FHIR.ID != "" {
			n[[2]string{m.FHIR.Type, m.FHIR.ID}]++
		}
	}
	same := 0
	for _, c := range n {
		if c > 1 {
			same += c
		}
	}
	return same
}

// ExportBase is the service base of the fullUrls a Bundle export gives
// resources the vault holds no fullUrl for (imported from NDJSON or as a
// bare resource): ExportBase + "Type/id". A Bundle entry needs a fullUrl
// (R4), and this one agrees with the resource's id, is the same at every
// export (an export imported into the vault it came from adds it to a
// record's fullUrls once, not once per export), and, being RESTful,
// makes the relative "Type/id" references those resources make (as bulk
// data exports write them) resolve to the other entries under it (R4
// 2.36.4.1 resolves a relative reference against the base of the entry
// that makes it). The .invalid domain (RFC 6761) never resolves: the URL
// names no server.
const ExportBase = "https://medvault.invalid/fhir/"

// exportURL is the fullUrl a Bundle export gives record m, which has none.
func exportURL(m *Meta) string {
	if m.FHIR.ID == "" {
		return otherURL(m) // cannot happen: the reader requires an id or a fullUrl
	}
	return ExportBase + m.FHIR.Type + "/" + m.FHIR.ID
}

// otherURL is the fullUrl of record m when the one it would have is taken
// by a resource with other bytes (a provider's vault holds one resource
// from each of two patients, changed in between): a urn:uuid made from
// the record ID, the same at every export.
func otherURL(m *Meta) string {
	h := sha256.Sum256(append([]byte("medvault/export-fullurl/v1\x00"), m.ID[:]...))
	h[6] = h[6]&0x0f | 0x80 // version 8 (RFC 9562: made here)
	h[8] = h[8]&0x3f | 0x80 // the RFC 9562 variant
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// relativeRefs maps the urn:uuid and urn:oid fullUrls of the exported
// records ms to their "Type/id": NDJSON has no fullUrl to resolve such a
// reference by. A fullUrl two resources were stored under (with different
// types or ids) maps to neither.
func relativeRefs(ms []*Meta) map[string]string {
	out := map[string]string{}
	both := map[string]bool{}
	for _, m := range ms {
		if m.FHIR.ID == "" {
			continue
		}
		key := m.FHIR.Type + "/" + m.FHIR.ID
		for _, u := range m.FHIR.fullURLs() {
			if !strings.HasPrefix(u, "urn:uuid:") && !strings.HasPrefix(u, "urn:oid:") {
				continue
			}
			if k, ok := out[u]; ok && k != key {
				both[u] = true
			}
			out[u] = key
		}
	}
	for u := range both {
		delete(out, u)
	}
	return out
}

// ExportToDir writes each record matching f as a file in dir, which must
// not exist yet (it is created with mode 0700; files are 0600). FHIR
// resources are named Type-id.json (with -vN for later versions); other
// records keep their file name, made unique. The export is written to the
// ledger before anything is decrypted.
//
// The files are written into a hidden 0700 directory beside dir, renamed
// to dir only once every record is written: an export that fails midway
// (a full disk), or whose ctx is cancelled (whoever asked for it is gone),
// removes what it wrote and leaves no decrypted record behind, and nothing
// at dir. A process killed midway leaves the hidden directory, noted in
// the vault's data directory, which the next Open removes; dir is never
// made before the rename, so a retry finds the name free.
func (v *Vault) ExportToDir(ctx context.Context, f Filter, dir string) (st *ExportStats, err error) {
	// "out/" is "out": its hidden sibling must not be made inside it.
	dir = filepath.Clean(dir)
	// Refused before anything is decrypted; the rename at the end
	// refuses it too, should something take the name meanwhile.
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("export: %w", &os.PathError{Op: "mkdir", Path: dir, Err: fs.ErrExist})
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("export: %w", err)
	}
	// Noted, as a partial output file is: a process killed before the
	// rename leaves decrypted records in it, which the next Open removes.
	tmp, err := v.partialDir(filepath.Dir(dir))
	if err != nil {
		return nil, fmt.Errorf("export to %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	ms, err := v.List(f)
	if err != nil {
		return nil, err
	}
	ids := make([]record.ID, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	if err := v.logExport(ids); err != nil {
		return nil, err
	}
	st = &ExportStats{}
	used := map[string]bool{}
	err = v.view(func(tx *bbolt.Tx) error {
		for _, m := range ms {
			name := uniqueName(exportName(m), used)
			out, err := os.OpenFile(filepath.Join(tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("export record %s to %s: %w", m.ID, dir, err)
			}
			err = ctx.Err()
			if err == nil {
				err = v.decryptTo(tx, m, ctxWriter{ctx, out})
			}
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("export record %s (%d written to %s, now removed: nothing was exported): %w", m.ID, st.Records, dir, err)
			}
			st.Records++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := renameNoReplace(tmp, dir); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return st, nil
}

// exportName is a safe file name for a record: no path separators, no
// leading dot, no control characters.
func exportName(m *Meta) string {
	var name string
	switch {
	case m.FHIR != nil && m.FHIR.ID != "":
		name = m.FHIR.Type + "-" + m.FHIR.ID
		if m.FHIR.Version > 1 {
			name += fmt.Sprintf("-v%d", m.FHIR.Version)
		}
		name += ".json"
	case m.FHIR != nil:
		name = m.FHIR.Type + "-" + m.ID.String()[:12] + ".json"
	case m.FileName != "":
		name = m.FileName
	default:
		name = m.ID.String()[:12] + ".bin"
	}
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, filepath.Base(name))
	name = strings.TrimLeft(name, ".")
	if name == "" {
		name = m.ID.String()[:12]
	}
	return name
}

func uniqueName(name string, used map[string]bool) string {
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	n := name
	for i := 2; used[n]; i++ {
		n = fmt.Sprintf("%s-%d%s", base, i, ext)
	}
	used[n] = true
	return n
}

// series names a FHIR resource across its versions: who shared it (for a
// provider's vault), the server it came from as far as its fullUrl says
// (serverBase), its type, and its id (or fullUrl when it has none).
//
// An id is unique on one server only: Condition/1 from a hospital and
// Condition/1 from a clinic are two resources, and neither may hide the
// other as its older version. Versions with no known server (NDJSON, bare
// resources, urn:uuid fullUrls) are one resource with each other and with
// none that has one: a resource shown twice is a nuisance, one hidden
// behind another server's resource of a later date is a danger.
type series struct {
	from, base, typ, id string
}

// seriesOf returns the series m belongs to: one for each server its
// fullUrls name (servers). The same bytes under one type and id from two
// servers are stored once, the second server's fullUrl kept in FullURLs:
// that record is the current resource of both until each server sends a
// later version of its own.
func seriesOf(m *Meta) []series {
	s := series{from: string(m.From[:]), typ: m.FHIR.Type, id: m.FHIR.ID}
	if s.id == "" {
		s.id = "url:" + m.FHIR.FullURL
		return []series{s}
	}
	var out []series
	for _, b := range m.FHIR.servers() {
		s.base = b
		out = append(out, s)
	}
	return out
}

// servers returns the serverKeys of Servers: the series the record belongs
// to. An alias that names no server (a urn:uuid fullUrl the same bytes
// came back under, in a portal download say) adds none: it would make the
// record the current resource of no server, which no later version from a
// server ever replaces.
func (f *FHIRInfo) servers() []string {
	bs := f.Servers()
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = serverKey(b)
	}
	return out
}

// sameResource reports whether a and b are versions of one resource: they
// share a series.
func sameResource(a, b *Meta) bool {
	sb := seriesOf(b)
	for _, s := range seriesOf(a) {
		if slices.Contains(sb, s) {
			return true
		}
	}
	return false
}

// Server returns the service base of the server the resource came from,
// as far as its fullUrl names one (see serverBase); "" when it names none.
// It is for display: two bases name one server when their serverKeys are
// equal.
func (f *FHIRInfo) Server() string {
	if f.ID == "" {
		return ""
	}
	return serverBase(f.FullURL, f.Type, f.ID)
}

// Servers returns, for display, the service bases of every server the
// resource came from: Server's first ("" when its fullUrl names none),
// then those of the fullUrls later imports brought the same bytes under
// (see seriesOf), each server once.
func (f *FHIRInfo) Servers() []string {
	first := f.Server()
	out, keys := []string{first}, []string{serverKey(first)}
	if f.ID == "" {
		return out
	}
	for _, u := range f.FullURLs {
		b := serverBase(u, f.Type, f.ID)
		if k := serverKey(b); k != "" && !slices.Contains(keys, k) {
			out, keys = append(out, b), append(keys, k)
		}
	}
	return out
}

// serverBase returns the service base URL of a RESTful fullUrl,
// "[base]/Type/id" with an http or https base (R4 2.36.4), in the
// normal form of RFC 3986 6.2.2-6.2.3: the scheme and host in lower case,
// an IPv6 host as net/netip writes it ([2001:db8::1]), no default port
// (443 for https, 80 for http) and no leading zeros in another,
// percent-encoded unreserved characters decoded (%66hir is fhir) and the
// hex digits of the others in upper case, no trailing slash. It is "" for
// any other fullUrl (urn:uuid, urn:oid, one that does not end in the
// resource's type and id) and for ExportBase, which medvault gives
// resources that came with no server. The scheme stays as given: it is
// what show and list --json display (FHIRInfo.Server), while series are
// compared by serverKey, which leaves it out.
func serverBase(fullURL, typ, id string) string {
	rest, ok := strings.CutSuffix(fullURL, "/"+typ+"/"+id)
	if !ok {
		return ""
	}
	u, err := url.Parse(rest)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "" // "http://:8080/...": a port and no host
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + a.String() + "]"
	} else if strings.Contains(host, ":") {
		return "" // not an IPv6 address, though bracketed as one
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return ""
		}
		if !(scheme == "https" && n == 443 || scheme == "http" && n == 80) {
			host += ":" + strconv.FormatUint(n, 10)
		}
	}
	base := scheme + "://" + host + strings.TrimRight(normalPercent(u.EscapedPath()), "/")
	if base+"/" == ExportBase {
		return ""
	}
	return base
}

// serverKey returns what two service bases of serverBase are compared by:
// the base without its scheme, so that http and https of one host and
// path are one server (a portal moved to https, or linked either way,
// still serves the same resources); "" for "".
func serverKey(base string) string {
	_, rest, _ := strings.Cut(base, "://")
	return rest
}

// normalPercent decodes the percent-encoded unreserved characters of an
// escaped URL path (RFC 3986 6.2.2.2: ALPHA, DIGIT, "-", ".", "_", "~")
// and writes the hex digits of the other percent-encodings in upper case
// (6.2.2.1).
func normalPercent(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+2 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		n, err := strconv.ParseUint(p[i+1:i+3], 16, 8)
		if err != nil {
			b.WriteByte(p[i])
			continue
		}
		switch c := byte(n); {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String()
}

// Superseded returns the records in ms that are older versions of a FHIR
// resource ms also holds in a later version.
//
// A record of several series (seriesOf) is older only when each of them
// holds a later version.
func Superseded(ms []*Meta) map[record.ID]bool {
	latest := map[series]*Meta{}
	keys := make([][]series, len(ms)) // seriesOf parses fullUrls: once per record
	for i, m := range ms {
		if m.FHIR != nil {
			keys[i] = seriesOf(m)
			for _, k := range keys[i] {
				if l := latest[k]; l == nil || m.FHIR.Newer(l.FHIR) {
					latest[k] = m
				}
			}
		}
	}
	out := map[record.ID]bool{}
	for i, m := range ms {
		if m.FHIR == nil {
			continue
		}
		older := true
		for _, k := range keys[i] {
			older = older && latest[k] != m
		}
		if older {
			out[m.ID] = true
		}
	}
	return out
}

// ctxWriter writes to w until ctx is cancelled, and fails from then on.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// renameChecked renames old to new unless new exists (a check, then the
// rename: where the file system cannot do both in one step).
func renameChecked(old, new string) error {
	if _, err := os.Lstat(new); err == nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: fs.ErrExist}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(old, new)
}
