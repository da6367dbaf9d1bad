package e2e

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRenewalAtPlannedTime issues a 300-second certificate through a counting proxy and watches the
// plugin renew it on its own, twice. Reading every 2 s, it checks that every read serves an
// unexpired certificate with a sane renewal plan, that each renewal starts no earlier than the
// renew_at the last read of the old certificate reported (unless an ARI check in between moved it:
// the plugin then renews at once, right after the check), and before the old certificate expires;
// and that the CA saw exactly one new order per certificate, renewals naming what they replace.
func TestRenewalAtPlannedTime(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock() // the plugin's timers must stay alive throughout (see faults_test.go)
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("renew")
	is, domain := setupShortlived(t, c, id, proxy)
	rec := recordACME(proxy)

	issued := IssueCert(t, c, id, map[string]any{"role": is.Role, "domains": domain}, 2*time.Minute)
	life := issued.Leaf.NotAfter.Sub(issued.Leaf.NotBefore)
	require.InDelta(t, 300, life.Seconds(), 2, "Pebble profile %q", ShortlivedProfile)

	const (
		wantRenewals = 2
		interval     = 2 * time.Second
		tolerance    = 3 * time.Second // read interval plus clock granularity
	)
	// A working plugin renews every certificate before it expires.
	deadline := time.Now().Add(wantRenewals*life + time.Minute)
	prev := readCertPlan(t, c, id)
	require.Equal(t, issued.Leaf.SerialNumber.Text(16), prev.Serial)
	leaves := []*x509.Certificate{prev.Cert.Leaf}
	checkPlan(t, rec, prev)

	var settleUntil time.Time // after the last wanted renewal, watch a little longer for duplicates
	for settleUntil.IsZero() || time.Now().Before(settleUntil) {
		require.Truef(t, time.Now().Before(deadline), "only %d renewal(s) of %s by %s", len(leaves)-1, id, deadline.Format(time.RFC3339))
		time.Sleep(interval)
		cur := readCertPlan(t, c, id)
		checkPlan(t, rec, cur)
		if cur.Serial == prev.Serial {
			require.Equal(t, prev.Renewals, cur.Renewals, "renewals changed without a new certificate")
			prev = cur
			continue
		}

		n := len(leaves) // this is renewal n; orders[0] is the first issuance
		old := prev.Cert.Leaf
		orders := rec.Events("order")
		require.Greater(t, len(orders), n, "the new certificate %s came without a new order at the CA", cur.Serial)
		order := orders[n]
		t.Logf("renewal %d: old %s (renew_at %s, not_after %s), new order at %s, new %s stored at %s, seen at %s",
			n, prev.Serial, prev.RenewAt.Format(time.RFC3339), old.NotAfter.Format(time.RFC3339),
			order.At.Format(time.RFC3339Nano), cur.Serial, cur.IssuedAt.Format(time.RFC3339Nano), cur.At.Format(time.RFC3339Nano))

		if order.At.Before(prev.RenewAt.Add(-tolerance)) {
			// Earlier than the plan last read: only an ARI check may have moved it (and the
			// plugin then orders right after the check).
			var check *acmeEvent
			for _, e := range rec.Events("ari") {
				if e.ARIID == ariCertID(t, old) && !e.At.After(order.At) {
					check = &e
				}
			}
			require.NotNilf(t, check, "renewal %d ordered at %s, before renew_at %s, with no ARI check of the old certificate",
				n, order.At.Format(time.RFC3339Nano), prev.RenewAt.Format(time.RFC3339))
			require.Truef(t, check.At.After(prev.At.Add(-interval)),
				"renewal %d ordered at %s, before renew_at %s that the read at %s reported after the last ARI check (%s)",
				n, order.At.Format(time.RFC3339Nano), prev.RenewAt.Format(time.RFC3339), prev.At.Format(time.RFC3339Nano), check.At.Format(time.RFC3339Nano))
			require.Lessf(t, order.At.Sub(check.At), tolerance,
				"renewal %d ordered at %s, before renew_at %s, but not right after the ARI check at %s",
				n, order.At.Format(time.RFC3339Nano), prev.RenewAt.Format(time.RFC3339), check.At.Format(time.RFC3339Nano))
			t.Logf("renewal %d: moved earlier by the ARI check at %s", n, check.At.Format(time.RFC3339Nano))
		}
		require.Truef(t, order.At.Before(old.NotAfter), "renewal %d ordered at %s, after the old certificate expired (%s)", n, order.At, old.NotAfter)
		require.Truef(t, cur.IssuedAt.Before(old.NotAfter), "renewal %d stored at %s, after the old certificate expired (%s)", n, cur.IssuedAt, old.NotAfter)
		require.EqualValues(t, n, cur.Renewals, "renewals after renewal %d", n)
		assert.True(t, cur.Cert.Leaf.NotBefore.After(old.NotBefore), "renewal %d is a newer certificate", n)

		leaves = append(leaves, cur.Cert.Leaf)
		if n == wantRenewals {
			// The next renewal is due no earlier than the new certificate's first ARI check (30 s).
			settleUntil = time.Now().Add(15 * time.Second)
		}
		prev = cur
	}

	renewals := len(leaves) - 1
	assert.Equal(t, 1+renewals, proxy.NewOrders(), "one new order per certificate: the first issuance and %d renewals", renewals)
	payloads := proxy.NewOrderPayloads()
	require.Len(t, payloads, 1+renewals, "new-order payloads")
	assert.Empty(t, payloads[0]["replaces"], "the first order replaces nothing")
	for i := 1; i <= renewals; i++ {
		assert.Equal(t, ariCertID(t, leaves[i-1]), payloads[i]["replaces"], "renewal %d names the certificate it replaces (ARI ID)", i)
		assert.Equal(t, ShortlivedProfile, payloads[i]["profile"], "renewal %d keeps the profile", i)
	}
	assert.EqualValues(t, renewals, prev.Renewals, "renewals on the read")
}

// checkPlan checks what any read of a valid certificate reports: an unexpired certificate, a
// renewal time within its life, ttl and rotation_period; and, while the CA has not been asked for
// the certificate's window, renew_at at the plan: halfway through the life (a certificate under 10
// days), earlier by at most 2% (jitter).
func checkPlan(t *testing.T, rec *acmeRecorder, r certRead) {
	t.Helper()
	leaf := r.Cert.Leaf
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	require.Equal(t, "valid", r.Status)
	require.Truef(t, r.At.Before(leaf.NotAfter), "read at %s served certificate %s, expired at %s", r.At.Format(time.RFC3339Nano), r.Serial, leaf.NotAfter)
	require.True(t, KeyMatches(r.Cert.Key, leaf), "private_key matches the certificate")
	require.Falsef(t, r.RenewAt.Before(leaf.NotBefore) || r.RenewAt.After(leaf.NotAfter),
		"renew_at %s outside the certificate's life [%s, %s]", r.RenewAt, leaf.NotBefore, leaf.NotAfter)
	require.GreaterOrEqual(t, r.TTL, int64(3), "ttl (3 s while a renewal is due)")
	require.LessOrEqual(t, r.TTL, int64(4*3600), "ttl")
	require.Positive(t, r.Rotation, "rotation_period")
	if rec.ARIChecks(ariCertID(t, leaf)) == 0 {
		half := leaf.NotBefore.Add(life / 2)
		require.Falsef(t, r.RenewAt.Before(half.Add(-life/50-time.Second)) || r.RenewAt.After(half.Add(time.Second)),
			"renew_at %s before any ARI check is not the plan: halfway %s, at most %s earlier", r.RenewAt, half, life/50)
		// The reader is sent back by renew_at, and right after the first ARI check (a tenth of the
		// life after the certificate was stored), which may move renew_at earlier.
		stored := leaf.NotBefore
		if r.IssuedAt.After(stored) {
			stored = r.IssuedAt
		}
		want := min(r.RenewAt.Sub(r.At), stored.Add(life/10).Sub(r.At)+5*time.Second)
		require.LessOrEqualf(t, float64(r.TTL), max(want, 3*time.Second).Seconds()+2, "ttl: seconds until renew_at %s or the first ARI check", r.RenewAt)
	}
}
