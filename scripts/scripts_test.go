// Package scripts holds no Go code: these tests keep scripts/requirements.txt, the one list of every
// external command the scripts, the Makefile, .ci/run and the Go tests run, complete and true.
// scripts/tools.sh installs what it lists and scripts/doctor.sh (make doctor) checks it, so a command
// missing from it would be missing on a fresh machine (as dig once was).
//
//   - TestEveryCommandIsListed scans scripts/*.sh, the Makefile, .ci/run and every Go file for the
//     commands they run (a small shell parser: command positions, pipelines, $(...), backquotes,
//     heredocs, bash -c and trap strings, env/setsid/exec/xargs/find -exec wrappers, functions that
//     run their arguments; exec.Command/CommandContext/LookPath in Go) and fails, naming file:line,
//     for each one the list lacks. Shell builtins and keywords, functions the scripts define, and commands named by
//     a variable are not commands.
//   - TestToolsShInstallsEveryCommand fails when the list names a command scripts/tools.sh cannot
//     install, and, where the command is installed, when its Debian package is not the one listed.
package scripts

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------------------------
// requirements.txt

type requirement struct {
	cmd, purposes, source, what, note string
	line                              int
}

func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd) // go test runs in scripts/
}

func loadRequirements(t testing.TB) (map[string]requirement, []requirement) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "requirements.txt"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]requirement{}
	var list []requirement
	for i, line := range strings.Split(string(b), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 {
			t.Errorf("requirements.txt:%d: want COMMAND FOR SOURCE WHAT [NOTE], got %q", i+1, line)
			continue
		}
		r := requirement{cmd: f[0], purposes: f[1], source: f[2], what: f[3], note: strings.Join(f[4:], " "), line: i + 1}
		if _, dup := byName[r.cmd]; dup {
			t.Errorf("requirements.txt:%d: %s is listed twice", r.line, r.cmd)
		}
		for _, p := range strings.Split(r.purposes, ",") {
			switch p {
			case "all", "demo", "e2e", "lint", "bench", "dist":
			default:
				t.Errorf("requirements.txt:%d: %s: unknown purpose %q (want all, demo, e2e, lint, bench or dist)", r.line, r.cmd, p)
			}
		}
		switch r.source {
		case "apt", "go":
		case "tools":
			if !regexp.MustCompile(`^[a-z0-9.-]+(/[A-Za-z0-9._~-]+)+@v[0-9][^@ ]*$`).MatchString(r.what) {
				t.Errorf("requirements.txt:%d: %s: tools entries name PKG@VERSION, got %q", r.line, r.cmd, r.what)
			}
		default:
			t.Errorf("requirements.txt:%d: %s: unknown source %q (want apt, tools or go)", r.line, r.cmd, r.source)
		}
		byName[r.cmd] = r
		list = append(list, r)
	}
	if len(list) == 0 {
		t.Fatal("requirements.txt lists nothing")
	}
	return byName, list
}

// ---------------------------------------------------------------------------------------------
// The scan

// use is one place that runs an external command.
type use struct {
	cmd  string
	file string // relative to the repository root
	line int
}

func (u use) String() string { return u.file + ":" + strconv.Itoa(u.line) + ": " + u.cmd }

// scanRepo finds every external command the repository's scripts, Makefile, .ci/run and Go files run.
func scanRepo(t testing.TB, root string) []use {
	t.Helper()
	var uses []use
	scripts, err := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts/*.sh found (err %v)", err)
	}
	funcsOf := scriptFunctions(t, scripts)
	for _, p := range append(scripts, filepath.Join(root, ".ci", "run")) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		funcs, execArgs := funcsOf(string(b))
		uses = append(uses, scanShell(string(b), rel, 1, funcs, execArgs)...)
		uses = append(uses, toolPathUses(string(b), rel)...)
	}
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	uses = append(uses, scanMakefile(string(b), "Makefile")...)

	// The docs' sh blocks: e2e/docs_test.go runs them (all but {env} blocks, which it replaces).
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range docs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		uses = append(uses, scanDocBlocks(string(b), rel)...)
	}

	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", ".demo", ".e2e", "vendor", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		u, err := scanGoFile(p, rel)
		if err != nil {
			return err
		}
		uses = append(uses, u...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return uses
}

// ---------------------------------------------------------------------------------------------
// Shell

var shellBuiltins = setOf(`: . [ alias bg bind break builtin caller cd command compgen complete compopt continue
	declare dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill let
	local logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt source suspend
	test times trap true type typeset ulimit umask unalias unset wait`)

var shellKeywords = setOf(`! [[ ]] { } case do done elif else esac fi for function if in select then time until while coproc`)

func setOf(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

var (
	funcDefRe  = regexp.MustCompile(`(?m)^([ \t]*)(?:function[ \t]+)?([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\(\)[ \t]*(\{?)`)
	sourceRe   = regexp.MustCompile(`(?m)^[ \t]*(?:\.|source)[ \t]+\S*?([A-Za-z0-9_.-]+\.sh)\b`)
	runsArgsRe = regexp.MustCompile(`(?m)(?:^|[;{&|(!]|\b(?:then|do|else|setsid|exec|nohup|env|command|time))[ \t]*"\$@"`)
	shiftRe    = regexp.MustCompile(`(?m)(?:^|;)[ \t]*shift(?:[ \t]+([0-9]+))?[ \t]*(?:;|$)`)
	toolPathRe = regexp.MustCompile(`TOOLS_DIR[})]?/bin/([A-Za-z][A-Za-z0-9_-]*)`)
	arrayRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=$`)
	nameRe     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
)

// functionsIn returns the functions a script defines and, for those that run their arguments as a
// command ("$@" in command position, like start_bg NAME CMD...), how many leading arguments they
// shift away first.
func functionsIn(src string) (map[string]bool, map[string]int) {
	funcs := map[string]bool{}
	execArgs := map[string]int{}
	lines := strings.Split(src, "\n")
	lineStart := make([]int, len(lines)+1)
	for i, l := range lines {
		lineStart[i+1] = lineStart[i] + len(l) + 1
	}
	for _, m := range funcDefRe.FindAllStringSubmatchIndex(src, -1) {
		indent := src[m[2]:m[3]]
		name := src[m[4]:m[5]]
		funcs[name] = true
		// The body: the rest of the line for a one-liner "f() { ...; }", else up to the line holding
		// only "}" at the definition's indentation.
		end := strings.IndexByte(src[m[1]:], '\n')
		if end < 0 {
			end = len(src) - m[1]
		}
		rest := strings.TrimSpace(src[m[1] : m[1]+end])
		body := rest
		if !strings.HasSuffix(rest, "}") {
			closing := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(indent) + `\}[ \t]*$`)
			if loc := closing.FindStringIndex(src[m[1]:]); loc != nil {
				body = src[m[1] : m[1]+loc[0]]
			}
		}
		if runsArgsRe.MatchString(body) {
			n := 0
			for _, s := range shiftRe.FindAllStringSubmatch(body, -1) {
				if s[1] == "" {
					n++
				} else {
					k, _ := strconv.Atoi(s[1])
					n += k
				}
			}
			execArgs[name] = n
		}
	}
	return funcs, execArgs
}

// scriptFunctions: for a script's text, the functions defined in it and in the scripts/*.sh it sources.
func scriptFunctions(t testing.TB, scripts []string) func(src string) (map[string]bool, map[string]int) {
	byBase := map[string]string{}
	for _, p := range scripts {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		byBase[filepath.Base(p)] = string(b)
	}
	return func(src string) (map[string]bool, map[string]int) {
		funcs, execArgs := functionsIn(src)
		for _, m := range sourceRe.FindAllStringSubmatch(src, -1) {
			if lib, ok := byBase[m[1]]; ok {
				f, e := functionsIn(lib)
				for k := range f {
					funcs[k] = true
				}
				for k, v := range e {
					execArgs[k] = v
				}
			}
		}
		return funcs, execArgs
	}
}

// toolPathUses: tools run by their path in the tools cache ($LE_TOOLS_DIR/bin/lego), which are
// commands scripts/tools.sh must build even where the path sits in a variable first.
func toolPathUses(src, file string) []use {
	var out []use
	for _, m := range toolPathRe.FindAllStringSubmatchIndex(src, -1) {
		out = append(out, use{cmd: src[m[2]:m[3]], file: file, line: 1 + strings.Count(src[:m[0]], "\n")})
	}
	return out
}

// scanDocBlocks returns the external commands of a Markdown document's run blocks: fences
// "```sh" and "```sh {requires=X}" (not {env}, not {file=NAME}).
func scanDocBlocks(src, file string) []use {
	var out []use
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		info, ok := strings.CutPrefix(lines[i], "```")
		if !ok || strings.HasPrefix(info, "`") {
			continue
		}
		run := info == "sh" || strings.HasPrefix(info, "sh {requires=")
		start := i + 1
		for i++; i < len(lines) && lines[i] != "```"; i++ {
		}
		if run {
			out = append(out, scanShell(strings.Join(lines[start:i], "\n"), file, start+1, map[string]bool{}, map[string]int{})...)
		}
	}
	return out
}

// scanShell returns the external commands a shell script runs. line0 is the line of src's first line.
func scanShell(src, file string, line0 int, funcs map[string]bool, execArgs map[string]int) []use {
	s := &shScanner{src: src, file: file, line0: line0, funcs: funcs, execArgs: execArgs}
	s.parseList(false)
	return s.uses
}

type tokKind int

const (
	tEOF tokKind = iota
	tWord
	tOp    // ; & && || | |& ( ) ;; ;& ;;& newline
	tRedir // < > >> <& >& <> >| &> &>> << <<- <<<
	tArith // (( ... )) as a command
)

type tok struct {
	kind tokKind
	raw  string // source text
	val  string // a word's value with quotes removed; every expansion ($x, $(..), `..`) is \x00
	pos  int
}

const expansion = "\x00"

type heredoc struct {
	delim  string
	quoted bool
	strip  bool
}

type shScanner struct {
	src      string
	pos      int
	file     string
	line0    int
	funcs    map[string]bool
	execArgs map[string]int
	uses     []use
	pending  []heredoc
}

func (s *shScanner) lineAt(pos int) int { return s.line0 + strings.Count(s.src[:pos], "\n") }

func (s *shScanner) record(name string, pos int) {
	s.uses = append(s.uses, use{cmd: name, file: s.file, line: s.lineAt(pos)})
}

// sub scans text found at pos (a bash -c or trap string, a backquoted command, a heredoc body) as a script.
func (s *shScanner) sub(text string, pos int, heredocBody bool) {
	t := &shScanner{src: text, file: s.file, line0: s.lineAt(pos), funcs: s.funcs, execArgs: s.execArgs}
	if heredocBody {
		t.expansionsOnly()
	} else {
		t.parseList(false)
	}
	s.uses = append(s.uses, t.uses...)
}

func (s *shScanner) peek(off int) byte {
	if s.pos+off < len(s.src) {
		return s.src[s.pos+off]
	}
	return 0
}

func isMeta(c byte) bool {
	switch c {
	case ' ', '\t', '\n', ';', '&', '|', '(', ')', '<', '>':
		return true
	}
	return false
}

// next returns the next token, consuming heredoc bodies after a newline.
func (s *shScanner) next() tok {
	if s.pos > len(s.src) {
		s.pos = len(s.src)
	}
	for {
		for s.pos < len(s.src) && (s.src[s.pos] == ' ' || s.src[s.pos] == '\t' || s.src[s.pos] == '\r') {
			s.pos++
		}
		if s.peek(0) == '\\' && s.peek(1) == '\n' {
			s.pos += 2
			continue
		}
		if s.peek(0) == '#' {
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		}
		break
	}
	start := s.pos
	if s.pos >= len(s.src) {
		return tok{kind: tEOF, pos: start}
	}
	c := s.src[s.pos]
	if c == '\n' {
		s.pos++
		s.readHeredocs()
		return tok{kind: tOp, raw: "\n", pos: start}
	}
	// process substitution <(...) / >(...) is a word
	if (c == '<' || c == '>') && s.peek(1) == '(' {
		return s.word()
	}
	// redirections, with an optional file descriptor number
	j := s.pos
	for j < len(s.src) && s.src[j] >= '0' && s.src[j] <= '9' {
		j++
	}
	if j < len(s.src) && (s.src[j] == '<' || s.src[j] == '>') && !(j+1 < len(s.src) && s.src[j+1] == '(') {
		for _, op := range []string{"<<<", "<<-", "<<", "<>", "<&", ">>", ">&", ">|", "<", ">"} {
			if strings.HasPrefix(s.src[j:], op) {
				s.pos = j + len(op)
				return tok{kind: tRedir, raw: op, pos: start}
			}
		}
	}
	for _, op := range []string{";;&", ";;", ";&", "&>>", "&>", "&&", "||", "|&", ";", "&", "|", "((", "(", ")"} {
		if strings.HasPrefix(s.src[s.pos:], op) {
			if op == "&>" || op == "&>>" {
				s.pos += len(op)
				return tok{kind: tRedir, raw: op, pos: start}
			}
			if op == "((" {
				return tok{kind: tOp, raw: "((", pos: start} // not consumed: the parser decides
			}
			s.pos += len(op)
			return tok{kind: tOp, raw: op, pos: start}
		}
	}
	return s.word()
}

// word reads one word, scanning the command substitutions in it.
func (s *shScanner) word() tok {
	start := s.pos
	var val strings.Builder
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case c == '\\':
			if s.pos+1 < len(s.src) && s.src[s.pos+1] != '\n' {
				val.WriteByte(s.src[s.pos+1])
			}
			s.pos += 2
		case c == '\'':
			end := strings.IndexByte(s.src[s.pos+1:], '\'')
			if end < 0 {
				end = len(s.src) - s.pos - 1
			}
			val.WriteString(s.src[s.pos+1 : s.pos+1+end])
			s.pos += end + 2
		case c == '"':
			s.pos++
			s.double(&val)
		case c == '$' || c == '`':
			s.dollar(&val)
		case (c == '<' || c == '>') && s.peek(1) == '(' && s.pos == start:
			s.pos += 2
			s.parseList(true)
			val.WriteString(expansion)
		case c == '(' && s.pos > start && (arrayRe.MatchString(s.src[start:s.pos]) ||
			strings.ContainsRune("@!+*?", rune(s.src[s.pos-1]))):
			// an array assignment a=(...) or an extended glob @(...): words, not commands
			s.pos++
			s.skipParens(&val)
		case isMeta(c):
			return tok{kind: tWord, raw: s.src[start:s.pos], val: val.String(), pos: start}
		default:
			val.WriteByte(c)
			s.pos++
		}
	}
	s.pos = len(s.src) // an unterminated quote or escape may have stepped past the end
	return tok{kind: tWord, raw: s.src[start:], val: val.String(), pos: start}
}

// skipParens reads up to the ")" that closes an array or glob, scanning substitutions in it.
func (s *shScanner) skipParens(val *strings.Builder) {
	depth := 1
	for s.pos < len(s.src) && depth > 0 {
		c := s.src[s.pos]
		switch c {
		case '(':
			depth++
			s.pos++
		case ')':
			depth--
			s.pos++
		case '\'', '"', '$', '`', '\\':
			var ignored strings.Builder
			switch c {
			case '\'':
				end := strings.IndexByte(s.src[s.pos+1:], '\'')
				if end < 0 {
					end = len(s.src) - s.pos - 1
				}
				s.pos += end + 2
			case '"':
				s.pos++
				s.double(&ignored)
			case '\\':
				s.pos += 2
			default:
				s.dollar(&ignored)
			}
		default:
			s.pos++
		}
	}
	val.WriteString(expansion)
}

// double reads the rest of a double-quoted string (after the opening quote).
func (s *shScanner) double(val *strings.Builder) {
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch c {
		case '"':
			s.pos++
			return
		case '\\':
			if s.pos+1 < len(s.src) {
				val.WriteByte(s.src[s.pos+1])
			}
			s.pos += 2
		case '$', '`':
			s.dollar(val)
		default:
			val.WriteByte(c)
			s.pos++
		}
	}
}

// dollar reads an expansion starting at $ or `: $(cmd) and `cmd` are parsed as commands.
func (s *shScanner) dollar(val *strings.Builder) {
	val.WriteString(expansion)
	if s.src[s.pos] == '`' {
		start := s.pos + 1
		end := start
		for end < len(s.src) && s.src[end] != '`' {
			if s.src[end] == '\\' {
				end++
			}
			end++
		}
		if end > len(s.src) {
			end = len(s.src)
		}
		s.sub(s.src[start:end], start, false)
		s.pos = end + 1
		return
	}
	switch {
	case strings.HasPrefix(s.src[s.pos:], "$(("):
		s.pos += 3
		depth := 2
		for s.pos < len(s.src) && depth > 0 {
			switch s.src[s.pos] {
			case '(':
				depth++
			case ')':
				depth--
			}
			s.pos++
		}
	case strings.HasPrefix(s.src[s.pos:], "$("):
		s.pos += 2
		s.parseList(true)
	case strings.HasPrefix(s.src[s.pos:], "${"):
		s.pos += 2
		var ignored strings.Builder
		depth := 1
		for s.pos < len(s.src) && depth > 0 {
			switch c := s.src[s.pos]; c {
			case '{':
				depth++
				s.pos++
			case '}':
				depth--
				s.pos++
			case '"':
				s.pos++
				s.double(&ignored)
			case '\'':
				end := strings.IndexByte(s.src[s.pos+1:], '\'')
				if end < 0 {
					end = len(s.src) - s.pos - 1
				}
				s.pos += end + 2
			case '$', '`':
				s.dollar(&ignored)
			case '\\':
				s.pos += 2
			default:
				s.pos++
			}
		}
	case strings.HasPrefix(s.src[s.pos:], "$'"):
		s.pos += 2
		for s.pos < len(s.src) && s.src[s.pos] != '\'' {
			if s.src[s.pos] == '\\' {
				s.pos++
			}
			s.pos++
		}
		s.pos++
	default: // $name, $1, $@, $?, ...
		s.pos++
		if s.pos < len(s.src) && strings.IndexByte("@*#?-$!0123456789", s.src[s.pos]) >= 0 {
			s.pos++
			return
		}
		for s.pos < len(s.src) && (isAlnum(s.src[s.pos]) || s.src[s.pos] == '_') {
			s.pos++
		}
	}
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// readHeredocs consumes the bodies of the heredocs started on the line just ended.
func (s *shScanner) readHeredocs() {
	for _, h := range s.pending {
		bodyStart := s.pos
		for s.pos < len(s.src) {
			end := strings.IndexByte(s.src[s.pos:], '\n')
			if end < 0 {
				end = len(s.src) - s.pos
			}
			line := s.src[s.pos : s.pos+end]
			next := s.pos + end + 1
			if next > len(s.src) {
				next = len(s.src)
			}
			check := line
			if h.strip {
				check = strings.TrimLeft(check, "\t")
			}
			if check == h.delim {
				if !h.quoted {
					s.sub(s.src[bodyStart:s.pos], bodyStart, true)
				}
				s.pos = next
				break
			}
			s.pos = next
			if s.pos >= len(s.src) && !h.quoted {
				s.sub(s.src[bodyStart:], bodyStart, true)
			}
		}
	}
	s.pending = nil
}

// expansionsOnly scans text as the body of an unquoted heredoc: only $(...) and `...` run commands.
func (s *shScanner) expansionsOnly() {
	var ignored strings.Builder
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '\\':
			s.pos += 2
		case '$', '`':
			s.dollar(&ignored)
		default:
			s.pos++
		}
	}
}

// parseList parses commands up to the end of the text or, with inParens, to the ")" closing a $( or <(.
func (s *shScanner) parseList(inParens bool) {
	const (
		caseSubject = iota
		caseIn
		casePattern
		caseBody
	)
	var (
		words      []tok
		cases      []int
		depth      int  // ( subshells ) opened in this list
		skipUntil  = "" // "]]": inside [[ ... ]]; "do": a for/select header
		funcHeader bool // "name (" seen: the ")" ends the header
	)
	end := func() {
		if len(words) > 0 {
			s.simpleCommand(words)
		}
		words = nil
	}
	for {
		t := s.next()
		if t.kind == tEOF {
			end()
			return
		}
		// case ... in: patterns up to ")" are no commands
		if n := len(cases); n > 0 && cases[n-1] != caseBody {
			switch cases[n-1] {
			case caseSubject:
				if t.kind == tWord {
					cases[n-1] = caseIn
				}
			case caseIn:
				if t.kind == tWord && t.raw == "in" {
					cases[n-1] = casePattern
				}
			case casePattern:
				switch {
				case t.kind == tWord && t.raw == "esac":
					cases = cases[:n-1]
				case t.kind == tOp && t.raw == ")":
					cases[n-1] = caseBody
				case t.kind == tOp && t.raw == "((":
					s.pos++ // a "(" before the pattern
				}
			}
			continue
		}
		if skipUntil != "" {
			if t.kind == tOp && t.raw == "((" {
				s.skipArith()
				continue
			}
			if skipUntil == "]]" && t.kind == tWord && t.raw == "]]" {
				skipUntil = ""
				continue
			}
			if skipUntil == "do" && (t.kind == tOp && (t.raw == ";" || t.raw == "\n") || t.kind == tWord && t.raw == "do") {
				skipUntil = ""
			}
			continue
		}
		switch t.kind {
		case tRedir:
			target := s.next()
			if t.raw == "<<" || t.raw == "<<-" {
				s.pending = append(s.pending, heredoc{
					delim:  target.val,
					quoted: strings.ContainsAny(target.raw, `'"\`),
					strip:  t.raw == "<<-",
				})
			}
		case tOp:
			switch t.raw {
			case "((":
				if len(words) == 0 {
					s.skipArith()
				} else {
					s.pos++
					end()
					depth++
				}
			case "(":
				if len(words) == 1 && nameRe.MatchString(words[0].raw) {
					funcHeader = true // name ( ) { body }
					words = nil
					continue
				}
				end()
				depth++
			case ")":
				if funcHeader {
					funcHeader = false
					continue
				}
				end()
				if depth > 0 {
					depth--
					continue
				}
				if inParens {
					return
				}
			case ";;", ";&", ";;&":
				end()
				if n := len(cases); n > 0 {
					cases[n-1] = casePattern
				}
			default:
				end()
			}
		case tWord:
			if len(words) == 0 {
				switch t.raw {
				case "case":
					cases = append(cases, caseSubject)
					continue
				case "esac":
					if n := len(cases); n > 0 {
						cases = cases[:n-1]
					}
					continue
				case "[[":
					skipUntil = "]]"
					continue
				case "for", "select":
					skipUntil = "do"
					continue
				case "function":
					s.next() // the name
					continue
				}
				if shellKeywords[t.raw] {
					continue
				}
			}
			words = append(words, t)
		}
	}
}

// skipArith skips an arithmetic command (( ... )) at s.pos.
func (s *shScanner) skipArith() {
	depth := 0
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				s.pos++
				return
			}
		}
		s.pos++
	}
}

var assignmentRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=`)

// simpleCommand looks at one simple command's words (redirections removed).
func (s *shScanner) simpleCommand(words []tok) {
	for len(words) > 0 && assignmentRe.MatchString(words[0].raw) {
		words = words[1:]
	}
	if len(words) == 0 {
		return
	}
	s.command(words)
}

// commandName is the name a command word runs: its literal value, or the literal last element of a
// path after a variable ($BIN/vault); "" when a variable names it ("$VAULT_BIN", "$@").
func commandName(w tok) string {
	v := w.val
	if i := strings.LastIndexByte(v, '/'); i >= 0 {
		v = v[i+1:]
	}
	if v == "" || strings.Contains(v, expansion) {
		return ""
	}
	return v
}

func (s *shScanner) command(words []tok) {
	if len(words) == 0 {
		return
	}
	w := words[0]
	name := commandName(w)
	args := words[1:]
	if name == "" {
		return
	}
	// skipOpts drops leading options; withValue lists the options that take a value.
	skipOpts := func(args []tok, withValue string) []tok {
		for len(args) > 0 && strings.HasPrefix(args[0].val, "-") && args[0].val != "-" {
			o := args[0].val
			args = args[1:]
			if o == "--" {
				break
			}
			if strings.Contains(" "+withValue+" ", " "+o+" ") && len(args) > 0 {
				args = args[1:]
			}
		}
		return args
	}
	// afterDashes: the command after a "--" argument (run DISPLAY -- CMD, progress.sh NAME MSG -- CMD).
	afterDashes := func(args []tok) {
		for i, a := range args {
			if a.raw == "--" {
				s.simpleCommand(args[i+1:])
				return
			}
		}
	}
	if s.funcs[name] {
		if n, ok := s.execArgs[name]; ok && n <= len(args) {
			rest := args[n:]
			if len(rest) > 0 && rest[0].raw == "--" {
				rest = rest[1:]
			}
			s.simpleCommand(rest)
			return
		}
		afterDashes(args)
		return
	}
	if shellKeywords[name] || shellBuiltins[name] {
		switch name {
		case "exec":
			s.simpleCommand(skipOpts(args, "-a"))
		case "command":
			if len(args) > 0 && (args[0].val == "-v" || args[0].val == "-V") {
				for _, a := range args[1:] { // command -v NAME: the script means to run NAME
					if n := commandName(a); n != "" {
						s.record(n, a.pos)
					}
				}
				return
			}
			s.command(skipOpts(args, ""))
		case "time", "!":
			s.command(skipOpts(args, ""))
		case "eval", "trap":
			if len(args) > 0 && !strings.HasPrefix(args[0].val, "-") && !strings.Contains(args[0].val, expansion) {
				s.sub(args[0].val, args[0].pos, false)
			}
		}
		return
	}
	if strings.HasSuffix(name, ".sh") { // one of the repository's scripts
		afterDashes(args)
		return
	}
	s.record(name, w.pos)
	switch name {
	case "env":
		rest := skipOpts(args, "-u -C -S")
		for len(rest) > 0 && assignmentRe.MatchString(rest[0].raw) {
			rest = rest[1:]
		}
		s.command(rest)
	case "setsid", "nohup", "stdbuf", "sudo":
		s.command(skipOpts(args, "-u -g -o -e -i"))
	case "nice":
		s.command(skipOpts(args, "-n"))
	case "timeout":
		rest := skipOpts(args, "-s -k --signal --kill-after")
		if len(rest) > 0 {
			s.command(rest[1:])
		}
	case "xargs":
		s.command(skipOpts(args, "-I -n -P -L -s -d -E -a"))
	case "flock":
		rest := skipOpts(args, "-w -E --timeout --conflict-exit-code")
		if len(rest) > 1 {
			if rest[1].val == "-c" && len(rest) > 2 {
				s.sub(rest[2].val, rest[2].pos, false)
			} else {
				s.command(rest[1:])
			}
		}
	case "find":
		for i, a := range args {
			switch a.val {
			case "-exec", "-execdir", "-ok", "-okdir":
				s.command(args[i+1:])
			}
		}
	case "bash", "sh":
		for i, a := range args {
			if a.val == "-c" && i+1 < len(args) {
				if !strings.Contains(args[i+1].val, expansion) {
					s.sub(args[i+1].val, args[i+1].pos, false)
				}
				return
			}
		}
		afterDashes(args)
	}
}

// ---------------------------------------------------------------------------------------------
// Makefile

// makeToShell turns a recipe line into the shell text make runs: $$ is $, $(shell X) is $(X), every
// other make reference ($(VAR), $@, $(@:a=b)) a shell variable.
func makeToShell(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		c := s[i+1]
		switch c {
		case '$':
			b.WriteByte('$')
			i++
		case '(', '{':
			closeC := byte(')')
			if c == '{' {
				closeC = '}'
			}
			depth, j := 0, i+1
			for ; j < len(s); j++ {
				if s[j] == c {
					depth++
				} else if s[j] == closeC {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			inner := s[i+2 : min(j, len(s))]
			if strings.HasPrefix(inner, "shell ") {
				b.WriteString("$(" + makeToShell(inner[6:]) + ")")
			} else {
				b.WriteString("${MAKEVAR}")
			}
			i = j
		default:
			b.WriteString("${MAKEVAR}")
			i++
		}
	}
	return b.String()
}

// scanMakefile scans the recipes (and $(shell ...) elsewhere) as shell.
func scanMakefile(src, file string) []use {
	var uses []use
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		start := i
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line += "\n" + lines[i]
		}
		var text string
		switch {
		case strings.HasPrefix(line, "\t"):
			text = strings.TrimLeft(strings.TrimPrefix(line, "\t"), "@-+")
		case strings.Contains(line, "$(shell "):
			text = line[strings.Index(line, "$(shell "):]
		default:
			continue
		}
		for _, u := range toolPathUses(text, file) {
			u.line += start
			uses = append(uses, u)
		}
		uses = append(uses, scanShell(makeToShell(text), file, start+1, nil, nil)...)
	}
	return uses
}

// ---------------------------------------------------------------------------------------------
// Go

// scanGoFile finds exec.Command("x", ...), exec.CommandContext(ctx, "x", ...), exec.LookPath("x")
// (with "x" a literal, a constant, or the range variable over a literal list), the scripts in
// exec.Command("bash", "-c", "..."), and filepath.Join(ToolsDir(), "bin", "x").
func scanGoFile(path, rel string) ([]use, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, err
	}
	execName := ""
	for _, imp := range f.Imports {
		if imp.Path.Value == `"os/exec"` {
			execName = "exec"
			if imp.Name != nil {
				execName = imp.Name.Name
			}
		}
	}
	var uses []use
	add := func(names []string, at token.Pos) {
		for _, n := range names {
			if i := strings.LastIndexByte(n, '/'); i >= 0 {
				n = n[i+1:]
			}
			if n != "" {
				uses = append(uses, use{cmd: n, file: rel, line: fset.Position(at).Line})
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		pkg, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		switch {
		case execName != "" && pkg.Name == execName && (sel.Sel.Name == "Command" || sel.Sel.Name == "LookPath" || sel.Sel.Name == "CommandContext"):
			i := 0
			if sel.Sel.Name == "CommandContext" {
				i = 1
			}
			if i >= len(call.Args) {
				return true
			}
			names := goStrings(call.Args[i])
			add(names, call.Args[i].Pos())
			for _, name := range names {
				if name != "bash" && name != "sh" {
					continue
				}
				for j := i + 1; j+1 < len(call.Args); j++ {
					if v := goStrings(call.Args[j]); len(v) == 1 && v[0] == "-c" {
						for _, script := range goStrings(call.Args[j+1]) {
							line := fset.Position(call.Args[j+1].Pos()).Line
							uses = append(uses, scanShell(script, rel, line, nil, nil)...)
						}
					}
				}
			}
		case pkg.Name == "filepath" && sel.Sel.Name == "Join" && len(call.Args) >= 3:
			if c, ok := call.Args[0].(*ast.CallExpr); ok {
				if id, ok := c.Fun.(*ast.Ident); ok && strings.Contains(id.Name, "Tools") {
					if v := goStrings(call.Args[1]); len(v) == 1 && v[0] == "bin" {
						add(goStrings(call.Args[2]), call.Args[2].Pos())
					}
				}
			}
		}
		return true
	})
	return uses, nil
}

// goStrings: the string values an expression can have when they are written in the source.
func goStrings(e ast.Expr) []string {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			if v, err := strconv.Unquote(e.Value); err == nil {
				return []string{v}
			}
		}
	case *ast.ParenExpr:
		return goStrings(e.X)
	case *ast.Ident:
		if e.Obj == nil {
			return nil
		}
		switch d := e.Obj.Decl.(type) {
		case *ast.ValueSpec:
			for i, n := range d.Names {
				if n.Name == e.Name && i < len(d.Values) {
					return goStrings(d.Values[i])
				}
			}
		case *ast.AssignStmt:
			if len(d.Rhs) == 1 {
				if u, ok := d.Rhs[0].(*ast.UnaryExpr); ok && u.Op == token.RANGE {
					// for _, name := range []string{"a", "b"}: the value variable takes each
					if len(d.Lhs) == 2 {
						if id, ok := d.Lhs[1].(*ast.Ident); ok && id.Name == e.Name {
							if cl, ok := u.X.(*ast.CompositeLit); ok {
								var out []string
								for _, el := range cl.Elts {
									out = append(out, goStrings(el)...)
								}
								return out
							}
						}
					}
					return nil
				}
			}
			for i, l := range d.Lhs {
				if id, ok := l.(*ast.Ident); ok && id.Name == e.Name && i < len(d.Rhs) && len(d.Lhs) == len(d.Rhs) {
					return goStrings(d.Rhs[i])
				}
			}
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Tests

func TestEveryCommandIsListed(t *testing.T) {
	root := repoRoot(t)
	reqs, list := loadRequirements(t)
	uses := scanRepo(t, root)
	used := map[string]bool{}
	for _, u := range uses {
		if u.cmd == "" {
			continue
		}
		used[u.cmd] = true
		if _, ok := reqs[u.cmd]; !ok {
			t.Errorf("%s: runs %q, which scripts/requirements.txt does not list: add a line saying how "+
				"scripts/tools.sh installs it (apt PACKAGE or tools PKG@VERSION), so make doctor checks it "+
				"and make demo / make test install it", u.file+":"+strconv.Itoa(u.line), u.cmd)
		}
	}
	for _, r := range list {
		if !used[r.cmd] {
			t.Errorf("requirements.txt:%d: %s is listed, but no script, Makefile recipe or Go file runs it: "+
				"remove the line (or, if the scan misses a real use, teach scripts_test.go about it)", r.line, r.cmd)
		}
	}
	if t.Failed() || testing.Verbose() {
		names := make([]string, 0, len(used))
		for n := range used {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Logf("commands found: %s", strings.Join(names, " "))
	}
}

func TestToolsShInstallsEveryCommand(t *testing.T) {
	root := repoRoot(t)
	_, list := loadRequirements(t)
	out, err := exec.Command("bash", filepath.Join(root, "scripts", "tools.sh"), "--plan", "all").CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/tools.sh --plan all: %v\n%s", err, out)
	}
	plan := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, how, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("scripts/tools.sh --plan: unexpected line %q", line)
		}
		plan[name] = how
	}
	for _, r := range list {
		how, ok := plan[r.cmd]
		switch {
		case !ok:
			t.Errorf("requirements.txt:%d: scripts/tools.sh all does not install %s", r.line, r.cmd)
		case strings.HasPrefix(how, "ERROR"):
			t.Errorf("requirements.txt:%d: scripts/tools.sh cannot install %s: %s", r.line, r.cmd, how)
		case r.source == "apt" && how != "apt-get install -y "+r.what:
			t.Errorf("requirements.txt:%d: %s: scripts/tools.sh would run %q, want apt-get install -y %s", r.line, r.cmd, how, r.what)
		case r.source == "tools" && !strings.Contains(how, r.what):
			t.Errorf("requirements.txt:%d: %s: scripts/tools.sh would run %q, want a build of %s", r.line, r.cmd, how, r.what)
		}
	}
	// Where a listed apt command is installed, dpkg must say it comes from the listed package (the
	// original bug: dig was thought to come with bind9-utils).
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Fatal("dpkg-query not found: this project runs on Debian (apt-get install -y dpkg), where it checks which package provides each listed command")
	}
	var apt []requirement
	for _, r := range list {
		if r.source == "apt" {
			apt = append(apt, r)
		}
	}
	owners := debianPackages(apt)
	for _, r := range apt {
		o := owners[r.cmd]
		switch {
		case o.path == "":
			t.Logf("%s is not installed here: package %s not checked", r.cmd, r.what)
		case o.pkg == "":
			t.Logf("%s (%s) belongs to no Debian package here: package %s not checked", r.cmd, o.path, r.what)
		case o.pkg != r.what:
			t.Errorf("requirements.txt:%d: %s (%s) comes from the Debian package %s, not %s", r.line, r.cmd, o.path, o.pkg, r.what)
		}
	}
}

type owner struct{ pkg, path string }

// debianPackages: for each installed command, its file and the package dpkg says that file belongs to.
// With /usr merged, dpkg knows /bin/ls rather than /usr/bin/ls, so every spelling is asked about.
func debianPackages(reqs []requirement) map[string]owner {
	out := map[string]owner{}
	var paths []string
	cmdOf := map[string]string{}
	for _, r := range reqs {
		for _, dir := range []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"} {
			p := filepath.Join(dir, r.cmd)
			st, err := os.Stat(p)
			if err != nil || st.IsDir() {
				continue
			}
			if _, ok := out[r.cmd]; !ok {
				out[r.cmd] = owner{path: p}
			}
			paths = append(paths, p)
			cmdOf[p] = r.cmd
			if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
				paths = append(paths, real)
				cmdOf[real] = r.cmd
			}
		}
	}
	if len(paths) == 0 {
		return out
	}
	b, _ := exec.Command("dpkg-query", append([]string{"-S"}, paths...)...).Output() // exit 1 when some path is unknown
	for _, line := range strings.Split(string(b), "\n") {
		// "coreutils: /bin/ls"; lines naming several packages or a diversion are skipped
		name, file, ok := strings.Cut(line, ": ")
		cmd := cmdOf[file]
		if !ok || cmd == "" || strings.ContainsAny(name, " ,") {
			continue
		}
		if o := out[cmd]; o.pkg == "" {
			out[cmd] = owner{pkg: strings.Split(name, ":")[0], path: file} // "pkg:amd64" -> pkg
		}
	}
	return out
}

// TestScannerFindsCommands shows the scanner finds commands wherever a script can run them, and
// nothing that is not one.
func TestScannerFindsCommands(t *testing.T) {
	cases := []struct {
		name, src string
		want      string // the commands found, sorted, space-separated
	}{
		{"plain", "dig +short @127.0.0.1 -p 53 example.test SOA\n", "dig"},
		{"assignment and pipe", `TSIG="$(sed -n 's/x/y/p' "$f" | head -n1)"` + "\n", "head sed"},
		{"command substitution in a test", `[ -n "$(ss -Hltn "( sport = :$p )")" ]`, "ss"},
		{"backquotes", "x=`nsupdate -v <f`\n", "nsupdate"},
		{"env wrapper", `start_bg() { local n=$1; shift; setsid "$@" >log 2>&1 & }; start_bg pebble env A=1 B=2 "$BIN" -config c`, "env setsid"},
		{"function running its arguments", "wait_for() { local name=\"$1\" secs=\"$2\"; shift 2\n  while ! \"$@\"; do sleep 1; done\n}\ndns_ready() { dig +short x; }\nwait_for named 30 curl -fsS x\nwait_for named 30 dns_ready\n", "curl dig sleep"},
		{"functions are not commands", "log() { printf '%s\\n' \"$*\"; }\nlog hello\n", ""},
		{"builtins and keywords", "set -e; if true; then echo x; fi; while read -r l; do :; done <f; local a; export B; cd /; kill -0 1; wait", ""},
		{"variables are not commands", `"$VAULT_BIN" status; $CMD x; "${arr[@]}"`, ""},
		{"path after a variable", `"$BIN/vault" version`, "vault"},
		{"case patterns", "case \"$w\" in\n  vault) build_vault ;;\n  dig|named) openssl x ;;\n  *) grep y ;;\nesac\n", "build_vault grep openssl"},
		{"for and arithmetic", "for ((i = 0; i < n; i++)); do x=$((i + 1)); done\nfor f in a b; do tail -n1 \"$f\"; done\n", "tail"},
		{"heredoc", "cat >f <<EOF\n$(date -u)\nnamed -g\nEOF\ncat <<'GO'\n$(curl x)\nGO\ntr a b\n", "cat date tr"},
		{"bash -c and trap", "bash -c 'while kill -0 \"$1\"; do sleep 2; done; exec bash \"$2\"' w 1 x\ntrap 'rm -f \"$tmp\"' EXIT\n", "bash rm sleep"},
		{"exec and command -v", "command -v openssl >/dev/null && exec go test ./...\n", "go openssl"},
		{"process substitution", "while read -r a b; do :; done < <(go version -m \"$bin\")\n", "go"},
		{"arrays", "want=(\"$@\")\nsel+=(\"$i\")\nx=( $(seq 1 3) )\n", "seq"},
		{"double brackets", "[[ -f x && $(id -u) -eq 0 ]] && mv a b\n", "id mv"},
		{"subshells", "(cd \"$src\" && go mod tidy) && ( mktemp -d )\n", "go mktemp"},
		{"after --", "progress() { bash p.sh \"$@\"; }\nprogress vet \"msg\" -- golint ./...\nbash scripts/progress.sh x y -- staticcheck ./...\n", "bash golint staticcheck"},
		{"find -exec", "find . -name '*.go' -exec gofmt -l {} + -o -execdir chmod 600 {} \\;\n", "chmod find gofmt"},
		{"redirection targets are not commands", "exec 9>\"$d/.lock\"; flock -n 9; cat <in >out 2>&1\n", "cat flock"},
		{"comments", "# dig is mentioned here\necho x # and nsupdate here\n", ""},
		{"continuation lines", "apt-get install -y \\\n  bind9 && \\\n  named-checkconf x\n", "apt-get named-checkconf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			funcs, execArgs := functionsIn(c.src)
			var got []string
			seen := map[string]bool{}
			for _, u := range scanShell(c.src, "x.sh", 1, funcs, execArgs) {
				if !seen[u.cmd] {
					seen[u.cmd] = true
					got = append(got, u.cmd)
				}
			}
			sort.Strings(got)
			if strings.Join(got, " ") != c.want {
				t.Errorf("scan of %q\n got: %q\nwant: %q", c.src, strings.Join(got, " "), c.want)
			}
		})
	}
}

func TestScannerFindsGoCommands(t *testing.T) {
	src := `package x

import (
	"context"
	"os/exec"
	"path/filepath"
)

const tool = "nsupdate"

func f(ctx context.Context, bin string) {
	_ = exec.Command("dig", "+short")
	_ = exec.CommandContext(ctx, tool)
	for _, n := range []string{"named", "tsig-keygen"} {
		_, _ = exec.LookPath(n)
	}
	_ = exec.Command(bin, "x")
	_ = exec.Command("bash", "-c", "openssl x509 | grep y")
	_ = filepath.Join(ToolsDir(), "bin", "consul-template")
}
`
	p := filepath.Join(t.TempDir(), "x.go")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	uses, err := scanGoFile(p, "x.go")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range uses {
		got = append(got, u.cmd)
	}
	sort.Strings(got)
	want := "bash consul-template dig grep named nsupdate openssl tsig-keygen"
	if strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestScannerFindsMakefileCommands(t *testing.T) {
	src := "X := $(shell git rev-parse HEAD)\n\nlint:\n\t@bash scripts/lint.sh\n\tcd e2e && $(MAKE) x && go vet ./...\n\t-$(TOOLS_DIR)/bin/staticcheck ./...\n\tgo test -run '^$$' . | tee $@.out\n"
	var got []string
	for _, u := range scanMakefile(src, "Makefile") {
		if u.cmd != "" {
			got = append(got, u.cmd)
		}
	}
	sort.Strings(got)
	want := "bash git go go staticcheck staticcheck tee"
	if strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
}

// TestScriptsParse runs bash -n on every script.
func TestScriptsParse(t *testing.T) {
	root := repoRoot(t)
	scripts, _ := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	for _, p := range append(scripts, filepath.Join(root, ".ci", "run")) {
		if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", p, err, out)
		}
	}
}
