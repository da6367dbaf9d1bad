package acme

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"
)

// Sentinel errors. Errors returned by this package wrap one of these when it applies, so callers
// classify with errors.Is.
var (
	// ErrRejected means the CA refused the request for a reason the caller must fix (malformed
	// input, unauthorized or rejected identifier, CAA, missing external account binding, …).
	// Retrying the same request will not help.
	ErrRejected = errors.New("acme: the CA rejected the request")
	// ErrRateLimited means the CA answered rateLimited; RetryAfter tells when to try again.
	ErrRateLimited = errors.New("acme: rate limited by the CA")
	// ErrUntrustedCA means the CA's HTTPS certificate did not verify against the account's roots.
	ErrUntrustedCA = errors.New("acme: the CA's HTTPS certificate is not trusted")
	// ErrUnreachable means the CA could not be reached or answered with a server error; retry later.
	ErrUnreachable = errors.New("acme: the CA is unreachable or failing")
	// ErrChallengeFailed means the CA could not validate a challenge (for example the DNS record
	// was not visible to it).
	ErrChallengeFailed = errors.New("acme: challenge validation failed")
)

// Error carries a classified failure and, when the CA sent one, its problem document.
type Error struct {
	// Kind is one of the sentinel errors above.
	Kind error
	// ProblemType is the ACME problem type URN, when the CA sent a problem document.
	ProblemType string
	// Detail is the CA's human-readable problem detail.
	Detail string
	// RetryAfter is how long the CA asked us to wait (rate limits), zero when unknown.
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

// problem types that mean "fix the request", per RFC 8555 §6.7 and RFC 9773.
var callerProblems = map[string]bool{
	"malformed": true, "invalidContact": true, "unsupportedContact": true,
	"externalAccountRequired": true, "rejectedIdentifier": true, "caa": true,
	"unauthorized": true, "badCSR": true, "badPublicKey": true, "badSignatureAlgorithm": true,
	"userActionRequired": true, "unsupportedIdentifier": true, "accountDoesNotExist": true,
	"badRevocationReason": true, "alreadyRevoked": true, "orderNotReady": false,
}

// challengeProblems are reported when validation itself failed.
var challengeProblems = map[string]bool{
	"dns": true, "connection": true, "incorrectResponse": true, "tls": true,
}

// classify wraps err in an *Error with its kind. Errors that are already classified pass through.
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
	if errors.As(err, &pd) {
		short := strings.TrimPrefix(pd.Type, "urn:ietf:params:acme:error:")
		e := &Error{ProblemType: pd.Type, Detail: pd.Detail, err: err}
		switch {
		case short == "rateLimited":
			e.Kind = ErrRateLimited
		case callerProblems[short]:
			e.Kind = ErrRejected
		case challengeProblems[short]:
			e.Kind = ErrChallengeFailed
		case pd.HTTPStatus >= 500 || short == "serverInternal" || short == "badNonce":
			e.Kind = ErrUnreachable
		case pd.HTTPStatus >= 400:
			e.Kind = ErrRejected
		default:
			e.Kind = ErrUnreachable
		}
		return e
	}
	return classifyTransport(err)
}

// classifyTransport recognises TLS trust failures and network errors.
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
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &netErr) || errors.As(err, &opErr) || strings.Contains(err.Error(), "connection refused") {
		return &Error{Kind: ErrUnreachable, err: err}
	}
	return &Error{Kind: ErrUnreachable, err: err}
}
