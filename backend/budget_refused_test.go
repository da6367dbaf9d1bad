package backend

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/budget"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// A new order the CA refused with rateLimited and a Retry-After spent no per-domain token at the
// CA: the budget gives it back, so the domain's next certificate does not wait a whole refill
// interval (seen in the 1,000-certificate benchmark: one refusal held a certificate 50 s, 202 min
// at Let's Encrypt's scale). The orders token stays spent and the account is held.
func TestRateLimitedRefusalGivesDomainTokensBack(t *testing.T) {
	b, _, _ := getTestBackend(t)
	require.NoError(t, b.budget.b.SetLimits("main", budget.Limits{
		OrdersPerAccount: budget.Limit{Count: 1000, Period: time.Second},
		CertsPerDomain:   budget.Limit{Count: 1, Period: time.Hour},
	}))
	plan := &issuePlan{role: &storage.RoleEntry{}, cert: &storage.CertEntry{Role: "web"}}
	req := budget.Request{Account: "main", Identifiers: []string{"a.example.com"}}
	ok, _, _ := b.budget.b.Reserve(req)
	require.True(t, ok)
	b.settle(plan, req, false, &acme.Error{Kind: acme.ErrRateLimited, RetryAfter: 50 * time.Millisecond})
	ok, _, why := b.budget.b.Reserve(budget.Request{Account: "main", Identifiers: []string{"b.example.com"}})
	require.False(t, ok, "the account is held until the CA's Retry-After")
	require.Contains(t, why, "rateLimited answer from the CA")
	time.Sleep(100 * time.Millisecond)
	ok, _, why = b.budget.b.Reserve(budget.Request{Account: "main", Identifiers: []string{"b.example.com"}})
	require.True(t, ok, "the refused order's per-domain token is back: %s", why)

	// Without a Retry-After nothing is given back (a CA that does not say when would otherwise be
	// asked again at every orders token).
	req = budget.Request{Account: "main", Identifiers: []string{"c.example.org"}}
	ok, _, _ = b.budget.b.Reserve(req)
	require.True(t, ok)
	b.settle(plan, req, false, &acme.Error{Kind: acme.ErrRateLimited})
	time.Sleep(10 * time.Millisecond)
	ok, _, why = b.budget.b.Reserve(budget.Request{Account: "main", Identifiers: []string{"d.example.org"}})
	require.False(t, ok)
	require.Contains(t, why, "registered domain example.org")
}
