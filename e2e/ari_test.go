package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestARIWindowInPastRenews drives the plugin with renewal windows posted to Pebble's management
// API (/set-renewal-info/):
//  1. a window that ended an hour ago ("renew now") for a fresh 300-second certificate: the plugin
//     renews at its next ARI check (30 s after issuance), long before the planned halfway point,
//     and the renewal order names the old certificate's ARI ID in "replaces";
//  2. a malformed window (end before start) for the new certificate: the plugin ignores it at every
//     ARI check (renew_at stays at its plan, no order), and still renews once, at the plan.
//
// The malformed window starts at two thirds of the life, so a plugin that took it at face value
// would move renew_at there (not an "early" window, so the guard against repeated early renewals
// would not hide the mistake).
func TestARIWindowInPastRenews(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock() // the plugin's timers must stay alive throughout (see faults_test.go)
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("ari")
	is, domain := setupShortlived(t, c, id, proxy)
	rec := recordACME(proxy)

	first := IssueCert(t, c, id, map[string]any{"role": is.Role, "domains": domain}, 2*time.Minute)
	firstID := ariCertID(t, first.Leaf)
	life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	planned := first.Leaf.NotBefore.Add(life / 2)

	// 1. A window in the past, posted before the plugin's first ARI check of the certificate.
	require.Zero(t, rec.ARIChecks(firstID), "no ARI check yet (it comes 30 s after issuance)")
	posted := time.Now()
	setRenewalInfo(t, first.Leaf, posted.Add(-2*time.Hour), posted.Add(-time.Hour))
	second := waitRenewed(t, c, id, first.Leaf.SerialNumber.Text(16), time.Second, posted.Add(90*time.Second))
	t.Logf("renewed %s after the past window was posted (stored at %s, planned renewal was %s)",
		second.IssuedAt.Sub(posted).Round(time.Millisecond), second.IssuedAt.Format(time.RFC3339), planned.Format(time.RFC3339))

	orders := rec.Events("order")
	require.Len(t, orders, 2, "the first issuance and one renewal")
	require.Positive(t, rec.ARIChecks(firstID), "the plugin fetched the old certificate's window")
	assert.True(t, orders[1].At.Before(planned.Add(-life/50)), "the renewal (%s) is ARI's, before the planned time %s", orders[1].At, planned)
	payloads := proxy.NewOrderPayloads()
	require.Len(t, payloads, 2)
	assert.Empty(t, payloads[0]["replaces"], "the first order replaces nothing")
	assert.Equal(t, firstID, payloads[1]["replaces"], "the renewal names the certificate it replaces (ARI ID)")
	assert.EqualValues(t, 1, second.Renewals, "renewals")

	// 2. A malformed window for the new certificate, before its first ARI check.
	leaf := second.Cert.Leaf
	secondID := ariCertID(t, leaf)
	require.Zero(t, rec.ARIChecks(secondID), "no ARI check of the new certificate yet")
	plan := second.RenewAt
	half := leaf.NotBefore.Add(life / 2)
	require.Falsef(t, plan.Before(half.Add(-life/50-time.Second)) || plan.After(half.Add(time.Second)),
		"renew_at %s of the new certificate is not the plan (halfway %s, up to %s earlier)", plan, half, life/50)
	setRenewalInfo(t, leaf, leaf.NotBefore.Add(life*2/3), leaf.NotBefore.Add(life/3))
	malformedAt := time.Now()

	// Nothing changes until the plan, through several ARI checks; then exactly one renewal.
	var third certRead
	for {
		r := readCertPlan(t, c, id)
		require.Truef(t, r.At.Before(r.Cert.Leaf.NotAfter), "read at %s served an expired certificate", r.At)
		if r.Serial != second.Serial {
			third = r
			break
		}
		require.Truef(t, r.RenewAt.Equal(plan), "renew_at moved from %s to %s after %d ARI check(s) of a malformed window",
			plan.Format(time.RFC3339Nano), r.RenewAt.Format(time.RFC3339Nano), rec.ARIChecks(secondID))
		for _, o := range rec.Events("order")[2:] {
			require.Falsef(t, o.At.Before(plan.Add(-time.Second)), "a new order at %s, before the planned renewal %s, with a malformed window",
				o.At.Format(time.RFC3339Nano), plan.Format(time.RFC3339Nano))
		}
		require.Truef(t, time.Now().Before(leaf.NotAfter), "the certificate was not renewed before it expired (renew_at %s)", plan)
		time.Sleep(time.Second)
	}
	checks := rec.ARIChecks(secondID)
	t.Logf("malformed window ignored at %d ARI check(s) over %s; renewed at the plan %s (stored at %s)",
		checks, third.IssuedAt.Sub(malformedAt).Round(time.Second), plan.Format(time.RFC3339), third.IssuedAt.Format(time.RFC3339Nano))
	assert.GreaterOrEqual(t, checks, 2, "the plugin kept checking the window (every 30 s) and ignored it")
	orders = rec.Events("order")
	require.Len(t, orders, 3, "one more order, for the planned renewal")
	assert.Falsef(t, orders[2].At.Before(plan), "the renewal ordered at %s, before renew_at %s", orders[2].At, plan)
	assert.Less(t, orders[2].At.Sub(plan), 5*time.Second, "the renewal follows renew_at closely")
	payloads = proxy.NewOrderPayloads()
	require.Len(t, payloads, 3)
	assert.Equal(t, secondID, payloads[2]["replaces"], "the planned renewal names the certificate it replaces")
	assert.EqualValues(t, 2, third.Renewals, "renewals")

	// No loop after that: the next certificate's first ARI check is 30 s away.
	time.Sleep(10 * time.Second)
	assert.Equal(t, 3, proxy.NewOrders(), "new orders")
}
