package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/budget"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// An account whose order budget is spent makes further certificates wait, visibly and without
// counting a failed attempt, and orders them as the budget refills: never more orders than it allows.
func TestOrderBudgetMakesOrdersWait(t *testing.T) {
	b, s, ca := getInitializedBackend(t)
	setup(t, b, s)
	resp := request(t, b, s, logical.UpdateOperation, "accounts/main", map[string]any{"order_limit": "2/3s"})
	require.False(t, resp.IsError(), resp.Error())

	start := time.Now()
	for i := range 4 {
		resp := request(t, b, s, logical.CreateOperation, fmt.Sprintf("certs/web%d", i), map[string]any{"role": "web", "domains": fmt.Sprintf("n%d.example.com", i), "wait": 5})
		if i < 2 {
			require.Equal(t, storage.StatusValid, dataOf(t, resp)["status"], "within the budget")
			continue
		}
		require.Equal(t, storage.StatusPending, dataOf(t, resp)["status"])
		require.Contains(t, dataOf(t, resp)["waiting"], `waiting for the order budget of account "main": new orders per account (2/3s)`)
		c := loadCert(t, s, fmt.Sprintf("web%d", i))
		require.Zero(t, c.Attempts, "a wait is not a failed attempt")
		require.Empty(t, c.LastError)
	}
	require.EqualValues(t, 2, ca.orders.Load())
	sums := b.CertificateSummaries()
	require.Contains(t, sums["web3"].Waiting, "order budget")

	// The budget refills one order per 1.5 s (up to orderLatency later than its model, as the CA's
	// bucket may: budget.SetLatency): web2 and web3 are issued by the scheduler, in turn.
	require.Eventually(t, func() bool {
		return loadCert(t, s, "web2").Current() && loadCert(t, s, "web3").Current()
	}, 5*time.Second+orderLatency, 10*time.Millisecond, "the waiting certificates are issued as the budget refills")
	require.EqualValues(t, 4, ca.orders.Load(), "one order each, no order beyond the budget")
	require.GreaterOrEqual(t, time.Since(start), 2900*time.Millisecond, "the fourth order waited for its token")
	require.Empty(t, b.CertificateWaiting("web3"))

	// The budget survives a restart: a new backend over the same storage knows it is spent.
	b2 := initializedBackend(t, s, ca)
	resp = request(t, b2, s, logical.CreateOperation, "certs/web9", map[string]any{"role": "web", "domains": "n9.example.com", "wait": 2})
	require.Contains(t, dataOf(t, resp)["waiting"], "order budget", "the stored budget is restored")
}

// A rateLimited answer holds the account until the CA's Retry-After: no further order is sent.
func TestRateLimitedHoldsTheAccount(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	ca.fail = &acme.Error{Kind: acme.ErrRateLimited, ProblemType: "urn:ietf:params:acme:error:rateLimited", Detail: "too many new orders", RetryAfter: time.Hour}
	request(t, b, s, logical.CreateOperation, "certs/web1", map[string]any{"role": "web", "domains": "a.example.com"})
	require.EqualValues(t, 1, ca.orders.Load())
	require.Contains(t, loadCert(t, s, "web1").LastError, "rate-limited")
	ca.fail = nil
	resp := request(t, b, s, logical.CreateOperation, "certs/web2", map[string]any{"role": "web", "domains": "b.example.com", "wait": 1})
	require.Equal(t, storage.StatusPending, dataOf(t, resp)["status"])
	require.Contains(t, dataOf(t, resp)["waiting"], "order budget")
	require.EqualValues(t, 1, ca.orders.Load(), "nothing sent while the CA asked to wait")
}

// A failed validation spends the name's failed-authorization budget; when it is gone, the name
// waits instead of failing again at the CA.
func TestFailedValidationsBudget(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	request(t, b, s, logical.UpdateOperation, "accounts/main", map[string]any{"failed_authorization_limit": "1/1h"})
	ca.fail = &acme.Error{Kind: acme.ErrChallengeFailed, Identifier: "a.example.com", ProblemType: "urn:ietf:params:acme:error:dns", Detail: "NXDOMAIN"}
	request(t, b, s, logical.CreateOperation, "certs/web1", map[string]any{"role": "web", "domains": "a.example.com"})
	require.EqualValues(t, 1, ca.orders.Load())
	ca.fail = nil
	// Another certificate with the same name waits; one with another name does not.
	resp := request(t, b, s, logical.CreateOperation, "certs/web2", map[string]any{"role": "web", "domains": "a.example.com", "wait": 1})
	require.Contains(t, dataOf(t, resp)["waiting"], "a.example.com")
	resp = request(t, b, s, logical.CreateOperation, "certs/web3", map[string]any{"role": "web", "domains": "b.example.com"})
	require.Equal(t, storage.StatusValid, dataOf(t, resp)["status"])
	require.EqualValues(t, 2, ca.orders.Load())
	_ = context.Background()
}

// dataOf returns a response's data, also of a 202 (whose data Vault carries in the raw body).
func dataOf(t *testing.T, resp *logical.Response) map[string]any {
	t.Helper()
	raw, ok := resp.Data[logical.HTTPRawBody]
	if !ok {
		return resp.Data
	}
	var body struct {
		Data map[string]any `json:"data"`
	}
	var b []byte
	switch v := raw.(type) {
	case []byte:
		b = v
	case string:
		b = []byte(v)
	}
	require.NoError(t, json.Unmarshal(b, &body))
	return body.Data
}

// Rewriting a failing certificate retries at once only once per backoff step: a loop of writes
// places one order per failed attempt, not one per write.
func TestRewriteRetriesOncePerBackoffStep(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	ca.fail = &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:caa", Detail: "CAA forbids"}
	write := func() *logical.Response {
		return request(t, b, s, logical.UpdateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 5})
	}
	first := write()
	require.EqualValues(t, 1, ca.orders.Load())
	require.NotContains(t, fmt.Sprint(first.Data[logical.HTTPRawBody]), "early retry", "no early retry was used yet")
	for range 5 { // the first rewrite retries (attempt 2 fails); the others find that step used
		write()
	}
	require.EqualValues(t, 2, ca.orders.Load(), "one early retry for the first backoff step")
	resp := write()
	require.Contains(t, fmt.Sprint(resp.Data[logical.HTTPRawBody]), "early retry was used")
	c := loadCert(t, s, "web")
	require.Equal(t, 2, c.Attempts)
	// After a scheduled attempt (3) fails, the next step allows one more.
	ca.fail = nil
	c.Attempts = 3
	require.NoError(t, storage.StoreCert(context.Background(), s, "web", c))
	require.Equal(t, storage.StatusValid, dataOf(t, write())["status"])
	require.EqualValues(t, 3, ca.orders.Load())
}

// A rateLimited answer to a new order empties the account's orders bucket and gives nothing back,
// though no order was placed: a refund would refill the bucket and each refusal would make room
// for the next burst.
func TestRateLimitedAnswerIsNotRefunded(t *testing.T) {
	b, _, _ := getTestBackend(t)
	req := budget.Request{Account: "main", Identifiers: []string{"a.example.com"}}
	require.NoError(t, b.budget.b.SetLimits("main", budget.Limits{OrdersPerAccount: budget.Limit{Count: 5, Period: 10 * time.Second}}))
	ok, _, _ := b.budget.b.Reserve(req)
	require.True(t, ok)
	plan := &issuePlan{role: &storage.RoleEntry{}, cert: &storage.CertEntry{Role: "web"}}
	b.settle(plan, req, false, &acme.Error{Kind: acme.ErrRateLimited}) // no Retry-After, no order placed
	ok, retryAt, why := b.budget.b.Reserve(req)
	require.False(t, ok, "the CA said no: the bucket stays empty")
	require.Contains(t, why, "new orders per account")
	require.WithinDuration(t, time.Now().Add(2*time.Second), retryAt, 500*time.Millisecond, "one refill interval")
	// Without a rateLimited answer, an order that was never placed is refunded.
	require.NoError(t, b.budget.b.SetLimits("other", budget.Limits{OrdersPerAccount: budget.Limit{Count: 1, Period: time.Hour}}))
	other := budget.Request{Account: "other", Identifiers: []string{"b.example.com"}}
	ok, _, _ = b.budget.b.Reserve(other)
	require.True(t, ok)
	b.settle(plan, other, false, errors.New("solver failed before the order"))
	ok, _, _ = b.budget.b.Reserve(other)
	require.True(t, ok, "refunded")
}

// renew/ of a certificate whose issuance keeps failing gets one early retry per backoff step, like
// a rewrite, and keeps its failure count: renew/ in a loop is no way around the backoff.
func TestRenewOfFailingIssuanceRetriesOncePerStep(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	ca.fail = &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:caa", Detail: "CAA forbids"}
	request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
	require.EqualValues(t, 1, ca.orders.Load())
	request(t, b, s, logical.UpdateOperation, "renew/web", map[string]any{"wait": 5})
	require.EqualValues(t, 2, ca.orders.Load(), "one early retry")
	require.Equal(t, 2, loadCert(t, s, "web").Attempts, "the failure count is kept")
	for range 5 {
		_, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "renew/web", Storage: s,
			Data: map[string]any{"wait": 1}})
		var coded logical.HTTPCodedError
		require.ErrorAs(t, err, &coded)
		require.Equal(t, 429, coded.Code())
	}
	require.EqualValues(t, 2, ca.orders.Load(), "no more attempts before the backoff ends")
}

// A role's order_limit is its own share of the account's orders: its certificates wait when it is
// spent while another role of the same account still orders.
func TestRoleOrderLimit(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	resp := request(t, b, s, logical.UpdateOperation, "roles/web", map[string]any{"order_limit": "2/1h"})
	require.False(t, resp.IsError(), resp.Error())
	require.Equal(t, "2/1h", resp.Data["order_limit"])
	resp = request(t, b, s, logical.CreateOperation, "roles/other", map[string]any{"account": "main", "dns": "ns",
		"allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "other*"})
	require.False(t, resp.IsError(), resp.Error())
	for i := range 3 {
		resp := request(t, b, s, logical.CreateOperation, fmt.Sprintf("certs/web%d", i), map[string]any{"role": "web", "domains": fmt.Sprintf("w%d.example.com", i), "wait": 5})
		if i < 2 {
			require.Equal(t, storage.StatusValid, dataOf(t, resp)["status"])
			continue
		}
		require.Contains(t, dataOf(t, resp)["waiting"], `orders of role "web" (2/1h)`)
	}
	resp = request(t, b, s, logical.CreateOperation, "certs/other1", map[string]any{"role": "other", "domains": "o.example.com", "wait": 5})
	require.Equal(t, storage.StatusValid, dataOf(t, resp)["status"], "another role of the same account still orders")
	require.EqualValues(t, 3, ca.orders.Load())
	for _, bad := range []string{"-1/1h", "5/0s", "lots"} {
		resp := request(t, b, s, logical.UpdateOperation, "roles/web", map[string]any{"order_limit": bad})
		require.True(t, resp.IsError(), bad)
	}
}
