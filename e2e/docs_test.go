package e2e

// TestDocsCommands runs the documentation: every fenced block of docs/*.md, one bash session per
// document, against real parts (a Vault with the plugin, Pebble, BIND, certbot, consul-template,
// nginx, promtool). What a block's fence says decides what happens to it:
//
//	```sh                 run verbatim with bash -euo pipefail, in document order, in one session
//	```sh {env}           the production values of the variables that differ in the test; NOT run:
//	                      the test exports its own values under the same names, and fails if a
//	                      name is missing on either side
//	```sh {requires=X}    run only when X is there (metrics: the mount serves metrics; dist: the
//	                      Makefile has a dist target); otherwise the subtest fails saying so
//	```LANG {file=NAME}   written to NAME (relative) in the session's directory at that point
//	```text               not run: sample output, "before" configurations of the tools replaced
//	```text {output}      right after a run block: every line (whitespace collapsed) must appear
//	                      in that block's output
//
// Any other fence (console, bash, shell, a bare ```) fails the test, so nothing unrun slips in.
// Each document has a setup here (docSetups) that starts what it needs and provides its variables;
// a document without one fails.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// docBlock is one fenced block of a document.
type docBlock struct {
	Line  int               // line of the opening fence (1-based)
	Info  string            // the info string as written
	Lang  string            // sh, text, hcl, yaml, ...
	Attrs map[string]string // env, output, file=NAME, requires=X
	Body  string
}

func (b docBlock) has(attr string) bool { _, ok := b.Attrs[attr]; return ok }

// kind is what the test does with the block.
func (b docBlock) kind() string {
	switch {
	case b.has("file"):
		return "file"
	case b.Lang == "sh" && b.has("env"):
		return "env"
	case b.Lang == "sh":
		return "run"
	case b.Lang == "text" && b.has("output"):
		return "output"
	default:
		return "text"
	}
}

type docFile struct {
	Name   string // file name, e.g. operator.md
	Blocks []docBlock
}

var fenceRe = regexp.MustCompile("^(\\s*)(```+|~~~+)(.*)$")

// parseDoc reads the fenced blocks of a Markdown document.
func parseDoc(name, src string) (*docFile, error) {
	d := &docFile{Name: name}
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	var cur *docBlock
	var fence string
	var body []string
	for sc.Scan() {
		line++
		text := sc.Text()
		m := fenceRe.FindStringSubmatch(text)
		if cur == nil {
			if m == nil {
				continue
			}
			if m[1] != "" {
				return nil, fmt.Errorf("%s:%d: indented fence %q: start fences at column 0 (the docs test reads only those)", name, line, text)
			}
			b, err := parseInfo(strings.TrimSpace(m[3]))
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, line, err)
			}
			b.Line = line
			cur, fence, body = &b, m[2], nil
			continue
		}
		if m != nil && m[1] == "" && m[2] == fence && strings.TrimSpace(m[3]) == "" {
			cur.Body = strings.Join(body, "\n")
			if len(body) > 0 {
				cur.Body += "\n"
			}
			d.Blocks = append(d.Blocks, *cur)
			cur = nil
			continue
		}
		body = append(body, text)
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: fence never closed", name, cur.Line)
	}
	return d, sc.Err()
}

var (
	attrRe     = regexp.MustCompile(`^([a-z]+)(?:=([A-Za-z0-9._/-]+))?$`)
	knownAttrs = map[string]bool{"env": true, "output": true, "file": true, "requires": true}
)

// parseInfo parses an info string "LANG {attr attr=value}".
func parseInfo(info string) (docBlock, error) {
	b := docBlock{Info: info, Attrs: map[string]string{}}
	lang, rest, _ := strings.Cut(info, " ")
	b.Lang = lang
	rest = strings.TrimSpace(rest)
	if rest != "" {
		if !strings.HasPrefix(rest, "{") || !strings.HasSuffix(rest, "}") {
			return b, fmt.Errorf("fence %q: attributes go in braces: ```sh {env}", info)
		}
		for _, a := range strings.Fields(strings.Trim(rest, "{}")) {
			m := attrRe.FindStringSubmatch(a)
			if m == nil || !knownAttrs[m[1]] {
				return b, fmt.Errorf("fence %q: unknown attribute %q (known: env, output, file=NAME, requires=X)", info, a)
			}
			if (m[1] == "file" || m[1] == "requires") != (m[2] != "") {
				return b, fmt.Errorf("fence %q: %q: file and requires take a value, env and output none", info, a)
			}
			b.Attrs[m[1]] = m[2]
		}
	}
	return b, nil
}

// requirementProbes are the shell tests of what a {requires=X} block needs.
var requirementProbes = map[string]struct{ probe, missing string }{
	"metrics": {
		probe:   `[ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Vault-Token: $(vault print token)" "$VAULT_ADDR/v1/letsencrypt/metrics")" = 200 ]`,
		missing: "the plugin does not serve letsencrypt/metrics (GET answered other than 200): the monitoring section needs the metrics endpoint",
	},
	"dist": {
		probe:   `grep -q '^dist:' "$LE_DOCS_REPO/Makefile"`,
		missing: "the Makefile has no dist target: the upgrades section needs `make dist`",
	},
}

// checkDoc validates a document's fences: known kinds only, output blocks right after a run block,
// relative file names, known requirements.
func checkDoc(d *docFile) error {
	var errs []string
	prevRun := false
	for _, b := range d.Blocks {
		where := fmt.Sprintf("%s:%d: fence %q", d.Name, b.Line, b.Info)
		switch {
		case b.has("file"):
			name := b.Attrs["file"]
			if filepath.IsAbs(name) || filepath.Clean(name) != name || strings.HasPrefix(name, "..") {
				errs = append(errs, where+": file= takes a clean relative name")
			}
			if b.has("env") || b.has("output") {
				errs = append(errs, where+": a file block is neither env nor output")
			}
		case b.Lang == "sh":
			if b.has("output") || (b.has("env") && b.has("requires")) {
				errs = append(errs, where+": sh takes {env}, {requires=X} or nothing")
			}
		case b.Lang == "text":
			if b.has("env") || b.has("requires") {
				errs = append(errs, where+": text takes {output} or nothing")
			}
			if b.has("output") && !prevRun {
				errs = append(errs, where+": an output block must directly follow a run (```sh) block")
			}
		default:
			errs = append(errs, where+": unknown block language "+strconv.Quote(b.Lang)+
				": use ```sh (run), ```sh {env}, ```text (not run) or ```LANG {file=NAME} (written)")
		}
		if r, ok := b.Attrs["requires"]; ok {
			if _, known := requirementProbes[r]; !known {
				errs = append(errs, where+": unknown requirement "+strconv.Quote(r))
			}
		}
		prevRun = b.kind() == "run"
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// envVarRe finds the variables an env block sets.
var envVarRe = regexp.MustCompile(`(?m)^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=`)

// docSession is what a document's setup provides: a working directory, its variables (exported
// in the session) and the values that must never be printed.
type docSession struct {
	Dir     string
	Vars    map[string]string
	Secrets []string
}

// baseVars may be set by a setup without the document's env block naming them (a reader is
// logged in: VAULT_ADDR and the token helper).
var baseVars = map[string]bool{"VAULT_ADDR": true, "VAULT_TOKEN": true}

// docSetups start what each document needs. A document without one fails.
var docSetups = map[string]func(t *testing.T, s *docSession){
	"README.md":                            func(t *testing.T, s *docSession) {},
	"operator.md":                          setupOperatorDoc,
	"tenant.md":                            setupTenantDoc,
	"troubleshooting.md":                   setupTroubleshootingDoc,
	"migrate-certbot.md":                   setupCertbotDoc,
	"migrate-lecertvend.md":                setupLecertvendDoc,
	"migrate-dehydrated.md":                setupDehydratedDoc,
	"migrate-vault-certificate-manager.md": setupVCMDoc,
}

func loadDocs(t *testing.T) []*docFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(RepoRoot(), "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, "no docs/*.md found under %s", RepoRoot())
	sort.Strings(paths)
	var docs []*docFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		d, err := parseDoc(filepath.Base(p), string(b))
		require.NoError(t, err)
		docs = append(docs, d)
	}
	return docs
}

func TestDocsCommands(t *testing.T) {
	start := time.Now()
	docs := loadDocs(t)
	total := 0
	for _, d := range docs {
		t.Run(strings.TrimSuffix(d.Name, ".md"), func(t *testing.T) {
			require.NoError(t, checkDoc(d))
			setup, ok := docSetups[d.Name]
			require.Truef(t, ok, "docs/%s has no setup in e2e/docs_test.go (docSetups): add one that starts what it needs", d.Name)
			runs := 0
			for _, b := range d.Blocks {
				if b.kind() == "run" {
					runs++
				}
			}
			if d.Name != "README.md" {
				require.NotZerof(t, runs, "docs/%s has no ```sh block: every guide shows commands the test runs", d.Name)
			}
			if runs == 0 {
				return
			}
			total += runs
			runDoc(t, d, setup)
		})
	}
	t.Logf("docs: %d documents, %d sh blocks, %s", len(docs), total, time.Since(start).Round(time.Millisecond))
}

// runDoc runs one document's blocks in one bash session and checks exit status, outputs and
// requirements.
func runDoc(t *testing.T, d *docFile, setup func(*testing.T, *docSession)) {
	start := time.Now()
	s := &docSession{Dir: t.TempDir(), Vars: map[string]string{}}
	home := filepath.Join(s.Dir, ".home")
	require.NoError(t, os.MkdirAll(home, 0o700))
	// The session's directory stands for a checkout of the repository: scripts/ and the plugin
	// binary `make build` puts in bin/plugins/.
	require.NoError(t, os.Symlink(filepath.Join(RepoRoot(), "scripts"), filepath.Join(s.Dir, "scripts")))
	require.NoError(t, os.MkdirAll(filepath.Join(s.Dir, "bin", "plugins"), 0o755))
	require.NoError(t, os.Symlink(PluginBin(), filepath.Join(s.Dir, "bin", "plugins", "vault-plugin-secrets-letsencrypt")))
	s.Vars["VAULT_ADDR"], s.Vars["VAULT_TOKEN"] = env.VaultAddr, env.VaultToken
	setup(t, s)

	// Every variable of the env blocks comes from the setup, and the setup sets none the document
	// does not show.
	declared := map[string]bool{}
	for _, b := range d.Blocks {
		if b.kind() == "env" {
			for _, m := range envVarRe.FindAllStringSubmatch(b.Body, -1) {
				declared[m[1]] = true
			}
		}
	}
	for v := range declared {
		_, ok := s.Vars[v]
		require.Truef(t, ok, "docs/%s: the env block sets %s, which the test's setup does not provide", d.Name, v)
	}
	for v := range s.Vars {
		require.Truef(t, declared[v] || baseVars[v], "docs/%s: the setup provides %s, which no ```sh {env} block shows the reader", d.Name, v)
	}

	script, runBlocks := docScript(t, d, s)
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir, ".docs-session.sh"), []byte(script), 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", filepath.Join(s.Dir, ".docs-session.sh"))
	cmd.Dir = s.Dir
	cmd.Env = []string{
		"HOME=" + home, "LANG=C.UTF-8", "TERM=dumb",
		"PATH=" + strings.Join([]string{filepath.Dir(env.VaultBin), filepath.Join(ToolsDir(), "bin"), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}, ":"),
	}
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything the session left running
	output := redact(out.String(), s.Secrets)
	outputs, missing := splitOutputs(output)

	if err != nil {
		last := 0
		for n := range outputs {
			last = max(last, n)
		}
		b := runBlocks[last]
		require.Failf(t, "a block failed", "docs/%s:%d (block %d): %v\n--- its output ---\n%s", d.Name, b.Line, last, err, outputs[last])
	}
	var missingMsgs []string
	for _, r := range missing {
		missingMsgs = append(missingMsgs, requirementProbes[r].missing)
	}
	if len(missingMsgs) > 0 {
		t.Fatalf("docs/%s: every other block ran, but blocks were not run because a requirement is missing "+
			":\n  - %s",
			d.Name, strings.Join(missingMsgs, "\n  - "))
	}

	// Outputs.
	asserted := 0
	for i, b := range d.Blocks {
		if b.kind() != "output" {
			continue
		}
		if r, ok := d.Blocks[i-1].Attrs["requires"]; ok && slices.Contains(missing, r) {
			continue // its block did not run
		}
		n := blockIndex(runBlocks, d.Blocks[i-1].Line)
		got := collapse(outputs[n])
		for _, want := range strings.Split(b.Body, "\n") {
			if strings.TrimSpace(want) == "" {
				continue
			}
			asserted++
			require.Containsf(t, got, collapse(want), "docs/%s:%d: the output of the block at line %d lacks this line:\n%s\n--- its output ---\n%s",
				d.Name, b.Line, d.Blocks[i-1].Line, want, outputs[n])
		}
	}
	notRun := 0
	for _, b := range runBlocks {
		if r, ok := b.Attrs["requires"]; ok && slices.Contains(missing, r) {
			notRun++
		}
	}
	t.Logf("docs/%s: %d sh blocks ran, %d skipped (%d output lines asserted) in %s", d.Name, len(runBlocks)-notRun, notRun, asserted, time.Since(start).Round(time.Millisecond))
}

// docScript builds the session's script: the setup's variables, then every block in document
// order (files written, run blocks between markers, requirement probes around the blocks that
// need them). runBlocks maps a run block's number to the block.
func docScript(t *testing.T, d *docFile, s *docSession) (string, map[int]docBlock) {
	var sb strings.Builder
	names := make([]string, 0, len(s.Vars))
	for k := range s.Vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&sb, "export %s=%s\n", k, shQuote(s.Vars[k]))
	}
	fmt.Fprintf(&sb, "export LE_DOCS_REPO=%s\n", shQuote(RepoRoot()))
	runBlocks := map[int]docBlock{}
	n := 0
	for _, b := range d.Blocks {
		switch b.kind() {
		case "file":
			delim := "DOCS_FILE_" + randHex(t)
			name := b.Attrs["file"]
			fmt.Fprintf(&sb, "mkdir -p %s\ncat > %s <<'%s'\n%s%s\n", shQuote(filepath.Dir(name)), shQuote(name), delim, b.Body, delim)
		case "run":
			n++
			runBlocks[n] = b
			fmt.Fprintf(&sb, "printf '\\n@@docs-block %d@@\\n'\n", n)
			r, needs := b.Attrs["requires"]
			switch {
			case needs:
				fmt.Fprintf(&sb, "if %s; then\n%s\nelse printf '@@docs-missing %s@@\\n'; fi\n", requirementProbes[r].probe, b.Body, r)
			default:
				sb.WriteString(b.Body)
			}
		}
	}
	sb.WriteString("printf '\\n@@docs-done@@\\n'\n")
	return sb.String(), runBlocks
}

var (
	markerRe  = regexp.MustCompile(`(?m)^@@docs-block (\d+)@@$`)
	missingRe = regexp.MustCompile(`@@docs-missing ([a-z]+)@@`)
)

// splitOutputs cuts the session's output at the block markers.
func splitOutputs(out string) (map[int]string, []string) {
	outputs := map[int]string{}
	idx := markerRe.FindAllStringSubmatchIndex(out, -1)
	for i, m := range idx {
		n, _ := strconv.Atoi(out[m[2]:m[3]])
		// Each marker is printed as "\n@@...@@\n": drop those two newlines from the block's output.
		seg := strings.TrimPrefix(out[m[1]:], "\n")
		if i+1 < len(idx) {
			seg = strings.TrimSuffix(out[m[1]:idx[i+1][0]], "\n")
			seg = strings.TrimPrefix(seg, "\n")
		} else {
			seg = strings.TrimSuffix(seg, "\n@@docs-done@@\n")
		}
		outputs[n] = seg
	}
	seen := map[string]bool{}
	var missing []string
	for _, m := range missingRe.FindAllStringSubmatch(out, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			missing = append(missing, m[1])
		}
	}
	return outputs, missing
}

func blockIndex(runBlocks map[int]docBlock, line int) int {
	for n, b := range runBlocks {
		if b.Line == line {
			return n
		}
	}
	return 0
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func randHex(t testing.TB) string {
	var b [8]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 6 {
			s = strings.ReplaceAll(s, sec, "<redacted>")
		}
	}
	return s
}

// ---------------------------------------------------------------------------------------------
// The fences themselves: a block the test would not run fails it.

func TestDocsFencesAreChecked(t *testing.T) {
	for _, tc := range []struct {
		name, src, wantErr string
	}{
		{"console", "```console\n$ vault read x\n```\n", "unknown block language"},
		{"bash", "```bash\nvault read x\n```\n", "unknown block language"},
		{"bare fence", "```\nvault read x\n```\n", "unknown block language"},
		{"hcl without file", "```hcl\npath \"x\" {}\n```\n", "unknown block language"},
		{"unknown attribute", "```sh {skip}\nrm -rf /\n```\n", "unknown attribute"},
		{"absolute file", "```hcl {file=/etc/x.hcl}\nx\n```\n", "clean relative name"},
		{"escaping file", "```hcl {file=../x.hcl}\nx\n```\n", "clean relative name"},
		{"output after text", "```text\na\n```\n```text {output}\na\n```\n", "must directly follow"},
		{"unknown requirement", "```sh {requires=magic}\ntrue\n```\n", "unknown requirement"},
		{"indented fence", "  ```sh\ntrue\n  ```\n", "indented fence"},
		{"unclosed", "```sh\ntrue\n", "never closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := parseDoc("x.md", tc.src)
			if err == nil {
				err = checkDoc(d)
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
	d, err := parseDoc("ok.md", "text\n```sh {env}\nexport A=1\n```\n```sh\necho hi\n```\n```text {output}\nhi\n```\n````hcl {file=p.hcl}\n```\n````\n")
	require.NoError(t, err)
	require.NoError(t, checkDoc(d))
	var kinds []string
	for _, b := range d.Blocks {
		kinds = append(kinds, b.kind())
	}
	require.Equal(t, []string{"env", "run", "output", "file"}, kinds)
	require.Equal(t, "```\n", d.Blocks[3].Body)
}

// ---------------------------------------------------------------------------------------------
// troubleshooting.md names every message family the code can put in a certificate's last_error.

// lastErrorFamilies reads the plugin's sources for what can become last_error: the literal
// messages of summarizeFailure (backend/failures.go), every errPlan message (backend/*.go) and
// every DNS-01 record failure (acme/orders.go). Each becomes a regular expression (%q: a quoted
// placeholder, %s: anything) the troubleshooting guide must match.
func lastErrorFamilies(t *testing.T) map[string]*regexp.Regexp {
	t.Helper()
	root := filepath.Dir(RepoRoot() + "/")
	fams := map[string]*regexp.Regexp{}
	add := func(pos token.Position, format string) {
		format = strings.TrimPrefix(format, "%w: ")
		re := regexp.QuoteMeta(format)
		re = strings.ReplaceAll(re, "%q", `"[^"]*"`)
		re = strings.ReplaceAll(re, "%s", `.+`)
		fams[fmt.Sprintf("%s:%d: %s", filepath.Base(pos.Filename), pos.Line, format)] = regexp.MustCompile(re)
	}
	fset := token.NewFileSet()
	parse := func(p string) *ast.File {
		f, err := parser.ParseFile(fset, p, nil, 0)
		require.NoError(t, err)
		return f
	}
	str := func(e ast.Expr) (string, bool) {
		bl, ok := e.(*ast.BasicLit)
		if !ok || bl.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(bl.Value)
		return s, err == nil
	}

	// summarizeFailure: every message literal (fragments such as ": " and the problem-type prefix
	// are not messages).
	f := parse(filepath.Join(root, "backend", "failures.go"))
	found := false
	ast.Inspect(f, func(n ast.Node) bool {
		fd, ok := n.(*ast.FuncDecl)
		if !ok || fd.Name.Name != "summarizeFailure" {
			return true
		}
		found = true
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			if e, ok := n.(ast.Expr); ok {
				if s, ok := str(e); ok && len(strings.TrimSpace(s)) >= 10 && !strings.HasPrefix(s, "urn:") {
					add(fset.Position(e.Pos()), strings.TrimLeft(s, "; "))
				}
			}
			return true
		})
		return false
	})
	require.True(t, found, "backend/failures.go has no summarizeFailure: update lastErrorFamilies")

	// errPlan messages: fmt.Errorf("%w: ...", errPlan, ...) anywhere in backend/.
	files, err := filepath.Glob(filepath.Join(root, "backend", "*.go"))
	require.NoError(t, err)
	plans := 0
	for _, p := range files {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		ast.Inspect(parse(p), func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			if id, ok := call.Args[1].(*ast.Ident); !ok || id.Name != "errPlan" {
				return true
			}
			if s, ok := str(call.Args[0]); ok {
				plans++
				add(fset.Position(call.Pos()), s)
			}
			return true
		})
	}
	require.NotZero(t, plans, "no errPlan messages found in backend/: update lastErrorFamilies")

	// DNS-01 record failures: the literals given as `what` to dnsRecordError in acme/orders.go.
	of := parse(filepath.Join(root, "acme", "orders.go"))
	dns := 0
	ast.Inspect(of, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.AssignStmt:
			if id, ok := x.Lhs[0].(*ast.Ident); ok && id.Name == "what" {
				ast.Inspect(x.Rhs[0], func(n ast.Node) bool {
					if e, ok := n.(ast.Expr); ok {
						if s, ok := str(e); ok {
							dns++
							add(fset.Position(e.Pos()), strings.TrimSuffix(s, ": "))
						}
					}
					return true
				})
			}
		case *ast.CallExpr:
			if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "dnsRecordError" && len(x.Args) >= 3 {
				if s, ok := str(x.Args[2]); ok {
					dns++
					add(fset.Position(x.Pos()), s)
				}
			}
		}
		return true
	})
	require.NotZero(t, dns, "no DNS-01 record failures found in acme/orders.go: update lastErrorFamilies")
	return fams
}

func TestDocsTroubleshootingCoversLastErrors(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "docs", "troubleshooting.md"))
	require.NoError(t, err)
	doc := string(b)
	fams := lastErrorFamilies(t)
	keys := make([]string, 0, len(fams))
	for k := range fams {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var missing []string
	for _, k := range keys {
		if !fams[k].MatchString(doc) {
			missing = append(missing, k)
		}
	}
	require.Emptyf(t, missing, "docs/troubleshooting.md does not explain these last_error messages (write each as the code does, with \"<placeholders>\" for quoted values):\n%s",
		strings.Join(missing, "\n"))
	t.Logf("docs/troubleshooting.md covers %d last_error message families", len(fams))
}

// ---------------------------------------------------------------------------------------------
// Setups

// acmeVars sets the named variables (all when none are named) to the environment's ACME CA,
// DNS server and zone, as the env blocks name them; DOMAIN is <label>.<zone>.
func acmeVars(s *docSession, label string, names ...string) {
	all := map[string]string{
		"ACME_DIRECTORY": env.PebbleDirectory,
		"ACME_CA_BUNDLE": env.PebbleTLSCA,
		"ACME_PROFILE":   DefaultProfile,
		"DNS_SERVER":     env.DNSAddr,
		"TSIG_KEY_NAME":  env.TSIGKeyName,
		"TSIG_SECRET":    env.TSIGSecret,
		"DNS_ZONE":       env.Zone,
		"DOMAIN":         label + "." + env.Zone,
	}
	if len(names) == 0 {
		for k := range all {
			names = append(names, k)
		}
	}
	for _, k := range names {
		v, ok := all[k]
		if !ok {
			panic("acmeVars: unknown variable " + k)
		}
		s.Vars[k] = v
	}
	s.Secrets = append(s.Secrets, env.TSIGSecret)
}

// startDocVault starts a Vault dev server of the document's own (fixed names such as roles/web
// then meet nothing of other documents or tests), with the environment's plugin registered
// (sha256 and version, as env-up.sh does) and mounted at letsencrypt/. It sets VAULT_ADDR and
// VAULT_TOKEN and returns the environment seen through that server, and its log file.
func startDocVault(t *testing.T, s *docSession) (*Env, string) {
	t.Helper()
	port := freePorts(t, 2)
	token := "docs-" + randHex(t)
	dir := filepath.Join(s.Dir, ".vault")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	cmd := exec.Command(env.VaultBin, "server", "-dev", "-dev-root-token-id="+token, "-dev-no-store-token",
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port), "-dev-plugin-dir="+filepath.Join(env.StateDir, "plugins"))
	cmd.Env = cleanVaultEnv(dir)
	logPath := filepath.Join(dir, "vault.log")
	startLogged(t, cmd, logPath, syscall.SIGTERM, "the document's Vault")
	e := *env
	e.VaultAddr, e.VaultToken = "http://127.0.0.1:"+strconv.Itoa(port), token
	c := e.RootClient(t)
	waitFor(t, 90*time.Second, "the document's Vault dev server", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := Do(ctx, c, http.MethodGet, "sys/health", nil)
		if err != nil {
			return false, err.Error()
		}
		return r.Status == http.StatusOK, r.String()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const plugin = "vault-plugin-secrets-letsencrypt"
	_, _, err := e.CLI(ctx, token, "plugin", "register", "-sha256="+env.PluginSHA256, "-version="+env.PluginVersion, "-command="+plugin, "secret", plugin)
	require.NoError(t, err)
	_, _, err = e.CLI(ctx, token, "secrets", "enable", "-path="+Mount, "-plugin-version="+env.PluginVersion, plugin)
	require.NoError(t, err)
	s.Vars["VAULT_ADDR"], s.Vars["VAULT_TOKEN"] = e.VaultAddr, token
	s.Secrets = append(s.Secrets, token)
	return &e, logPath
}

// setupOperatorDoc: a fresh one-node Vault with integrated storage whose plugin directory is
// empty: the guide installs, registers and mounts the plugin itself, and snapshots storage.
func setupOperatorDoc(t *testing.T, s *docSession) {
	pluginDir := filepath.Join(s.Dir, ".vault-plugins")
	require.NoError(t, os.MkdirAll(pluginDir, 0o755))
	cl := startVaultCluster(t, 1, pluginDir)
	s.Vars["VAULT_ADDR"], s.Vars["VAULT_TOKEN"] = cl.Nodes[0].Addr, cl.RootToken
	s.Secrets = append(s.Secrets, cl.RootToken, cl.UnsealKey)
	s.Vars["PLUGIN_DIR"] = pluginDir
	s.Vars["PLUGIN_VERSION"] = env.PluginVersion
	acmeVars(s, "docs-op")
	s.Vars["NEW_VERSION"] = env.PluginVersion + "-docs.1"
	s.Vars["DIST_DIR"] = filepath.Join(s.Dir, ".dist")
	s.Vars["PLATFORM"] = runtime.GOOS + "_" + runtime.GOARCH
	if exec.Command("grep", "-q", "^dist:", filepath.Join(RepoRoot(), "Makefile")).Run() == nil {
		// The upgrade section installs a newer release: make dist of the same source, for this
		// platform only, with another version stamped in.
		build := exec.Command("make", "-C", RepoRoot(), "dist", "VERSION="+s.Vars["NEW_VERSION"],
			"PLATFORMS="+runtime.GOOS+"/"+runtime.GOARCH, "DIST_DIR="+s.Vars["DIST_DIR"])
		out, err := build.CombinedOutput()
		require.NoError(t, err, "make dist: %s", out)
	}
}

// setupTenantDoc: the operator's part (account, DNS configuration, role team-a, a policy on
// certs/team-a/*) is done, and VAULT_TOKEN is a token with only that policy.
func setupTenantDoc(t *testing.T, s *docSession) {
	e, _ := startDocVault(t, s)
	c := e.RootClient(t)
	team := "team-a"
	domain := team + "." + env.Zone
	e.SetupIssuer(t, c, team, nil, map[string]any{
		"allowed_domains": domain, "allow_bare_domains": true, "allow_subdomains": true,
		"allowed_cert_names": team + "/*",
		// The guide renews right after issuing; the default interval would answer 429.
		"forced_renewal_interval": "0s",
	})
	policy := fmt.Sprintf(`path "letsencrypt/certs/%[1]s/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "letsencrypt/renew/%[1]s/*" { capabilities = ["update"] }
path "letsencrypt/revoke/%[1]s/*" { capabilities = ["update"] }
`, team)
	MustWrite(t, c, "sys/policies/acl/"+team, map[string]any{"policy": policy})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _, err := e.CLI(ctx, e.VaultToken, "token", "create", "-policy="+team, "-ttl=1h", "-field=token")
	require.NoError(t, err)
	token := strings.TrimSpace(out)
	s.Vars["VAULT_TOKEN"] = token
	s.Secrets = append(s.Secrets, token)
	s.Vars["TEAM"] = team
	s.Vars["DOMAIN"] = domain
	s.Vars["TLS_DIR"] = filepath.Join(s.Dir, "tls")
}

// setupTroubleshootingDoc: certificate web/www, whose DNS configuration "bind" has a wrong TSIG
// secret, failed its first attempt; the guide finds out why and fixes it.
func setupTroubleshootingDoc(t *testing.T, s *docSession) {
	e, vaultLog := startDocVault(t, s)
	c := e.RootClient(t)
	acmeVars(s, "docs-ts", "DOMAIN", "DNS_SERVER", "TSIG_KEY_NAME", "TSIG_SECRET")
	e.CreateAccount(t, c, "le", nil)
	creds := e.TSIGCredentials()
	creds["RFC2136_TSIG_SECRET"] = strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(randHex(t)+randHex(t))), "=") + "="
	e.CreateDNS(t, c, "bind", map[string]any{"credentials": creds, "propagation_timeout": "10s"})
	CreateRole(t, c, "web", map[string]any{"account": "le", "dns": "bind", "allowed_domains": s.Vars["DOMAIN"],
		"allow_bare_domains": true, "allow_subdomains": true, "allowed_cert_names": "web/*"})
	r := MustDo(t, c, http.MethodPut, Mount+"/certs/web/www", map[string]any{"role": "web", "domains": "www." + s.Vars["DOMAIN"], "wait": "0s"})
	require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "%s", r)
	waitAttemptFailed(t, c, "web/www", 2*time.Minute)
	s.Vars["VAULT_LOG"] = vaultLog
}

// setupCertbotDoc: certbot has obtained a certificate (its account and live/ directory) from the
// environment's Pebble, answering HTTP-01 itself on Pebble's validation port.
func setupCertbotDoc(t *testing.T, s *docSession) {
	e, _ := startDocVault(t, s)
	domain := http01Name(t, "www")
	base := filepath.Join(s.Dir, ".certbot")
	func() {
		http01PortMu.Lock()
		defer http01PortMu.Unlock()
		runCertbot(t, base, env.PebbleTLSCA, "certonly", "--standalone", "--preferred-challenges", "http",
			"--http-01-address", "127.0.0.1", "--http-01-port", env.PebbleHTTPPort,
			"--server", env.PebbleDirectory, "--agree-tos", "--register-unsafely-without-email", "-d", domain)
	}()
	// What certbot's deploy hook wrote.
	live := filepath.Join(base, "config", "live", domain)
	fullchain, err := os.ReadFile(filepath.Join(live, "fullchain.pem"))
	require.NoError(t, err)
	key, err := os.ReadFile(filepath.Join(live, "privkey.pem"))
	require.NoError(t, err)
	MustWrite(t, e.RootClient(t), "secret/data/tls/"+domain, map[string]any{"data": map[string]any{"cert": string(fullchain), "key": string(key)}})
	acmeVars(s, "", "ACME_CA_BUNDLE", "ACME_PROFILE", "DNS_SERVER", "TSIG_KEY_NAME", "TSIG_SECRET", "DNS_ZONE")
	s.Vars["CERTBOT_DIR"] = filepath.Join(base, "config")
	s.Vars["DOMAIN"] = domain
	s.Vars["TLS_DIR"] = filepath.Join(s.Dir, "tls")
}

// setupLecertvendDoc: lecertvend's KV v2 layout, secret/lecertvend/<team>/<domain>/<secret>,
// holding certificates issued by the plugin under other names, and lecertvend's own credentials.
func setupLecertvendDoc(t *testing.T, s *docSession) {
	e, _ := startDocVault(t, s)
	c := e.RootClient(t)
	acmeVars(s, "team-a")
	is := e.SetupIssuer(t, c, "source", nil, map[string]any{"allowed_domains": s.Vars["DOMAIN"], "allow_subdomains": true, "allowed_cert_names": "source/*"})
	for _, name := range []string{"www", "api"} {
		src := IssueCert(t, c, "source/"+name, map[string]any{"role": is.Role, "domains": name + "." + s.Vars["DOMAIN"]}, 2*time.Minute)
		chain := ""
		for _, ca := range src.Data["ca_chain"].([]any) {
			chain += fmt.Sprint(ca)
		}
		MustWrite(t, c, "secret/data/lecertvend/team-a/"+s.Vars["DOMAIN"]+"/"+name, map[string]any{"data": map[string]any{
			"cert": strings.TrimSpace(fmt.Sprint(src.Data["certificate"])) + "\n" + chain, "key": src.Data["private_key"]}})
		MustDo(t, c, http.MethodDelete, Mount+"/certs/source/"+name, nil)
	}
	MustWrite(t, c, "secret/data/lecertvend/team-a/lecertvend", map[string]any{"data": map[string]any{"cfToken": "cf-" + randHex(t)}})
}

// setupDehydratedDoc: dehydrated's domains.txt and certs/<name>/ (certificates issued by the
// plugin under other names), and nginx running (its own prefix, pid file and configuration,
// including the sites directory the guide writes to).
func setupDehydratedDoc(t *testing.T, s *docSession) {
	e, _ := startDocVault(t, s)
	c := e.RootClient(t)
	acmeVars(s, "docs-dh")
	domain := s.Vars["DOMAIN"]
	dir := filepath.Join(s.Dir, ".dehydrated")
	is := e.SetupIssuer(t, c, "source", nil, map[string]any{"allowed_domains": domain, "allow_bare_domains": true,
		"allow_subdomains": true, "allowed_cert_names": "source/*", "key_type": "ec384"})
	lines := [][]string{{"www." + domain, domain}, {"api." + domain}}
	var txt strings.Builder
	txt.WriteString("# one certificate a line\n")
	for _, names := range lines {
		txt.WriteString(strings.Join(names, " ") + "\n")
		src := IssueCert(t, c, "source/"+names[0], map[string]any{"role": is.Role, "domains": strings.Join(names, ",")}, 2*time.Minute)
		certDir := filepath.Join(dir, "certs", names[0])
		require.NoError(t, os.MkdirAll(certDir, 0o700))
		chain := ""
		for _, ca := range src.Data["ca_chain"].([]any) {
			chain += strings.TrimSpace(fmt.Sprint(ca)) + "\n"
		}
		leaf := strings.TrimSpace(fmt.Sprint(src.Data["certificate"])) + "\n"
		for name, content := range map[string]string{"cert.pem": leaf, "chain.pem": chain, "fullchain.pem": leaf + chain,
			"privkey.pem": strings.TrimSpace(fmt.Sprint(src.Data["private_key"])) + "\n"} {
			require.NoError(t, os.WriteFile(filepath.Join(certDir, name), []byte(content), 0o600))
		}
		MustDo(t, c, http.MethodDelete, Mount+"/certs/source/"+names[0], nil)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "domains.txt"), []byte(txt.String()), 0o644))
	s.Vars["DEHYDRATED_DIR"] = dir
	nginx := nginxBinary(t)
	prefix := filepath.Join(s.Dir, ".nginx")
	sites := filepath.Join(prefix, "sites")
	require.NoError(t, os.MkdirAll(filepath.Join(prefix, "logs"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755))
	require.NoError(t, os.MkdirAll(sites, 0o755))
	conf := filepath.Join(prefix, "nginx.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log;
events { worker_connections 64; }
http {
  access_log %[1]s/logs/access.log;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  include %[2]s/*.conf;
}
`, prefix, sites)), 0o644))
	cmd := exec.Command(nginx, "-p", prefix, "-c", conf)
	startLogged(t, cmd, filepath.Join(prefix, "logs", "stderr.log"), syscall.SIGQUIT, "the dehydrated guide's nginx")
	waitFor(t, 30*time.Second, "nginx pid file", func() (bool, string) {
		_, err := os.Stat(filepath.Join(prefix, "nginx.pid"))
		return err == nil, fmt.Sprint(err)
	})
	s.Vars["NGINX_CONF"] = conf
	s.Vars["NGINX_SITES"] = sites
	s.Vars["TLS_DIR"] = filepath.Join(s.Dir, "tls")
	s.Vars["HTTPS_LISTEN"] = "127.0.0.1:" + strconv.Itoa(freePort(t))
}

// setupVCMDoc: a Vault of its own; the guide's commands set up the plugin's side.
func setupVCMDoc(t *testing.T, s *docSession) {
	startDocVault(t, s)
	acmeVars(s, "docs-vcm")
}

// The session machinery without a Vault: files written in order, state carried between blocks,
// outputs split per block, a requirement's probe keeping its block from running when it is missing.
func TestDocsSessionScript(t *testing.T) {
	src := "```sh {env}\nGREETING=hello\n```\n" +
		"```text {file=conf/a.txt}\nfirst $NOT_EXPANDED\n```\n" +
		"```sh\nN=41\ncat conf/a.txt\necho \"$GREETING\"\n```\n" +
		"```text {output}\nfirst $NOT_EXPANDED\nhello\n```\n" +
		"```sh {requires=metrics}\necho never\n```\n" +
		"```sh\necho $((N + 1))\n```\n"
	d, err := parseDoc("t.md", src)
	require.NoError(t, err)
	require.NoError(t, checkDoc(d))
	// No Vault answers there: the metrics requirement is missing.
	s := &docSession{Dir: t.TempDir(), Vars: map[string]string{"GREETING": "it's \"quoted\"", "VAULT_ADDR": "http://127.0.0.1:1"}}
	script, runBlocks := docScript(t, d, s)
	require.Len(t, runBlocks, 3)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	outputs, missing := splitOutputs(string(out))
	require.Equal(t, "first $NOT_EXPANDED\nit's \"quoted\"\n", outputs[1])
	require.Equal(t, []string{"metrics"}, missing)
	require.Equal(t, "42\n", outputs[3])
	require.NotContains(t, string(out), "never")
}
