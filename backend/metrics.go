package backend

import (
	"errors"
	"sync/atomic"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/paths"
)

// Failure classes of an attempt, as its last_error summary words them (summarizeFailure): a small
// fixed set, so the metric labelled with them stays small.
const (
	classPlan            = "plan"             // a role, account or DNS configuration gone or no longer allowing it
	classInvalid         = "invalid"          // the request cannot be issued as it is (acme.ValidationError)
	classDNSRecord       = "dns_record"       // the DNS provider could not publish or show the record
	classChallengeFailed = "challenge_failed" // the CA could not validate the challenge
	classRateLimited     = "rate_limited"     // the CA answered rateLimited
	classRejected        = "rejected"         // the CA rejected the order
	classUntrustedCA     = "untrusted_ca"     // the CA's HTTPS certificate is not trusted
	classUnreachable     = "unreachable"      // the CA is unreachable or failing
	classInternal        = "internal"         // anything else
)

// failureClasses lists every class, in the order the metrics show them.
var failureClasses = [...]string{classPlan, classInvalid, classDNSRecord, classChallengeFailed, classRateLimited,
	classRejected, classUntrustedCA, classUnreachable, classInternal}

// failureClass classifies a failed attempt's error, in the order summarizeFailure checks.
func failureClass(err error) string {
	var ve *acme.ValidationError
	switch {
	case errors.Is(err, errPlan):
		return classPlan
	case errors.As(err, &ve):
		return classInvalid
	case errors.Is(err, acme.ErrDNSRecord):
		return classDNSRecord
	case errors.Is(err, acme.ErrChallengeFailed):
		return classChallengeFailed
	case errors.Is(err, acme.ErrRateLimited):
		return classRateLimited
	case errors.Is(err, acme.ErrRejected):
		return classRejected
	case errors.Is(err, acme.ErrUntrustedCA):
		return classUntrustedCA
	case errors.Is(err, acme.ErrUnreachable):
		return classUnreachable
	}
	return classInternal
}

// counters are the backend's metrics counters, on this node since the backend was created. They
// are safe for concurrent use.
type counters struct {
	ordersIssued, ordersFailed atomic.Uint64
	failures                   [len(failureClasses)]atomic.Uint64 // by index in failureClasses
	budgetWaits                atomic.Uint64
	rateLimited                atomic.Uint64
}

// failure counts a failed attempt with err.
func (c *counters) failure(err error) {
	class := failureClass(err)
	for i, fc := range failureClasses {
		if fc == class {
			c.failures[i].Add(1)
		}
	}
	if errors.Is(err, acme.ErrRateLimited) {
		c.rateLimited.Add(1)
	}
}

// Metrics returns the counters and the plugin's version (paths.Engine).
func (b *backend) Metrics() paths.Metrics {
	m := paths.Metrics{
		Version:        Version,
		OrdersIssued:   b.counters.ordersIssued.Load(),
		OrdersFailed:   b.counters.ordersFailed.Load(),
		RateLimitWaits: b.counters.budgetWaits.Load(),
		RateLimited:    b.counters.rateLimited.Load(),
		Failures:       make([]paths.ClassCount, len(failureClasses)),
	}
	for i, fc := range failureClasses {
		m.Failures[i] = paths.ClassCount{Class: fc, Count: b.counters.failures[i].Load()}
	}
	return m
}
