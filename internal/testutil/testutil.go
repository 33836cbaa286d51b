// Package testutil holds what the tests of several packages share: the repository's folders,
// the expectation files of testdata/cases and testdata/models/fixtures read into one form,
// keyword matching as those files define it, and a reading of tensors that does not go
// through onnxio, so that tests can check onnxio's output with code other than its own.
//
// It is imported only by tests.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// RepoRoot returns the folder that holds the module's go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testutil: no go.mod above the test's folder")
		}
		dir = parent
	}
}

// SharedDir returns the project's shared folder (models, cases, goldens): $CONVCOV_SHARED
// when set, else ../shared next to the repository. It returns "" when neither exists.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CONVCOV_SHARED")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(RepoRoot(t)), "shared")
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return ""
	}
	return dir
}

// SHA256 returns the hex sha256 of the file at path.
func SHA256(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MissingKeywords returns the entries of keywords that msg does not contain, compared
// case-insensitively. An entry "a|b" is satisfied by either a or b, as the expectation
// files define it.
func MissingKeywords(msg string, keywords []string) []string {
	low := strings.ToLower(msg)
	var missing []string
	for _, k := range keywords {
		found := false
		for _, alt := range strings.Split(k, "|") {
			if strings.Contains(low, strings.ToLower(alt)) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, k)
		}
	}
	return missing
}

// MentionsName reports whether msg contains name as a whole word, where names are made of
// letters, digits, '_', '.' and '/': "dw" is mentioned by `node "dw"` but not by "dw.weight"
// or "dw_k3".
func MentionsName(msg, name string) bool {
	re := regexp.MustCompile(`(^|[^\w./])` + regexp.QuoteMeta(name) + `($|[^\w./])`)
	return re.MatchString(msg)
}
