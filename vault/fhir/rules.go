package fhir

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/medvault/medvault/vault/record"
)

// deriveRev counts the changes to how labels are derived from a resource
// that the embedded lists' bytes do not show: which elements are read for
// codes (QuestionnaireResponse items, Consent provisions, contained
// resources), the meta.security codes honoured, the code systems' aliases
// and how codes are matched. Bump it with any such change, so vaults
// derive their records' labels again (see LabelRules).
const deriveRev = 3 // 2: HCPCS Level II read; 3: every coding anywhere in the resource

// LabelRules names the rules this build derives sensitivity labels by:
// deriveRev and a hash of the embedded value lists and resource types. Two
// builds with the same name derive the same labels from a resource; a
// vault that stored records under another name derives them again (the
// vault's relabel) so records imported before a list gained a code get the
// label a new import would give them.
func LabelRules() string { return labelRules() }

var labelRules = sync.OnceValue(func() string {
	name, err := rulesName(embedded)
	if err != nil {
		panic("fhir: embedded lists unreadable: " + err.Error()) // the build embeds them
	}
	return name
})

// rulesName hashes what of fsys's lists decides labels: each list's name
// and its rules (an exclusion mark, system and code, in file order), and the
// resource types; not comments, blank lines or display texts, so editing
// those does not make every vault decrypt every record again.
func rulesName(fsys fs.FS) (string, error) {
	h := sha256.New()
	// WalkDir visits names in lexical order, so the hash is stable.
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(name) != ".txt" {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		h.Write([]byte(strconv.Quote(name) + "\n"))
		for ln := range strings.Lines(string(b)) {
			ln = strings.TrimSpace(ln)
			if ln == "" || ln[0] == '#' {
				continue
			}
			if strings.HasPrefix(name, "valuesets/") {
				if parts := strings.SplitN(ln, "|", 3); len(parts) == 3 {
					ln = parts[0] + "|" + parts[1] // the display does not match anything
				}
			}
			h.Write([]byte(strconv.Quote(ln) + "\n"))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return "r" + strconv.Itoa(deriveRev) + "-" + hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// ResourceLabels returns the labels one resource's own content gives it
// (its codes and meta.security, as an import derives them), without the
// labels an import propagates from other resources. raw is the
// resource's JSON as imported; fullURL its Bundle entry's fullUrl, if any.
func ResourceLabels(raw []byte, fullURL string) ([]record.Label, error) {
	t, err := loadTables()
	if err != nil {
		return nil, err
	}
	ix := indexer{t: t}
	r, err := ix.index(raw, fullURL)
	if err != nil {
		return nil, err
	}
	return r.Labels, nil
}
