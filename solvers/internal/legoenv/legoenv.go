// Package legoenv reads, from lego's source in the Go module cache, which
// environment variables each lego DNS provider documents, and renders them as
// the Go table solvers/provider_env.go. It is used by the generator
// solvers/gen_provider_env.go and by the test that fails when the committed
// table no longer matches the lego version in go.mod.
//
// A provider's documented names are the keys of the [Configuration.Credentials]
// and [Configuration.Additional] tables of providers/dns/<code>/<code>.toml;
// the provider names (with aliases) are the cases of
// dns.NewDNSChallengeProviderByName in providers/dns/zz_gen_dns_providers.go.
// This package must not be imported by production code.
package legoenv

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Module is lego's module path.
const Module = "github.com/go-acme/lego/v4"

// Locate returns the directory and version of the lego module the current
// module builds with, from `go list -m`.
func Locate() (dir, version string, err error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}|{{.Version}}", Module).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", "", fmt.Errorf("go list -m %s: %w: %s", Module, err, ee.Stderr)
		}
		return "", "", fmt.Errorf("go list -m %s (is the go command on PATH?): %w", Module, err)
	}
	dir, version, ok := strings.Cut(strings.TrimSpace(string(out)), "|")
	if !ok || dir == "" {
		return "", "", fmt.Errorf("go list -m %s: lego is not in the module cache (run go mod download %s)", Module, Module)
	}
	return dir, version, nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// supplements add names a provider's code reads under a documented rule but
// its table does not list, keyed by provider code.
var supplements = map[string]func([]string) []string{
	// lego v4.35 renamed the rfc2136 variables to DNSUPDATE_* and reads every
	// one also under its former RFC2136_* name (providers/dns/rfc2136/env.go,
	// altEnvNames); the GSS-TSIG ones also as DNSUPDATE_RFC3645_*, which the
	// provider's documentation lists in prose.
	"rfc2136": func(names []string) []string {
		var out []string
		for _, n := range names {
			rest, ok := strings.CutPrefix(n, "DNSUPDATE_")
			if !ok {
				continue
			}
			out = append(out, "RFC2136_"+rest)
			if gss, ok := strings.CutPrefix(rest, "TSIG_GSS_"); ok {
				out = append(out, "DNSUPDATE_RFC3645_"+gss)
			}
		}
		return out
	},
}

// Read returns, for each provider name lego's DNS factory accepts (aliases
// included), the sorted environment variable names lego documents for it.
func Read(legoDir string) (map[string][]string, error) {
	dnsDir := filepath.Join(legoDir, "providers", "dns")
	cases, err := factoryCases(filepath.Join(dnsDir, "zz_gen_dns_providers.go"))
	if err != nil {
		return nil, err
	}
	table := map[string][]string{}
	for _, c := range cases {
		code := c.dir
		if code == "" {
			continue // built outside providers/dns (lego's manual provider)
		}
		raw, err := os.ReadFile(filepath.Join(dnsDir, code, code+".toml"))
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", code, err)
		}
		names, err := documentedNames(string(raw))
		if err != nil {
			return nil, fmt.Errorf("provider %s: %s.toml: %w", code, code, err)
		}
		if sup := supplements[code]; sup != nil {
			names = append(names, sup(names)...)
		}
		names = uniqueSorted(names)
		for _, n := range c.names {
			table[n] = names
		}
	}
	if len(table) == 0 {
		return nil, fmt.Errorf("no providers found in %s", dnsDir)
	}
	return table, nil
}

type factoryCase struct {
	names []string // the case's string literals
	dir   string   // providers/dns/<dir> of the constructor's package
}

// factoryCases parses NewDNSChallengeProviderByName's switch.
func factoryCases(path string) ([]factoryCase, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, err
	}
	imports := map[string]string{} // package name -> providers/dns sub-directory
	for _, is := range f.Imports {
		p, _ := strconv.Unquote(is.Path.Value)
		sub, ok := strings.CutPrefix(p, Module+"/providers/dns/")
		if !ok {
			continue
		}
		name := filepath.Base(sub)
		if is.Name != nil {
			name = is.Name.Name
		}
		imports[name] = sub
	}
	var out []factoryCase
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "NewDNSChallengeProviderByName" {
			fn = fd
		}
	}
	if fn == nil {
		return nil, fmt.Errorf("%s: NewDNSChallengeProviderByName not found", path)
	}
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		cc, ok := n.(*ast.CaseClause)
		if !ok || cc.List == nil {
			return true
		}
		var c factoryCase
		for _, e := range cc.List {
			if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				s, _ := strconv.Unquote(bl.Value)
				c.names = append(c.names, s)
			}
		}
		ast.Inspect(cc, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && c.dir == "" {
					c.dir = imports[id.Name]
				}
			}
			return true
		})
		out = append(out, c)
		return false
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no provider cases found", path)
	}
	return out, nil
}

// documentedNames returns the keys of the [Configuration.Credentials] and
// [Configuration.Additional] tables that are environment variable names
// (quoted prose keys such as 'Application Default Credentials' are skipped).
// It reads the simple TOML lego writes: it fails on anything else in those
// tables, so that a format change is noticed rather than misread.
func documentedNames(text string) ([]string, error) {
	var names []string
	section := ""
	inMulti := ""
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if inMulti != "" {
			if strings.Count(t, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		if n := strings.Count(t, "'''"); n%2 == 1 {
			inMulti = "'''"
			continue
		}
		if n := strings.Count(t, `"""`); n%2 == 1 {
			inMulti = `"""`
			continue
		}
		if strings.HasPrefix(t, "[") {
			section = strings.TrimSpace(strings.Trim(t, "[]"))
			continue
		}
		if section != "Configuration.Credentials" && section != "Configuration.Additional" {
			continue
		}
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		key, _, ok := strings.Cut(t, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: expected KEY = \"description\" in [%s], got %q", i+1, section, t)
		}
		key = strings.TrimSpace(key)
		if strings.HasPrefix(key, "'") || strings.HasPrefix(key, `"`) {
			continue
		}
		if !envNameRE.MatchString(key) {
			return nil, fmt.Errorf("line %d: %q in [%s] is not an environment variable name", i+1, key, section)
		}
		names = append(names, key)
	}
	if inMulti != "" {
		return nil, fmt.Errorf("unterminated multi-line string")
	}
	return names, nil
}

func uniqueSorted(in []string) []string {
	sort.Strings(in)
	out := in[:0]
	for i, s := range in {
		if i == 0 || s != in[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// Render returns the gofmt'd source of solvers/provider_env.go.
func Render(version string, table map[string][]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by \"go run gen_provider_env.go\" from lego's provider documentation; DO NOT EDIT.\n\n")
	b.WriteString("package solvers\n\n")
	fmt.Fprintf(&b, "// providerEnvLegoVersion is the version of %s that providerEnv was generated from.\n", Module)
	fmt.Fprintf(&b, "const providerEnvLegoVersion = %q\n\n", version)
	b.WriteString("// providerEnv maps every provider name lego's dns.NewDNSChallengeProviderByName accepts\n")
	b.WriteString("// (aliases included) to the sorted environment variable names lego documents for it: the keys\n")
	b.WriteString("// of [Configuration.Credentials] and [Configuration.Additional] in providers/dns/<code>/<code>.toml,\n")
	b.WriteString("// plus the former RFC2136_* names the rfc2136 provider still reads.\n")
	b.WriteString("var providerEnv = map[string][]string{\n")
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%q: {", k)
		for i, n := range table[k] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", n)
		}
		b.WriteString("},\n")
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
}

// Generate reads lego at legoDir and renders the table.
func Generate(legoDir, version string) ([]byte, error) {
	t, err := Read(legoDir)
	if err != nil {
		return nil, err
	}
	return Render(version, t)
}
