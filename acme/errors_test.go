package acme

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClassifyProblemTypes(t *testing.T) {
	cases := []struct {
		short  string
		status int
		want   error
	}{
		// RFC 8555 §6.7: the caller must change something.
		{"malformed", 400, ErrRejected},
		{"invalidContact", 400, ErrRejected},
		{"unsupportedContact", 400, ErrRejected},
		{"externalAccountRequired", 403, ErrRejected},
		{"rejectedIdentifier", 400, ErrRejected},
		{"caa", 403, ErrRejected},
		{"unauthorized", 403, ErrRejected},
		{"badCSR", 400, ErrRejected},
		{"badPublicKey", 400, ErrRejected},
		{"badSignatureAlgorithm", 400, ErrRejected},
		{"userActionRequired", 403, ErrRejected},
		{"unsupportedIdentifier", 400, ErrRejected},
		{"accountDoesNotExist", 400, ErrRejected},
		{"badRevocationReason", 400, ErrRejected},
		{"alreadyRevoked", 400, ErrRejected},
		{"alreadyReplaced", 409, ErrRejected}, // RFC 9773 §5
		{"orderNotReady", 403, ErrRejected},
		{"compound", 403, ErrRejected},
		// Validation failures.
		{"dns", 400, ErrChallengeFailed},
		{"connection", 400, ErrChallengeFailed},
		{"incorrectResponse", 403, ErrChallengeFailed},
		{"tls", 400, ErrChallengeFailed},
		// Rate limits, with or without lego's RateLimitedError wrapper.
		{"rateLimited", 403, ErrRateLimited},
		// The CA's trouble: retry later.
		{"serverInternal", 500, ErrUnreachable},
		{"serverInternal", 0, ErrUnreachable},
		{"badNonce", 400, ErrUnreachable},
		{"somethingNew", 503, ErrUnreachable},
		{"somethingNew", 418, ErrRejected},
		{"somethingNew", 0, ErrUnreachable},
	}
	all := []error{ErrRejected, ErrRateLimited, ErrUntrustedCA, ErrUnreachable, ErrChallengeFailed}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d", tc.short, tc.status), func(t *testing.T) {
			pd := &acme.ProblemDetails{Type: problemNS + tc.short, Detail: "detail of " + tc.short, HTTPStatus: tc.status}
			err := classify(fmt.Errorf("acme: some step: %w", pd))
			for _, s := range all {
				assert.Equal(t, s == tc.want, errors.Is(err, s), "errors.Is(err, %v)", s)
			}
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, problemNS+tc.short, e.ProblemType)
			assert.Equal(t, "detail of "+tc.short, e.Detail)
			assert.Contains(t, err.Error(), "acme: some step: ")
			var got *acme.ProblemDetails
			assert.ErrorAs(t, err, &got, "the problem document stays reachable")
		})
	}
}

func TestClassifyLegoConstants(t *testing.T) {
	// The URNs lego exports must be the ones our short names describe.
	assert.Equal(t, problemNS+"rateLimited", acme.RateLimitedErr)
	assert.Equal(t, problemNS+"badNonce", acme.BadNonceErr)
	assert.Equal(t, problemNS+"alreadyReplaced", acme.AlreadyReplacedErr)
}

func TestClassifyRateLimitedRetryAfter(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(time.RFC1123)
	cases := []struct {
		name       string
		retryAfter string
		min, max   time.Duration
		has        bool
	}{
		{"seconds", "120", 120 * time.Second, 120 * time.Second, true},
		{"http-date", date, 80 * time.Second, 91 * time.Second, true},
		{"absent", "", 0, 0, false},
		{"garbage", "soon", 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rl := &acme.RateLimitedError{
				ProblemDetails: &acme.ProblemDetails{Type: acme.RateLimitedErr, Detail: "too many certificates", HTTPStatus: 429},
				RetryAfter:     tc.retryAfter,
			}
			err := classify(fmt.Errorf("acme: new order: %w", rl))
			require.ErrorIs(t, err, ErrRateLimited)
			d, ok := RetryAfter(err)
			assert.Equal(t, tc.has, ok)
			assert.GreaterOrEqual(t, d, tc.min)
			assert.LessOrEqual(t, d, tc.max)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, "too many certificates", e.Detail)
		})
	}
}

func TestClassifyPassesThrough(t *testing.T) {
	assert.NoError(t, classify(nil))
	done := &Error{Kind: ErrChallengeFailed, err: errors.New("acme: validation failed")}
	assert.Same(t, done, classify(done))
	wrapped := fmt.Errorf("outer: %w", done)
	assert.Equal(t, wrapped, classify(wrapped), "a wrapped *Error is not classified again")
	_, ok := RetryAfter(errors.New("plain"))
	assert.False(t, ok)
}

func TestClassifyTransport(t *testing.T) {
	unknownCA := x509.UnknownAuthorityError{}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"unknown authority", &url.Error{Op: "Get", URL: "https://ca", Err: &tls.CertificateVerificationError{Err: unknownCA}}, ErrUntrustedCA},
		{"bare unknown authority", unknownCA, ErrUntrustedCA},
		{"hostname mismatch", &url.Error{Op: "Get", URL: "https://ca", Err: x509.HostnameError{Host: "ca", Certificate: &x509.Certificate{}}}, ErrUntrustedCA},
		{"connection refused", &url.Error{Op: "Get", URL: "https://ca", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, ErrUnreachable},
		{"timeout", &url.Error{Op: "Get", URL: "https://ca", Err: os.ErrDeadlineExceeded}, ErrUnreachable},
		{"not ACME", errors.New("directory missing new registration URL"), ErrUnreachable},
		{"problem document", &acme.ProblemDetails{Type: problemNS + "unauthorized", HTTPStatus: 403}, ErrRejected},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := classifyTransport(fmt.Errorf("acme: fetch directory: %w", tc.err))
			assert.ErrorIs(t, err, tc.want)
			if tc.want == ErrUntrustedCA {
				assert.Contains(t, err.Error(), "ca_bundle", "tells the caller what to change")
			}
			if errors.Is(tc.err, syscall.ECONNREFUSED) {
				assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the cause stays reachable")
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	assert.Equal(t, "acme: rate limited by the CA: slow down", (&Error{Kind: ErrRateLimited, Detail: "slow down"}).Error())
	assert.Equal(t, "acme: error", (&Error{}).Error())
	e := &Error{Kind: ErrUnreachable, err: errors.New("acme: get order: EOF")}
	assert.Equal(t, "acme: get order: EOF", e.Error())
	assert.ErrorIs(t, e, ErrUnreachable)
}

func TestValidationError(t *testing.T) {
	_, err := ParseKeyType("dsa1024")
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, `unknown key type "dsa1024": use one of ec256, ec384, rsa2048, rsa3072, rsa4096`, ve.Reason)
	assert.Equal(t, "acme: "+ve.Reason, err.Error())
	assert.ErrorIs(t, err, ErrUnknownKeyType)
	assert.NotErrorIs(t, err, ErrBadKeyPEM)
	assert.NoError(t, (&ValidationError{Reason: "x"}).Unwrap())
}
