package solvers

import (
	"errors"
	"sort"
	"strings"
)

// minRedactLen is the shortest credential value that is redacted; shorter
// values would mangle ordinary text.
const minRedactLen = 4

const redactedText = "[redacted]"

// redactor replaces credential values in text that came from a child. It is
// immutable and safe for concurrent use.
type redactor struct {
	r *strings.Replacer
}

func newRedactor(creds map[string]string) *redactor {
	vals := make([]string, 0, len(creds))
	seen := map[string]bool{}
	for _, v := range creds {
		for _, s := range []string{v, strings.TrimSpace(v)} {
			if len(s) >= minRedactLen && !seen[s] {
				seen[s] = true
				vals = append(vals, s)
			}
		}
	}
	if len(vals) == 0 {
		return &redactor{}
	}
	// strings.Replacer tries old strings in argument order at each
	// position: longest first so that a value containing another is
	// replaced whole.
	sort.Slice(vals, func(i, j int) bool {
		if len(vals[i]) != len(vals[j]) {
			return len(vals[i]) > len(vals[j])
		}
		return vals[i] < vals[j]
	})
	pairs := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		pairs = append(pairs, v, redactedText)
	}
	return &redactor{r: strings.NewReplacer(pairs...)}
}

func (r *redactor) String(s string) string {
	if r == nil || r.r == nil {
		return s
	}
	return r.r.Replace(s)
}

// Error returns err with every credential value replaced. The result keeps
// err's *ConfigError-ness but not its chain (the chain could hold values).
func (r *redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := r.String(err.Error())
	if IsConfigError(err) {
		return &ConfigError{msg: msg}
	}
	return errors.New(msg)
}
