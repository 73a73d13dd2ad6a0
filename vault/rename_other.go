//go:build !linux

package vault

// renameNoReplace renames old to new, failing (fs.ErrExist) if new exists.
func renameNoReplace(old, new string) error { return renameChecked(old, new) }
