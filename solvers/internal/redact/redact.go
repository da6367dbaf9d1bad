// Package redact removes secrets from text that crosses from a DNS solver
// child process to the plugin: every common encoding of each credential value
// (literal, URL query and path escaping, Go and JSON quoting, base64, hex), and
// the query, fragment and userinfo of every URL.
//
// It is shared by the parent side (package solvers) and the child side
// (package solvers/provider), which both clean the same text: the child before
// it sends an error over the wire, the parent again as defence in depth. This
// package must not import lego, Vault or the plugin backend.
package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// MinLen is the length of the shortest credential value that is redacted;
// shorter values would mangle ordinary text.
const MinLen = 4

// Text replaces one redacted value.
const Text = "[redacted]"

// Markers that replace the parts of a URL that may carry secrets.
const (
	QueryRemoved    = "[query removed]"
	FragmentRemoved = "[fragment removed]"
	UserinfoRemoved = "[userinfo removed]"
)

// Redactor replaces credential values, in every encoding Forms lists, in
// text. It is immutable and safe for concurrent use. The zero value and nil
// redact nothing.
type Redactor struct {
	r *strings.Replacer
}

// New returns a Redactor for values. Values shorter than MinLen (after
// trimming spaces) are ignored. The Redactor is one strings.Replacer built
// once, with the longest forms first so that a value containing another is
// replaced whole.
func New(values ...string) *Redactor {
	seen := map[string]bool{}
	var forms []string
	for _, v := range values {
		for _, f := range Forms(v) {
			if !seen[f] {
				seen[f] = true
				forms = append(forms, f)
			}
		}
	}
	if len(forms) == 0 {
		return &Redactor{}
	}
	// strings.Replacer tries old strings in argument order at each position.
	sort.Slice(forms, func(i, j int) bool {
		if len(forms[i]) != len(forms[j]) {
			return len(forms[i]) > len(forms[j])
		}
		return forms[i] < forms[j]
	})
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, Text)
	}
	return &Redactor{r: strings.NewReplacer(pairs...)}
}

// String replaces every form of every value in s.
func (r *Redactor) String(s string) string {
	if r == nil || r.r == nil {
		return s
	}
	return r.r.Replace(s)
}

// Clean redacts s and then strips the secret-bearing parts of URLs in it
// (see URLs). Redaction runs first: a value with a space inside a URL query
// would otherwise be cut in two by the URL rule and escape the redactor.
func (r *Redactor) Clean(s string) string {
	return URLs(r.String(s))
}

// Error returns the cleaned text of err: *url.Error values in its chain are
// rebuilt with a sanitized URL, then the text is redacted and URLs in it are
// stripped. It returns "" for a nil err.
func (r *Redactor) Error(err error) string {
	if err == nil {
		return ""
	}
	return r.Clean(rebuildURLErrors(err))
}

// Forms returns the strings under which v may appear in error text: the value
// and its space-trimmed form, each literal, URL query-escaped (with "+" and
// with "%20" for spaces, and as JavaScript's encodeURIComponent leaves
// !'()*), URL path-escaped, Go-quoted (strconv.Quote and QuoteToASCII without
// the quotes), JSON-escaped (with and without HTML escaping, without the
// quotes), base64 (standard and URL alphabets, with and without padding) and
// hex; every form with percent- or \u-escapes also in upper- and lower-case
// hex digits. Forms shorter than MinLen are left out, and so is everything for
// a value whose trimmed form is shorter than MinLen.
func Forms(v string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if len(s) >= MinLen && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	bases := []string{v}
	if t := strings.TrimSpace(v); t != v {
		bases = append(bases, t)
	}
	for _, b := range bases {
		if len(strings.TrimSpace(b)) < MinLen {
			continue
		}
		add(b)
		q := url.QueryEscape(b) // spaces as "+"; a literal "+" is %2B
		add(q)
		pct := strings.ReplaceAll(q, "+", "%20")
		add(pct)
		add(jsURIComponent.Replace(pct))
		add(url.PathEscape(b))
		add(unquote(strconv.Quote(b)))
		add(unquote(strconv.QuoteToASCII(b)))
		if j, err := json.Marshal(b); err == nil {
			add(unquote(string(j)))
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if enc.Encode(b) == nil {
			add(unquote(strings.TrimSuffix(buf.String(), "\n")))
		}
		for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			add(e.EncodeToString([]byte(b)))
		}
		h := hex.EncodeToString([]byte(b))
		add(h)
		add(strings.ToUpper(h))
	}
	for _, f := range out {
		if strings.Contains(f, "%") {
			add(pctHex.ReplaceAllStringFunc(f, strings.ToLower))
			add(pctHex.ReplaceAllStringFunc(f, strings.ToUpper))
		}
		if strings.Contains(f, `\u`) || strings.Contains(f, `\x`) {
			add(escHex.ReplaceAllStringFunc(f, upperHexDigits))
			add(escHex.ReplaceAllStringFunc(f, lowerHexDigits))
		}
	}
	return out
}

var (
	pctHex         = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)
	escHex         = regexp.MustCompile(`\\(u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2})`)
	jsURIComponent = strings.NewReplacer("%21", "!", "%27", "'", "%28", "(", "%29", ")", "%2A", "*")
)

// upperHexDigits upper-cases the hex digits of \uXXXX or \xXX, keeping the
// escape letter.
func upperHexDigits(s string) string { return s[:2] + strings.ToUpper(s[2:]) }
func lowerHexDigits(s string) string { return s[:2] + strings.ToLower(s[2:]) }

func unquote(q string) string {
	if len(q) >= 2 {
		return q[1 : len(q)-1]
	}
	return q
}

// urlRE finds absolute URLs in free text. A URL ends at white space, a quote,
// angle bracket or backtick; the markers URL leaves are part of the URL, so
// that sanitizing twice changes nothing.
var urlRE = regexp.MustCompile("(?i)\\b[a-z][a-z0-9+.-]*://(?:" +
	regexp.QuoteMeta(QueryRemoved) + "|" + regexp.QuoteMeta(FragmentRemoved) + "|" + regexp.QuoteMeta(UserinfoRemoved) +
	"|[^\\s\"'<>`])+")

// URLs returns s with every absolute URL sanitized as by URL.
func URLs(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlRE.ReplaceAllStringFunc(s, URL)
}

// URL removes the userinfo, query and fragment of an absolute URL, textually
// (so that it works on URLs that do not parse):
// https://u:p@host/p?a=b#f becomes https://[userinfo removed]@host/p?[query removed].
// Text without "://" is returned unchanged.
func URL(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	head, rest := raw[:i+3], raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		authority = UserinfoRemoved + authority[at:]
	}
	if q := strings.IndexByte(tail, '?'); q >= 0 {
		tail = tail[:q] + "?" + QueryRemoved
	} else if f := strings.IndexByte(tail, '#'); f >= 0 {
		tail = tail[:f] + "#" + FragmentRemoved
	}
	return head + authority + tail
}

// SanitizeError returns an error whose text is err's with every URL
// sanitized. A *url.Error is rebuilt as a *url.Error with a sanitized URL (and
// its cause's text sanitized); any other error becomes an errors.New of the
// sanitized text, without err's chain (the chain could hold the URL).
// Credential values are not redacted here; use Redactor.Error for that.
func SanitizeError(err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if e, ok := err.(*url.Error); ok {
		ue = e
	}
	if ue != nil {
		var cause error
		if ue.Err != nil {
			cause = errors.New(URLs(ue.Err.Error()))
		}
		return &url.Error{Op: ue.Op, URL: URL(ue.URL), Err: cause}
	}
	return errors.New(URLs(rebuildURLErrors(err)))
}

// rebuildURLErrors returns err's text with the text of every *url.Error in its
// chain replaced by that of the same error with a sanitized URL.
func rebuildURLErrors(err error) string {
	s := err.Error()
	var walk func(e error, depth int)
	walk = func(e error, depth int) {
		if e == nil || depth > 32 {
			return
		}
		if ue, ok := e.(*url.Error); ok {
			clean := (&url.Error{Op: ue.Op, URL: URL(ue.URL), Err: ue.Err}).Error()
			if orig := ue.Error(); orig != clean {
				s = strings.ReplaceAll(s, orig, clean)
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap(), depth+1)
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c, depth+1)
			}
		}
	}
	walk(err, 0)
	return s
}
