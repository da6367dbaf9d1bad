package backend

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// Certificates waiting for one orders bucket get one refill interval each, in the order they asked;
// a wait for something slower keeps its own time unless the queue reaches past it.
func TestBudgetWaitTurns(t *testing.T) {
	o := newOrderBudget()
	now := time.Now()
	wait := func(name string, until time.Time) time.Time {
		w := &errBudgetWait{until: until, why: "test", queue: "acct", interval: time.Second}
		o.deferName(name, w, now)
		require.Equal(t, w.until, o.deferredUntil(name, now), "deferred until the turn")
		return w.until
	}
	next := now.Add(100 * time.Millisecond)
	for i := range 5 {
		require.Equal(t, next.Add(time.Duration(i)*time.Second), wait(fmt.Sprint("c", i), next), "turn %d", i)
	}
	domain := now.Add(time.Hour)
	require.Equal(t, domain, wait("slow", domain), "a wait for a registered domain keeps its time")
	require.Equal(t, next.Add(5*time.Second), wait("c5", now.Add(2*time.Second)), "the queue reaches past this wait: next turn")
	// Another bucket has its own queue; a bucket without a limit none.
	w := &errBudgetWait{until: next, why: "test", queue: "other", interval: time.Second}
	o.deferName("o1", w, now)
	require.Equal(t, next, w.until)
	w = &errBudgetWait{until: next, why: "test", queue: "unlimited"}
	o.deferName("u1", w, now)
	require.Equal(t, next, w.until)
	// Once every turn has passed, the queue starts again at the bucket's next token.
	later := now.Add(time.Minute)
	w = &errBudgetWait{until: later.Add(time.Second), why: "test", queue: "acct", interval: time.Second}
	o.deferName("c6", w, later)
	require.Equal(t, later.Add(time.Second), w.until)
}

// Certificates waiting for the order budget are dispatched in turn as it refills, not all at each
// token: the budget refuses about one Reserve per waiting certificate, not one per waiting
// certificate per token.
func TestBudgetWaitersAreNotAHerd(t *testing.T) {
	b, s, ca := getInitializedBackend(t)
	setup(t, b, s)
	resp := request(t, b, s, logical.UpdateOperation, "accounts/main", map[string]any{"order_limit": "4/1s"})
	require.False(t, resp.IsError(), resp.Error())
	const n, burst = 16, 4
	for i := range n {
		request(t, b, s, logical.CreateOperation, fmt.Sprintf("certs/webh%d", i), map[string]any{"role": "web", "domains": fmt.Sprintf("h%d.example.com", i), "wait": 0})
	}
	require.Eventually(t, func() bool {
		for i := range n {
			if c := loadCert(t, s, fmt.Sprintf("webh%d", i)); c == nil || c.Status != storage.StatusValid {
				return false
			}
		}
		return true
	}, 10*time.Second+orderLatency, 20*time.Millisecond, "every certificate is issued")
	require.EqualValues(t, n, ca.orders.Load(), "one order each")
	waited := b.budget.b.Stats().Waited
	require.LessOrEqual(t, waited, uint64(2*(n-burst)), "refusals: about one per waiting certificate (a herd: ~%d)", (n-burst)*(n-burst+1)/2)
	t.Logf("%d certificates, %d waited: %d refused reservations", n, n-burst, waited)
}
