package backend

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
)

// maxDetailLen bounds how much of a CA's problem detail a summary quotes.
const maxDetailLen = 300

// newFailureRef returns a short random reference that ties a certificate's last_error to the
// plugin log line holding the full (redacted) error.
func newFailureRef() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// failureSummary is what every reader of a certificate (tenants included) sees of a failed
// attempt: what failed, for which name, and the reference of the log line with the details. It
// quotes only this plugin's own words and the CA's problem document (about the tenant's own
// names), never a DNS provider's or transport's text, which may carry credentials, endpoints or
// other tenants' state.
func failureSummary(err error, ref string) string {
	return summarizeFailure(err) + " (ref " + ref + ": the operator finds the details in the plugin log)"
}

func summarizeFailure(err error) string {
	class := failureClass(err) // the same classes count failures in the metrics
	switch class {
	case classPlan:
		return err.Error() // this package's own words
	case classInvalid:
		var ve *acme.ValidationError
		errors.As(err, &ve)
		return "cannot issue: " + ve.Reason
	}
	ae := &acme.Error{} // an unclassified error (or a bare kind) has no details to show
	errors.As(err, &ae)
	problem := ""
	if ae.ProblemType != "" {
		problem = strings.TrimPrefix(ae.ProblemType, "urn:ietf:params:acme:error:")
		if ae.Detail != "" {
			problem += ": " + clipDetail(ae.Detail)
		}
	}
	switch class {
	case classDNSRecord:
		return fmt.Sprintf("DNS-01 for %s: %s", ae.Identifier, ae.Detail)
	case classChallengeFailed:
		msg := "the CA could not validate the challenge"
		if ae.Identifier != "" {
			msg += " for " + ae.Identifier
		}
		if problem != "" {
			msg += ": " + problem
		}
		return msg
	case classRateLimited:
		msg := "the CA rate-limited the account"
		if problem != "" {
			msg += ": " + problem
		}
		if ae.RetryAfter > 0 {
			msg += fmt.Sprintf("; it asked to wait %s", ae.RetryAfter.Round(time.Second))
		}
		return msg
	case classRejected:
		msg := "the CA rejected the order"
		if problem != "" {
			msg += ": " + problem
		}
		return msg
	case classUntrustedCA:
		return "the CA's HTTPS certificate is not trusted by the account's ca_bundle"
	case classUnreachable:
		return "the CA is unreachable or failing; the attempt is retried with backoff"
	}
	return "internal error"
}

// clipDetail shortens a CA's problem detail and keeps it on one line.
func clipDetail(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxDetailLen {
		s = strings.ToValidUTF8(s[:maxDetailLen], "") + "..."
	}
	return s
}
