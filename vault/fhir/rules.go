package fhir

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"strconv"
	"sync"

	"github.com/medvault/medvault/vault/record"
)

// deriveRev counts the changes to how labels are derived from a resource
// that the embedded lists' bytes do not show: which elements are read for
// codes (QuestionnaireResponse items, Consent provisions, contained
// resources), the meta.security codes honoured, the code systems' aliases
// and how codes are matched. Bump it with any such change, so vaults
// derive their records' labels again (see LabelRules).
const deriveRev = 1

// LabelRules names the rules this build derives sensitivity labels by:
// deriveRev and a hash of the embedded value lists and resource types. Two
// builds with the same name derive the same labels from a resource; a
// vault that stored records under another name derives them again (the
// vault's relabel) so records imported before a list gained a code get the
// label a new import would give them.
func LabelRules() string { return labelRules() }

var labelRules = sync.OnceValue(func() string {
	h := sha256.New()
	// WalkDir visits names in lexical order, so the hash is stable.
	err := fs.WalkDir(embedded, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := embedded.ReadFile(name)
		if err != nil {
			return err
		}
		h.Write([]byte(strconv.Quote(name)))
		h.Write([]byte(strconv.Itoa(len(b)) + ":"))
		h.Write(b)
		return nil
	})
	if err != nil {
		panic("fhir: embedded lists unreadable: " + err.Error()) // the build embeds them
	}
	return "r" + strconv.Itoa(deriveRev) + "-" + hex.EncodeToString(h.Sum(nil)[:12])
})

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
