// Package boundaries holds the test that enforces the design card's import rules between the
// plugin's packages: dependencies point one way (cmd → backend → paths → storage; acme and
// solvers below), lego stays behind acme and solvers, and acme and solvers know nothing of Vault.
package boundaries

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt"

const (
	vault = "github.com/hashicorp/vault/"
	lego  = "github.com/go-acme/lego/"
)

// forbidden maps a package (relative to the module, with its subpackages unless listed
// separately) to the import prefixes its files must not use, test files included.
var forbidden = map[string][]string{
	"storage": {module + "/", lego},
	"paths":   {module + "/backend", module + "/cmd", lego},
	"backend": {module + "/cmd", lego},
	"acme":    {vault, module + "/paths", module + "/backend", module + "/storage", module + "/cmd"},
	// The parent side of solvers must not link lego's DNS providers (they live in the child).
	"solvers":          {vault, lego + "v4/providers/", module + "/solvers/provider", module + "/acme", module + "/paths", module + "/backend", module + "/storage", module + "/cmd"},
	"solvers/provider": {vault, module + "/acme", module + "/paths", module + "/backend", module + "/storage", module + "/cmd"},
	"solvers/internal": {vault, module + "/acme", module + "/paths", module + "/backend", module + "/storage", module + "/cmd"},
	"cmd":              {lego, module + "/paths", module + "/storage"},
	// budget is a leaf: the standard library and golang.org/x/net/publicsuffix only.
	"budget": {vault, lego, module + "/", "github.com/hashicorp/"},
}

// rulesFor returns the rules of the most specific entry of forbidden that holds dir.
func rulesFor(dir string) (string, []string) {
	best := ""
	for pkg := range forbidden {
		if (dir == pkg || strings.HasPrefix(dir, pkg+"/")) && len(pkg) > len(best) {
			best = pkg
		}
	}
	return best, forbidden[best]
}

func TestImportBoundaries(t *testing.T) {
	checked := map[string]int{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// e2e is a module of its own; testdata holds no code of ours.
			if path == "e2e" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		if dir == "." || dir == "scripts" {
			return nil
		}
		pkg, rules := rulesFor(dir)
		require.NotEmptyf(t, pkg, "%s: package %s has no import rules in boundaries_test.go: add them", path, dir)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		require.NoError(t, err)
		checked[pkg]++
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range rules {
				if strings.HasPrefix(ip, bad) || ip+"/" == bad {
					t.Errorf("%s imports %s, which package %s must not import", path, ip, pkg)
				}
			}
		}
		return nil
	})
	require.NoError(t, err)
	for pkg := range forbidden {
		require.Positivef(t, checked[pkg], "no Go file of package %s was checked: is the rule stale?", pkg)
	}
}

// TestBoundaryRulesCatch proves the checker is not vacuous: each rule matches the import it names.
func TestBoundaryRulesCatch(t *testing.T) {
	for dir, imp := range map[string]string{
		"storage":              module + "/acme",
		"paths":                module + "/backend",
		"backend":              lego + "v4/log",
		"acme":                 vault + "sdk/logical",
		"solvers":              lego + "v4/providers/dns",
		"solvers/internal/dns": vault + "api",
		"cmd/x":                lego + "v4/acme",
	} {
		_, rules := rulesFor(dir)
		hit := false
		for _, bad := range rules {
			hit = hit || strings.HasPrefix(imp, bad)
		}
		require.Truef(t, hit, "a file in %s importing %s is not caught", dir, imp)
	}
}
