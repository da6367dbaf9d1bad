package paths

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// The action paths of a certificate live under their own prefixes (DESIGN.md §3; see
// TestCertActionsStayOutsideTheTenantPrefix).
func renewPath(name string) string  { return "renew/" + name }
func revokePath(name string) string { return "revoke/" + name }

// issuedHarness has the certificate "team-a/www" issued under role "team".
func issuedHarness(t *testing.T) (*harness, *storage.CertEntry) {
	h := certHarness(t)
	h.ok(logical.CreateOperation, "certs/team-a/www", map[string]any{"role": "team", "domains": "www.example.com"})
	h.e.reset()
	return h, h.loadCert("team-a/www")
}

func TestCertRenew(t *testing.T) {
	t.Run("renewed within the wait", func(t *testing.T) {
		h, old := issuedHarness(t)
		// A failing renewal with a backoff is cleared by a forced renewal.
		old.Attempts, old.NextAttemptAt, old.LastError = 3, time.Now().Add(time.Hour), "rate limited"
		h.storeCert("team-a/www", old)

		resp := h.ok(logical.UpdateOperation, renewPath("team-a/www"), map[string]any{"wait": 7})
		require.Equal(t, http.StatusOK, statusOf(resp))
		c := h.loadCert("team-a/www")
		require.NotEqual(t, old.SerialNumber, c.SerialNumber)
		require.Equal(t, c.SerialNumber, resp.Data["serial_number"])
		require.Equal(t, "valid", resp.Data["status"])
		require.NotContains(t, resp.Data, "private_key", "only a read of certs/<name> returns the key")
		require.Equal(t, 1, c.Renewals)
		require.Equal(t, old.Generation, c.Generation, "a renewal keeps the specification")

		require.Equal(t, []call{{"CertificateChanged", "team-a/www"}, {"RenewCertificate", "team-a/www"}}, h.e.called(""))
		require.Equal(t, []bool{true}, h.e.renewSawForce, "the engine finds the entry marked ForceRenewal")
		require.Equal(t, []int{0}, h.e.renewSawAttempts, "and the backoff cleared")
		require.Equal(t, []time.Duration{7 * time.Second}, h.e.renewWaits)
	})

	t.Run("default wait", func(t *testing.T) {
		h, _ := issuedHarness(t)
		h.ok(logical.UpdateOperation, renewPath("team-a/www"), nil)
		require.Equal(t, []time.Duration{30 * time.Second}, h.e.renewWaits)
	})

	t.Run("continues in the background", func(t *testing.T) {
		h, old := issuedHarness(t)
		h.e.renew = leavePending
		resp := h.ok(logical.UpdateOperation, renewPath("team-a/www"), map[string]any{"wait": 0})
		require.Equal(t, http.StatusAccepted, statusOf(resp))
		require.Equal(t, old.SerialNumber, bodyOf(t, resp)["serial_number"], "the current certificate is served until the new one is stored")
		ws := warningsOf(t, resp)
		require.Len(t, ws, 1)
		require.Contains(t, ws[0], "the renewal continues in the background: read certs/team-a/www")
		require.True(t, h.loadCert("team-a/www").ForceRenewal, "the mark stays for the scheduler")
	})

	t.Run("unknown certificate", func(t *testing.T) {
		h := certHarness(t)
		err := h.fails(logical.UpdateOperation, renewPath("team-a/none"), nil)
		require.Equal(t, http.StatusNotFound, codeOf(err))
		require.ErrorContains(t, err, `certificate "team-a/none" does not exist: write certs/team-a/none first`)
		require.Empty(t, h.e.called(""))
	})

	t.Run("invalid names", func(t *testing.T) {
		h, _ := issuedHarness(t)
		for name, want := range map[string]string{"": "the certificate name is empty", "team-a/../www": `".." segment`,
			"team-a//www": "empty", "team-a/www/": "empty", "team a": `character " "`} {
			h.bad(nil, logical.UpdateOperation, renewPath(name), nil, want)
			h.bad(nil, logical.UpdateOperation, revokePath(name), nil, want)
		}
	})

	t.Run("wait out of bounds", func(t *testing.T) {
		h, _ := issuedHarness(t)
		h.bad(nil, logical.UpdateOperation, renewPath("team-a/www"), map[string]any{"wait": 61}, "wait must be between 0s and 1m0s")
		h.bad(nil, logical.UpdateOperation, renewPath("team-a/www"), map[string]any{"wait": -1}, `field "wait"`)
	})

	t.Run("engine error", func(t *testing.T) {
		h, _ := issuedHarness(t)
		h.e.renew = func(*fakeEngine, string, *storage.CertEntry) (*storage.CertEntry, error) {
			return nil, &acme.Error{Kind: acme.ErrUnreachable}
		}
		_, err := h.do(logical.UpdateOperation, renewPath("team-a/www"), nil)
		require.ErrorIs(t, err, acme.ErrUnreachable)
		require.True(t, h.loadCert("team-a/www").ForceRenewal, "the scheduler retries the forced renewal")
	})
}

func TestCertRevoke(t *testing.T) {
	t.Run("revoked and reissued", func(t *testing.T) {
		h, old := issuedHarness(t)
		resp := h.ok(logical.UpdateOperation, revokePath("team-a/www"), map[string]any{"reason": "keyCompromise"})
		require.Equal(t, map[string]any{"revoked_serial_number": old.SerialNumber, "status": "pending"}, resp.Data)
		require.Equal(t, []string{old.SerialNumber}, h.e.revokedSerial)
		require.Equal(t, []uint{1}, h.e.revokedReason)
		require.Equal(t, []call{{"RevokeCertificate", "team-a/www"}, {"CertificateChanged", "team-a/www"}}, h.e.called(""))

		c := h.loadCert("team-a/www")
		require.Empty(t, c.Certificate)
		require.Empty(t, c.PrivateKey, "the compromised key is forgotten")
		require.Empty(t, c.Chain)
		require.Zero(t, c.IssuedGeneration)
		require.Equal(t, storage.StatusPending, c.Status)
		require.Equal(t, old.Generation, c.Generation)
		require.Equal(t, old.Domains, c.Domains)

		// Reads fail with a retryable error until the new certificate is stored.
		h.e.ensure = leavePending
		_, err := h.do(logical.ReadOperation, "certs/team-a/www", nil)
		require.Equal(t, http.StatusServiceUnavailable, codeOf(err))
	})

	for reason, code := range acme.RevocationReasons {
		t.Run("reason "+reason, func(t *testing.T) {
			h, _ := issuedHarness(t)
			h.ok(logical.UpdateOperation, revokePath("team-a/www"), map[string]any{"reason": reason})
			require.Equal(t, []uint{code}, h.e.revokedReason)
		})
	}

	t.Run("default reason", func(t *testing.T) {
		h, _ := issuedHarness(t)
		h.ok(logical.UpdateOperation, revokePath("team-a/www"), nil)
		require.Equal(t, []uint{0}, h.e.revokedReason)
	})

	t.Run("unknown reason", func(t *testing.T) {
		h, _ := issuedHarness(t)
		h.bad(nil, logical.UpdateOperation, revokePath("team-a/www"), map[string]any{"reason": "because"},
			`reason "because" is not a revocation reason: use one of affiliationChanged, cessationOfOperation, keyCompromise, superseded, unspecified`)
		h.bad(nil, logical.UpdateOperation, revokePath("team-a/www"), map[string]any{"reason": "1"}, "not a revocation reason")
	})

	t.Run("unknown certificate", func(t *testing.T) {
		h := certHarness(t)
		err := h.fails(logical.UpdateOperation, revokePath("team-a/none"), nil)
		require.Equal(t, http.StatusNotFound, codeOf(err))
		require.Empty(t, h.e.called(""))
	})

	t.Run("nothing issued", func(t *testing.T) {
		h := certHarness(t)
		h.e.ensure = leavePending
		h.ok(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
		h.bad(nil, logical.UpdateOperation, revokePath("web"), nil, `certificate "web" has no issued certificate to revoke`)
	})

	t.Run("renewed meanwhile", func(t *testing.T) {
		h, old := issuedHarness(t)
		// A renewal stores a new certificate while the CA revokes the old one.
		h.e.revokeHook = func(e *fakeEngine, name string) {
			unlock := e.lockCert("revokeHook", name)
			defer unlock()
			c := h.loadCert(name)
			c.Renewals++
			_, err := issue(e, name, c)
			require.NoError(t, err)
		}
		resp := h.ok(logical.UpdateOperation, revokePath("team-a/www"), map[string]any{"reason": "superseded"})
		require.Equal(t, old.SerialNumber, resp.Data["revoked_serial_number"])
		require.Equal(t, "valid", resp.Data["status"])
		c := h.loadCert("team-a/www")
		require.NotEqual(t, old.SerialNumber, c.SerialNumber)
		require.NotEmpty(t, c.Certificate, "the new certificate is kept")
		require.True(t, c.Current())
	})

	caErrors := []struct {
		name  string
		err   error
		code  int
		wants string
	}{
		{name: "already revoked", err: &acme.Error{Kind: acme.ErrRejected, Detail: "Certificate already revoked"}, code: http.StatusBadRequest,
			wants: `revoke certificate "team-a/www"`},
		{name: "unreachable", err: &acme.Error{Kind: acme.ErrUnreachable}, code: http.StatusBadGateway, wants: `revoke certificate "team-a/www"`},
		{name: "rate limited", err: &acme.Error{Kind: acme.ErrRateLimited, RetryAfter: time.Minute}, code: http.StatusInternalServerError, wants: "retry after 1m0s"},
	}
	for _, tc := range caErrors {
		t.Run("CA error "+tc.name, func(t *testing.T) {
			h, _ := issuedHarness(t)
			h.e.revokeErr = tc.err
			if tc.code == http.StatusBadRequest {
				h.bad([]string{"RevokeCertificate"}, logical.UpdateOperation, revokePath("team-a/www"), nil, tc.wants)
				return
			}
			err := h.fails(logical.UpdateOperation, revokePath("team-a/www"), nil)
			require.Equal(t, tc.code, codeOf(err))
			require.ErrorContains(t, err, tc.wants)
			require.Empty(t, h.e.names("CertificateChanged"))
		})
	}
}

// TestCertActionsStayOutsideTheTenantPrefix checks DESIGN.md §3: a tenant whose policy allows
// certs/team-a/* must not be able to act on the certificate named "team-a" (outside its prefix).
// Regression: the actions were certs/<name>/renew and certs/<name>/revoke, so certs/team-a/revoke
// revoked the certificate "team-a".
func TestCertActionsStayOutsideTheTenantPrefix(t *testing.T) {
	h := certHarness(t)
	h.ok(logical.CreateOperation, "certs/team-a", map[string]any{"role": "web", "domains": "www.example.com"})
	h.ok(logical.CreateOperation, "certs/team-a/www", map[string]any{"role": "web", "domains": "www.example.com"})
	before := h.loadCert("team-a")
	for _, action := range []string{"revoke", "renew"} {
		// The path is a certificate write whose name ends in a reserved action name.
		h.bad(nil, logical.UpdateOperation, "certs/team-a/"+action, map[string]any{"reason": "keyCompromise", "wait": 0},
			fmt.Sprintf(`certificate name "team-a/%s" ends in %q, which is reserved`, action, action))
	}
	require.Equal(t, before, h.loadCert("team-a"))

	// The tenant's own actions address only its own certificates.
	h.e.reset()
	h.ok(logical.UpdateOperation, revokePath("team-a/www"), map[string]any{"reason": "superseded"})
	h.ok(logical.UpdateOperation, renewPath("team-a/www"), nil)
	require.Equal(t, []string{"team-a/www"}, h.e.names("RevokeCertificate"))
	require.Equal(t, []string{"team-a/www"}, h.e.names("RenewCertificate"))
	require.Equal(t, before, h.loadCert("team-a"))
}

func TestStatusCerts(t *testing.T) {
	now := time.Now().UTC()
	const day = 24 * time.Hour
	h := newHarness(t)
	h.e.summaries = map[string]CertSummary{
		"ok":         {Status: "valid", NotAfter: now.Add(60 * day), RenewAt: now.Add(30 * day)},
		"just-due":   {Status: "valid", NotAfter: now.Add(20 * day), RenewAt: now.Add(-time.Hour)},
		"overdue":    {Status: "valid", NotAfter: now.Add(10 * day), RenewAt: now.Add(-10 * day)},
		"expired":    {Status: "valid", NotAfter: now.Add(-time.Hour), RenewAt: now.Add(-30 * day)},
		"team-a/new": {Status: "pending"},
		"failing":    {Status: "failed", Attempts: 2, LastError: "acme: rate limited", NextAt: now.Add(time.Hour)},
		"renewal-failing": {Status: "valid", Attempts: 1, LastError: "acme: challenge validation failed",
			NotAfter: now.Add(20 * day), RenewAt: now.Add(-time.Hour), NextAt: now.Add(10 * time.Minute)},
	}
	resp := h.ok(logical.ReadOperation, "status/certs", nil)
	require.Equal(t, []string{"expired", "overdue"}, resp.Data["expiring"])
	require.Equal(t, []string{"failing", "renewal-failing"}, resp.Data["failing"])
	require.Equal(t, []string{"failing", "team-a/new"}, resp.Data["pending"])

	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }
	s := h.e.summaries
	require.Equal(t, map[string]any{
		"overdue": map[string]any{"status": "valid", "attempts": 0, "last_error": "",
			"not_after": rfc(s["overdue"].NotAfter), "renew_at": rfc(s["overdue"].RenewAt)},
		"expired": map[string]any{"status": "valid", "attempts": 0, "last_error": "",
			"not_after": rfc(s["expired"].NotAfter), "renew_at": rfc(s["expired"].RenewAt)},
		"team-a/new": map[string]any{"status": "pending", "attempts": 0, "last_error": ""},
		"failing": map[string]any{"status": "failed", "attempts": 2, "last_error": "acme: rate limited",
			"next_attempt_at": rfc(s["failing"].NextAt)},
		"renewal-failing": map[string]any{"status": "valid", "attempts": 1, "last_error": "acme: challenge validation failed",
			"not_after": rfc(s["renewal-failing"].NotAfter), "renew_at": rfc(s["renewal-failing"].RenewAt),
			"next_attempt_at": rfc(s["renewal-failing"].NextAt)},
	}, resp.Data["certificates"])
	require.Equal(t, []string{""}, h.e.names("CertificateSummaries"))

	t.Run("nothing to report", func(t *testing.T) {
		h := newHarness(t)
		h.e.summaries = map[string]CertSummary{"ok": {Status: "valid", NotAfter: now.Add(60 * day), RenewAt: now.Add(30 * day)}}
		resp := h.ok(logical.ReadOperation, "status/certs", nil)
		require.Equal(t, map[string]any{"expiring": []string{}, "failing": []string{}, "pending": []string{}, "waiting": []string{}, "certificates": map[string]any{},
			"counts": map[string]any{"total": 1, "expiring": 0, "failing": 0, "pending": 0, "waiting": 0}}, resp.Data)
	})

	t.Run("paged", func(t *testing.T) {
		h := newHarness(t)
		h.e.summaries = map[string]CertSummary{}
		for i := range 25 {
			h.e.summaries[fmt.Sprintf("c%02d", i)] = CertSummary{Status: "pending"}
		}
		h.e.summaries["fine"] = CertSummary{Status: "valid", NotAfter: now.Add(60 * day), RenewAt: now.Add(30 * day)}
		var seen []string
		after := ""
		for page := 0; ; page++ {
			require.Less(t, page, 5)
			resp := h.ok(logical.ReadOperation, "status/certs", map[string]any{"limit": 10, "after": after})
			require.Equal(t, map[string]any{"total": 26, "expiring": 0, "failing": 0, "pending": 25, "waiting": 0}, resp.Data["counts"])
			got := resp.Data["pending"].([]string)
			require.LessOrEqual(t, len(got), 10)
			require.Len(t, resp.Data["certificates"], len(got))
			seen = append(seen, got...)
			next, more := resp.Data["next_after"].(string)
			if !more {
				break
			}
			require.Equal(t, got[len(got)-1], next)
			after = next
		}
		require.Len(t, seen, 25)
		require.Equal(t, "c00", seen[0])
		require.Equal(t, "c24", seen[24])
		for _, bad := range []any{0, -1, 10001, "x"} {
			h.bad([]string{"CertificateSummaries"}, logical.ReadOperation, "status/certs", map[string]any{"limit": bad})
		}
	})

	t.Run("waiting", func(t *testing.T) {
		h := newHarness(t)
		h.e.summaries = map[string]CertSummary{
			"ok":         {Status: "valid", NotAfter: now.Add(60 * day), RenewAt: now.Add(30 * day)},
			"team-b/new": {Status: "pending", Waiting: "queued: all 8 workers are busy"},
		}
		resp := h.ok(logical.ReadOperation, "status/certs", nil)
		require.Equal(t, []string{"team-b/new"}, resp.Data["waiting"])
		require.Equal(t, map[string]any{"status": "pending", "attempts": 0, "last_error": "", "waiting": "queued: all 8 workers are busy"},
			resp.Data["certificates"].(map[string]any)["team-b/new"])
	})
}

// A certificate can be renewed or revoked by hand only once per its role's
// forced_renewal_interval (default 1h) after issuance: a tenant cannot spend the shared account's
// orders in a loop. Just inside and just outside the interval, for both actions.
func TestForcedRenewalInterval(t *testing.T) {
	h := certHarness(t)
	h.role("bounded", map[string]any{"allowed_cert_names": "b/*", "forced_renewal_interval": nil})
	resp := h.ok(logical.ReadOperation, "roles/bounded", nil)
	require.EqualValues(t, 3600, resp.Data["forced_renewal_interval"], "the default")
	h.ok(logical.CreateOperation, "certs/b/www", map[string]any{"role": "bounded", "domains": "www.example.com"})
	issued := h.loadCert("b/www")

	for _, p := range []string{renewPath("b/www"), "revoke/b/www"} {
		_, err := h.do(logical.UpdateOperation, p, map[string]any{"reason": "superseded", "wait": 0})
		var coded logical.HTTPCodedError
		require.ErrorAs(t, err, &coded, p)
		require.Equal(t, http.StatusTooManyRequests, coded.Code(), p)
		require.Contains(t, err.Error(), "forced_renewal_interval")
		require.Contains(t, err.Error(), "try again after")
	}
	require.Equal(t, issued.SerialNumber, h.loadCert("b/www").SerialNumber, "neither renewed nor revoked")
	require.False(t, h.loadCert("b/www").ForceRenewal)

	// Just outside the interval (issued 1h and 1s ago) a renewal goes through; just inside, not.
	for _, tc := range []struct {
		age time.Duration
		ok  bool
	}{{time.Hour - time.Second, false}, {time.Hour + time.Second, true}} {
		c := h.loadCert("b/www")
		c.IssuedAt = time.Now().Add(-tc.age)
		h.storeCert("b/www", c)
		_, err := h.do(logical.UpdateOperation, renewPath("b/www"), map[string]any{"wait": 5})
		require.Equal(t, tc.ok, err == nil, "issued %s ago: %v", tc.age, err)
	}

	// The operator may change the interval; 0 lifts it; bounds are checked.
	h.ok(logical.UpdateOperation, "roles/bounded", map[string]any{"forced_renewal_interval": "0"})
	_, err := h.do(logical.UpdateOperation, renewPath("b/www"), map[string]any{"wait": 5})
	require.NoError(t, err)
	for _, bad := range []any{"-1s", "31d", "721h"} {
		resp, err := h.do(logical.UpdateOperation, "roles/bounded", map[string]any{"forced_renewal_interval": bad})
		require.NoError(t, err)
		require.True(t, resp.IsError(), "%v", bad)
	}
}
