package acme

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"
)

// Sentinel errors for failures talking to the CA. Such errors are *Error values whose Kind is one
// of these, so callers classify with errors.Is and read details with errors.As.
var (
	// ErrRejected means the CA refused the request for a reason the caller must fix (malformed
	// input, unauthorized or rejected identifier, CAA, missing external account binding, …).
	// Retrying the same request will not help.
	ErrRejected = errors.New("acme: the CA rejected the request")
	// ErrRateLimited means the CA answered rateLimited; RetryAfter tells when to try again.
	ErrRateLimited = errors.New("acme: rate limited by the CA")
	// ErrUntrustedCA means the CA's HTTPS certificate did not verify against the account's roots.
	ErrUntrustedCA = errors.New("acme: the CA's HTTPS certificate is not trusted")
	// ErrUnreachable means the CA could not be reached, answered with a server error or with
	// something that is not ACME, or did not finish an order or validation within the poll
	// timeout; retry later.
	ErrUnreachable = errors.New("acme: the CA is unreachable or failing")
	// ErrChallengeFailed means the CA could not validate a challenge (for example the DNS record
	// was not visible to it).
	ErrChallengeFailed = errors.New("acme: challenge validation failed")
	// ErrDNSRecord means the DNS-01 solver could not publish a challenge record, or the record did
	// not become visible at the resolvers in time; the CA was not asked to validate it. Detail is
	// this package's own words; the solver's text (redacted by the solvers package, but the
	// operator's business) is only in the chain.
	ErrDNSRecord = errors.New("acme: the DNS-01 challenge record could not be published")
)

// Error carries a classified failure and, when the CA sent one, its problem document.
type Error struct {
	// Kind is one of the sentinel errors above.
	Kind error
	// ProblemType is the ACME problem type URN, when the CA sent a problem document.
	ProblemType string
	// Detail is the CA's human-readable problem detail (ErrDNSRecord: what failed, in this
	// package's words).
	Detail string
	// Identifier is the name the failure is about, when it is about one.
	Identifier string
	// RetryAfter is how long the CA asked us to wait (rate limits, polls it wanted to slow down),
	// zero when unknown.
	RetryAfter time.Duration
	err        error
}

func (e *Error) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	msg := "acme: error"
	if e.Kind != nil {
		msg = e.Kind.Error()
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap exposes both the underlying error and the kind, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.err == nil {
		return []error{e.Kind}
	}
	return []error{e.err, e.Kind}
}

// RetryAfter returns the delay the CA asked for, if err carries one.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return 0, false
}

// ValidationError reports input this package cannot use: a key type name, a private key, a
// directory URL, a CA bundle, an EAB key, a certificate without the fields ARI needs. Callers build
// their own messages from Reason ("key_type: " + ve.Reason) instead of editing Error's text.
type ValidationError struct {
	// Reason says what is wrong and, where it can, what to give instead. It has no "acme: "
	// prefix and never contains key material.
	Reason string
	// Kind is the sentinel the error matches with errors.Is (ErrUnknownKeyType, ErrBadKeyPEM,
	// ErrUnsupportedKey), or nil.
	Kind error
}

// Error returns Reason with the package prefix: "acme: " + Reason.
func (e *ValidationError) Error() string { return "acme: " + e.Reason }

// Unwrap returns Kind.
func (e *ValidationError) Unwrap() error { return e.Kind }

func invalid(kind error, format string, args ...any) *ValidationError {
	return &ValidationError{Reason: fmt.Sprintf(format, args...), Kind: kind}
}

// problemNS prefixes every RFC 8555 problem type. lego exports constants for only three full
// types (acme.BadNonceErr, acme.RateLimitedErr, acme.AlreadyReplacedErr; the first two are used
// below), so the others are matched by their short names.
const problemNS = "urn:ietf:params:acme:error:"

// callerProblems are problem types that mean "fix the request" (RFC 8555 §6.7, RFC 9773 §5).
var callerProblems = map[string]bool{
	"malformed": true, "invalidContact": true, "unsupportedContact": true,
	"externalAccountRequired": true, "rejectedIdentifier": true, "caa": true,
	"unauthorized": true, "badCSR": true, "badPublicKey": true, "badSignatureAlgorithm": true,
	"userActionRequired": true, "unsupportedIdentifier": true, "accountDoesNotExist": true,
	"badRevocationReason": true, "alreadyRevoked": true, "alreadyReplaced": true,
}

// challengeProblems are reported when validation itself failed.
var challengeProblems = map[string]bool{
	"dns": true, "connection": true, "incorrectResponse": true, "tls": true,
}

// classify wraps err in an *Error with its kind. Errors that are already classified pass through;
// errors without a problem document are classified by classifyTransport.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var done *Error
	if errors.As(err, &done) {
		return err
	}
	var rl *acme.RateLimitedError
	if errors.As(err, &rl) {
		d, _ := api.ParseRetryAfter(rl.RetryAfter)
		return &Error{Kind: ErrRateLimited, ProblemType: rl.Type, Detail: rl.Detail, RetryAfter: d,
			err: fmt.Errorf("%w (retry after %s)", err, d.Round(time.Second))}
	}
	var pd *acme.ProblemDetails
	if !errors.As(err, &pd) {
		return classifyTransport(err)
	}
	short := strings.TrimPrefix(pd.Type, problemNS)
	e := &Error{ProblemType: pd.Type, Detail: pd.Detail, err: err}
	switch {
	case pd.Type == acme.RateLimitedErr: // without lego's RateLimitedError wrapper (status not 429)
		e.Kind = ErrRateLimited
	case callerProblems[short]:
		e.Kind = ErrRejected
	case challengeProblems[short]:
		e.Kind = ErrChallengeFailed
	case pd.HTTPStatus >= 500 || short == "serverInternal" || pd.Type == acme.BadNonceErr:
		e.Kind = ErrUnreachable
	case pd.HTTPStatus >= 400:
		e.Kind = ErrRejected
	default:
		e.Kind = ErrUnreachable
	}
	return e
}

// classifyTransport recognises TLS trust failures; any other error without a problem document
// (connection refused, timeout, DNS failure, a body that is not ACME) means the CA is unreachable
// or failing.
func classifyTransport(err error) error {
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	var hostname x509.HostnameError
	if errors.As(err, &unknown) || errors.As(err, &verify) || errors.As(err, &hostname) {
		return &Error{Kind: ErrUntrustedCA, err: fmt.Errorf("%w: set the account's ca_bundle to the PEM root that signs the CA's HTTPS certificate", err)}
	}
	var pd *acme.ProblemDetails
	if errors.As(err, &pd) {
		return classify(err)
	}
	return &Error{Kind: ErrUnreachable, err: err}
}
