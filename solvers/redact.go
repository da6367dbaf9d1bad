package solvers

import (
	"errors"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/redact"
)

// redactor cleans text that came from a child: it replaces every encoding of
// every credential value (see redact.Forms) and strips the userinfo, query and
// fragment of URLs. The child cleans its error text before sending it; the
// parent cleans it again as defence in depth, and cleans the child's log
// lines. It is immutable and safe for concurrent use.
type redactor struct {
	r *redact.Redactor
}

func newRedactor(creds map[string]string) *redactor {
	vals := make([]string, 0, len(creds))
	for _, v := range creds {
		vals = append(vals, v)
	}
	return &redactor{r: redact.New(vals...)}
}

// String redacts s and strips the secret-bearing parts of URLs in it.
func (r *redactor) String(s string) string {
	if r == nil {
		return redact.URLs(s)
	}
	return r.r.Clean(s)
}

// Error returns err with every credential value replaced and URLs stripped.
// The result keeps err's *ConfigError-ness but not its chain (the chain could
// hold values).
func (r *redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	var msg string
	if r == nil {
		msg = redact.URLs(err.Error())
	} else {
		msg = r.r.Error(err)
	}
	if IsConfigError(err) {
		return &ConfigError{msg: msg}
	}
	return errors.New(msg)
}
