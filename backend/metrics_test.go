package backend

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/paths"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// failuresOf returns the failure counts of m by class.
func failuresOf(m paths.Metrics) map[string]uint64 {
	out := map[string]uint64{}
	for _, f := range m.Failures {
		out[f.Class] = f.Count
	}
	return out
}

// scrapeMetrics reads the metrics path as Vault would serve it.
func scrapeMetrics(t *testing.T, b *backend, s logical.Storage) string {
	t.Helper()
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: paths.MetricsPath, Storage: s})
	require.NoError(t, err)
	require.Equal(t, paths.MetricsContentType, resp.Data[logical.HTTPContentType])
	body, ok := resp.Data[logical.HTTPRawBody].([]byte)
	require.True(t, ok)
	return string(body)
}

// The counters follow what the attempts did: an issued order, a rejected one, a rateLimited
// answer, and a job that then waits for the order budget (the account is held).
func TestMetricsCounters(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	require.Equal(t, Version, b.Metrics().Version)
	require.Len(t, b.Metrics().Failures, len(failureClasses), "every class, zeros included")

	resp := request(t, b, s, logical.CreateOperation, "certs/web1", map[string]any{"role": "web", "domains": "a.example.com"})
	require.Equal(t, storage.StatusValid, dataOf(t, resp)["status"])
	m := b.Metrics()
	require.EqualValues(t, 1, m.OrdersIssued)
	require.Zero(t, m.OrdersFailed)

	ca.fail = &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "no"}
	request(t, b, s, logical.CreateOperation, "certs/web2", map[string]any{"role": "web", "domains": "b.example.com"})
	m = b.Metrics()
	require.EqualValues(t, 1, m.OrdersIssued)
	require.EqualValues(t, 1, m.OrdersFailed)
	require.EqualValues(t, 1, failuresOf(m)[classRejected])
	require.Zero(t, m.RateLimited)

	ca.fail = &acme.Error{Kind: acme.ErrRateLimited, ProblemType: "urn:ietf:params:acme:error:rateLimited", Detail: "too many new orders", RetryAfter: time.Hour}
	request(t, b, s, logical.CreateOperation, "certs/web3", map[string]any{"role": "web", "domains": "c.example.com"})
	m = b.Metrics()
	require.EqualValues(t, 2, m.OrdersFailed)
	require.EqualValues(t, 1, m.RateLimited)
	require.EqualValues(t, 1, failuresOf(m)[classRateLimited])
	require.Zero(t, m.RateLimitWaits)

	// The account is held until the CA's Retry-After: the next certificate waits, which is no
	// failure and no order.
	ca.fail = nil
	resp = request(t, b, s, logical.CreateOperation, "certs/web4", map[string]any{"role": "web", "domains": "d.example.com", "wait": 1})
	require.Contains(t, dataOf(t, resp)["waiting"], "order budget")
	m = b.Metrics()
	require.EqualValues(t, 1, m.RateLimitWaits)
	require.EqualValues(t, 1, m.OrdersIssued)
	require.EqualValues(t, 2, m.OrdersFailed)

	// A failure found before the CA is asked (the role is gone) is a failure, not an order.
	c := loadCert(t, s, "web2")
	c.Role, c.NextAttemptAt = "gone", time.Time{} // and due now
	require.NoError(t, storage.StoreCert(context.Background(), s, "web2", c))
	require.Error(t, b.issue(context.Background(), "web2"))
	m = b.Metrics()
	require.EqualValues(t, 1, failuresOf(m)[classPlan])
	require.EqualValues(t, 2, m.OrdersFailed)

	body := scrapeMetrics(t, b, s)
	for _, line := range []string{
		`vault_letsencrypt_orders_total{result="issued"} 1`,
		`vault_letsencrypt_orders_total{result="failed"} 2`,
		`vault_letsencrypt_failures_total{class="rejected"} 1`,
		`vault_letsencrypt_failures_total{class="rate_limited"} 1`,
		`vault_letsencrypt_failures_total{class="plan"} 1`,
		`vault_letsencrypt_failures_total{class="internal"} 0`,
		`vault_letsencrypt_rate_limit_waits_total 1`,
		`vault_letsencrypt_rate_limited_total 1`,
		`vault_letsencrypt_certificates{role="web",status="valid"} 1`,
		`vault_letsencrypt_certificates_waiting{role="web"} 1`,
		`vault_letsencrypt_info{version="` + Version + `"} 1`,
	} {
		require.Contains(t, body, line+"\n")
	}
	for _, name := range []string{"web1", "web2", "web3", "web4", "example.com", `"main"`} {
		require.NotContains(t, body, name)
	}
}

// failureClass and the last_error summary classify alike.
func TestFailureClassMatchesSummary(t *testing.T) {
	cases := map[string]error{
		classPlan:            fmt.Errorf("%w: role %q no longer exists", errPlan, "web"),
		classInvalid:         &acme.ValidationError{Reason: "too many names"},
		classDNSRecord:       &acme.Error{Kind: acme.ErrDNSRecord, Identifier: "a.test", Detail: "not visible"},
		classChallengeFailed: &acme.Error{Kind: acme.ErrChallengeFailed, Identifier: "a.test"},
		classRateLimited:     fmt.Errorf("new order: %w", &acme.Error{Kind: acme.ErrRateLimited}),
		classRejected:        &acme.Error{Kind: acme.ErrRejected},
		classUntrustedCA:     acme.ErrUntrustedCA,
		classUnreachable:     &acme.Error{Kind: acme.ErrUnreachable},
		classInternal:        fmt.Errorf("something else"),
	}
	require.Len(t, cases, len(failureClasses))
	for class, err := range cases {
		require.Equal(t, class, failureClass(err))
	}
	require.Contains(t, summarizeFailure(cases[classRateLimited]), "rate-limited")
	require.Contains(t, summarizeFailure(cases[classInvalid]), "cannot issue: too many names")
	require.Equal(t, "internal error", summarizeFailure(cases[classInternal]))
}

// The metrics path needs a token: it is not among the unauthenticated paths.
func TestMetricsPathIsAuthenticated(t *testing.T) {
	b, _, _ := getTestBackend(t)
	for _, p := range b.SpecialPaths().Unauthenticated {
		require.False(t, strings.HasPrefix(paths.MetricsPath, strings.TrimSuffix(p, "*")), "unauthenticated pattern %q covers metrics", p)
	}
}

// With 10,000 certificates in the schedule, a scrape through the backend stays well under 100 ms
// and reads no storage.
func TestMetricsTenThousandCertificates(t *testing.T) {
	b, s, _ := getTestBackend(t)
	now := time.Now()
	for i := range 10000 {
		nb := now.Add(-time.Duration(i) * time.Second)
		b.sched.set(fmt.Sprintf("team-%d/cert-%d", i%20, i), time.Time{}, paths.CertSummary{Role: fmt.Sprintf("team-%d", i%20), Status: storage.StatusValid,
			NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour), RenewAt: nb.Add(60 * 24 * time.Hour)})
	}
	counting := &countingStorage{Storage: s}
	var times []time.Duration
	var body string
	for range 5 {
		start := time.Now()
		body = scrapeMetrics(t, b, counting)
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("10,000 certificates, 20 roles: a scrape through the backend takes %s (median of 5)", times[2])
	require.Less(t, times[2], 100*time.Millisecond)
	require.Zero(t, counting.reads.Load(), "no storage reads")
	require.Contains(t, body, `vault_letsencrypt_certificates{role="team-7",status="valid"} 500`+"\n")
}
