package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fault-injection tests of the renewal engine: the CA unreachable during a renewal and past a
// certificate's expiry, and a CA that answers rateLimited with Retry-After. Shared helpers of faults_test.go, crash_test.go and
// ha_test.go (certificate fields, proxied issuers, a recording fault) are at the end of this file.

// devPluginMu keeps the tests that kill the dev Vault's plugin process (crash_test.go, Lock) apart
// from the parallel tests that need it alive throughout (RLock). The HA test runs its own Vault
// processes and takes neither.
var devPluginMu sync.RWMutex

// TestRenewalSurvivesCAOutage: a forced renewal of a short-lived certificate while the CA cannot be
// reached fails without disturbing the served certificate (still valid, same serial), records the
// failure (attempts, last_error, next_attempt_at a minute later or a tenth of the remaining life
// if sooner, status/certs "failing"),
// and once the CA is back the plugin renews on its own at the next attempt, with no duplicate order.
func TestRenewalSurvivesCAOutage(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()

	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("outage")
	domain := id + "." + env.Zone
	is := env.SetupProxiedIssuer(t, c, proxy, id, "shortlived")
	first := IssueCert(t, c, id, map[string]any{"role": is.Role, "domains": domain}, 2*time.Minute)
	life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	require.Less(t, life, 10*time.Minute, "profile shortlived gives a 300 s certificate, got %s", life)

	// The CA goes away; what is served from now on is the "old" certificate.
	proxy.SetFault(Unreachable())
	before := readCertOK(t, c, id)
	oldSerial := fmt.Sprint(before.Data["serial_number"])
	ordersBefore := proxy.NewOrders()
	require.Equal(t, ordersBefore, 1+intField(before.Data, "renewals"), "one order per certificate so far")
	t.Logf("CA unreachable; served serial %s, renewals %d, orders %d", oldSerial, intField(before.Data, "renewals"), ordersBefore)

	forced := time.Now()
	w := MustDo(t, c, http.MethodPost, Mount+"/renew/"+id, map[string]any{"wait": "0s"})
	require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, w.Status, "renew: %s", w)

	failed := waitCertField(t, c, id, 60*time.Second, "attempts >= 1", func(r *Resp) bool { return intField(r.Data, "attempts") >= 1 })
	failedAt := time.Now()
	assert.Equal(t, oldSerial, fmt.Sprint(failed.Data["serial_number"]), "the old certificate is still served")
	assert.Equal(t, "valid", failed.Data["status"], "a failing renewal keeps the entry valid")
	assert.NotEmpty(t, failed.Data["last_error"], "last_error tells of the failing renewal")
	next := timeField(t, failed.Data, "next_attempt_at")
	// The first backoff step is a minute, but a retry of a served certificate's renewal never waits
	// more than a tenth of its remaining life (so it cannot land after expiry).
	notAfter := timeField(t, before.Data, "not_after")
	step := func(at time.Time) time.Time { return at.Add(min(time.Minute, notAfter.Sub(at)/10)) }
	assertTimeNear(t, next, step(forced), step(failedAt), 15*time.Second, "next_attempt_at (1 min backoff, at most a tenth of the remaining life)")
	t.Logf("renewal failed as expected: attempts %v, next_attempt_at %s (in %s), last_error %q",
		failed.Data["attempts"], next.Format(time.RFC3339), time.Until(next).Round(time.Second), failed.Data["last_error"])
	st := MustDo(t, c, http.MethodGet, Mount+"/status/certs", nil)
	require.Equal(t, http.StatusOK, st.Status, "status/certs: %s", st)
	assert.Contains(t, stringList(st.Data["failing"]), id, "status/certs lists the certificate as failing: %s", st)
	assert.Equal(t, ordersBefore, proxy.NewOrders(), "no order reached the CA during the outage")

	// The CA is back: the next attempt, at next_attempt_at, renews without anything done by hand
	// (reads of a current certificate start nothing). Allow 20 s for the attempt itself.
	proxy.SetFault(nil)
	cleared := time.Now()
	renewed := waitCertField(t, c, id, time.Until(next)+20*time.Second, "renewal by next_attempt_at + 20 s", func(r *Resp) bool {
		return r.Data["serial_number"] != nil && fmt.Sprint(r.Data["serial_number"]) != oldSerial
	})
	t.Logf("renewed %s after the CA came back (%s after next_attempt_at): serial %v, renewals %v",
		time.Since(cleared).Round(time.Second), time.Since(next).Round(time.Second), renewed.Data["serial_number"], renewed.Data["renewals"])
	assert.Equal(t, "valid", renewed.Data["status"])
	assert.Equal(t, 0, intField(renewed.Data, "attempts"), "attempts reset by the renewal")
	assert.Empty(t, renewed.Data["last_error"])
	assert.Greater(t, intField(renewed.Data, "renewals"), intField(before.Data, "renewals"))
	cert, err := ParseCert(renewed.Data)
	require.NoError(t, err)
	assert.True(t, KeyMatches(cert.Key, cert.Leaf))
	assert.True(t, cert.Leaf.NotAfter.After(first.Leaf.NotAfter), "the new certificate outlives the old one")

	// Every order that reached the CA gave exactly one stored certificate (an ARI-driven renewal
	// may be in flight at any moment with 300 s certificates, so allow it to land).
	requireOrdersMatchRenewals(t, c, proxy, id)
	st = MustDo(t, c, http.MethodGet, Mount+"/status/certs", nil)
	assert.NotContains(t, stringList(st.Data["failing"]), id, "no longer failing: %s", st)
}

// TestExpiredCertificateRetriesWithoutHammering: a 180-s certificate whose CA stays unreachable
// past its expiry keeps retrying, so that it comes back soon after the CA does, but no longer at
// the 2 s floor used while racing the expiry: once expired, attempts are a tenth of its life apart,
// and at least a minute (what the README promises). Before, an expired certificate retried every
// 2 s for as long as the fault lasted.
func TestExpiredCertificateRetriesWithoutHammering(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()

	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("expired")
	is := env.SetupProxiedIssuer(t, c, proxy, id, SoakProfile)
	first := IssueCert(t, c, id, map[string]any{"role": is.Role, "domains": id + "." + env.Zone}, 2*time.Minute)
	life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	require.InDelta(t, 180, life.Seconds(), 2, "profile %s", SoakProfile)
	step := max(life/10, time.Minute)

	proxy.SetFault(Unreachable())
	expiry := first.Leaf.NotAfter
	t.Logf("CA unreachable from %s; the certificate expires at %s", time.Now().Format(time.TimeOnly), expiry.Format(time.TimeOnly))
	time.Sleep(time.Until(expiry.Add(step + 2*time.Second)))

	// A step after expiry: attempts go on, a step apart.
	const window = 150 * time.Second
	r0 := readCertOK(t, c, id)
	require.Equal(t, first.SerialNumber, fmt.Sprint(r0.Data["serial_number"]), "nothing was renewed while the CA was away")
	a0 := intField(r0.Data, "attempts")
	require.GreaterOrEqual(t, a0, 3, "renewal attempts failed before and after the expiry")
	next := timeField(t, r0.Data, "next_attempt_at")
	assert.LessOrEqual(t, time.Until(next), step+time.Second, "next_attempt_at after expiry: at most %s away", step)
	time.Sleep(window)
	r1 := readCertOK(t, c, id)
	a1 := intField(r1.Data, "attempts")
	t.Logf("expired %s ago: %d attempts so far, %d in the last %s (one every %s; at the 2 s floor it would be about %d); next_attempt_at %s",
		time.Since(expiry).Round(time.Second), a1, a1-a0, window, step, int(window/(2*time.Second)), timeField(t, r1.Data, "next_attempt_at").Format(time.TimeOnly))
	assert.GreaterOrEqual(t, a1-a0, int(window/step)-1, "attempts go on after expiry")
	assert.LessOrEqual(t, a1-a0, int(window/step)+1, "attempts after expiry are %s apart, not every 2 s", step)
	assert.Equal(t, 1, proxy.NewOrders(), "no order reached the CA while it was away")

	// The CA is back: the next attempt renews.
	proxy.SetFault(nil)
	cleared := time.Now()
	renewed := waitCertField(t, c, id, step+30*time.Second, "renewal within a step + 30 s of the CA's return", func(r *Resp) bool {
		return fmt.Sprint(r.Data["serial_number"]) != first.SerialNumber
	})
	t.Logf("renewed %s after the CA came back: serial %v", time.Since(cleared).Round(time.Second), renewed.Data["serial_number"])
	assert.Equal(t, 0, intField(renewed.Data, "attempts"), "attempts reset by the renewal")
	cert, err := ParseCert(renewed.Data)
	require.NoError(t, err)
	assert.True(t, time.Now().Before(cert.Leaf.NotAfter), "the served certificate is current again")
	requireOrdersMatchRenewals(t, c, proxy, id)
}

// TestRateLimitedHonoursRetryAfter: a CA answering the renewal's new-order with 429 rateLimited and
// Retry-After 150 s pushes next_attempt_at to 150 s (not the 1 min backoff), and no new-order
// request reaches the CA before then; once the limit is gone a forced renewal works.
func TestRateLimitedHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()

	const retryAfter = 150 * time.Second
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("ratelim")
	domain := id + "." + env.Zone
	is := env.SetupProxiedIssuer(t, c, proxy, id, "default") // 90 days: nothing renews by itself
	first := IssueCert(t, c, id, map[string]any{"role": is.Role, "domains": domain}, 2*time.Minute)
	orderPath := proxy.NewOrderPath()

	proxy.SetFault(RateLimited(orderPath, retryAfter, 0))
	postsBefore := proxy.Requests(http.MethodPost, orderPath)
	forced := time.Now()
	w := MustDo(t, c, http.MethodPost, Mount+"/renew/"+id, map[string]any{"wait": "0s"})
	require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, w.Status, "renew: %s", w)
	failed := waitCertField(t, c, id, 60*time.Second, "attempts >= 1", func(r *Resp) bool { return intField(r.Data, "attempts") >= 1 })
	failedAt := time.Now()
	next := timeField(t, failed.Data, "next_attempt_at")
	t.Logf("rate limited: attempts %v, next_attempt_at in %s, last_error %q", failed.Data["attempts"], time.Until(next).Round(time.Second), failed.Data["last_error"])
	assert.Equal(t, first.SerialNumber, fmt.Sprint(failed.Data["serial_number"]), "the old certificate is still served")
	assert.Equal(t, "valid", failed.Data["status"])
	assert.Contains(t, fmt.Sprint(failed.Data["last_error"]), "rateLimited", "last_error names the CA's problem")
	assertTimeNear(t, next, forced.Add(retryAfter), failedAt.Add(retryAfter), 15*time.Second, "next_attempt_at (Retry-After 150 s)")
	attemptsAfterFailure := proxy.Requests(http.MethodPost, orderPath)
	assert.Equal(t, postsBefore+1, attemptsAfterFailure, "exactly one new-order request for the forced renewal")

	// Nothing may knock at the CA's door before Retry-After has passed.
	observeUntil := time.Now().Add(75 * time.Second)
	for time.Now().Before(observeUntil) {
		time.Sleep(5 * time.Second)
		r := readCertOK(t, c, id)
		require.Equal(t, attemptsAfterFailure, proxy.Requests(http.MethodPost, orderPath),
			"a new-order request reached the CA %s before its Retry-After", time.Until(next).Round(time.Second))
		require.Equal(t, 1, intField(r.Data, "attempts"), "no further attempt: %v", r.Data["last_error"])
		require.Equal(t, first.SerialNumber, fmt.Sprint(r.Data["serial_number"]))
	}
	t.Logf("no new-order request for %s after the rate-limited one", time.Since(failedAt).Round(time.Second))

	// A forced renewal clears the backoff but not the CA's Retry-After: the account is held, the
	// renewal waits (202, saying why) and still nothing reaches the CA.
	proxy.SetFault(nil)
	w = MustDo(t, c, http.MethodPost, Mount+"/renew/"+id, map[string]any{"wait": "5s"})
	require.Equal(t, http.StatusAccepted, w.Status, "renew before Retry-After: %s", w)
	assert.Contains(t, fmt.Sprint(w.Data["waiting"]), "rateLimited answer from the CA", "the answer says why it waits")
	assert.Equal(t, attemptsAfterFailure, proxy.Requests(http.MethodPost, orderPath), "no new-order request before Retry-After")

	// When Retry-After has passed, the waiting renewal goes through by itself.
	renewed := waitCertField(t, c, id, time.Until(next)+60*time.Second, "a new certificate after Retry-After", func(r *Resp) bool {
		return fmt.Sprint(r.Data["serial_number"]) != first.SerialNumber
	})
	assert.False(t, time.Now().Before(next.Add(-2*time.Second)), "renewed before Retry-After")
	assert.NotEqual(t, first.SerialNumber, fmt.Sprint(renewed.Data["serial_number"]))
	assert.Equal(t, 0, intField(renewed.Data, "attempts"))
	assert.Empty(t, renewed.Data["last_error"])
	assert.Equal(t, 2, proxy.NewOrders(), "one order for the first certificate, one for the renewal")
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the fault, crash and HA tests

// readCertOK reads certs/<name> and requires 200.
func readCertOK(t testing.TB, c *vaultapi.Client, name string) *Resp {
	t.Helper()
	r := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
	require.Equal(t, http.StatusOK, r.Status, "read certs/%s: %s", name, r)
	return r
}

// waitCertField reads certs/<name> (200 required) every second until ok or timeout.
func waitCertField(t testing.TB, c *vaultapi.Client, name string, timeout time.Duration, what string, ok func(*Resp) bool) *Resp {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := readCertOK(t, c, name)
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			require.FailNowf(t, "timed out", "certs/%s: no %s within %s; last read: status %v serial %v attempts %v renewals %v renew_at %v next_attempt_at %v last_error %q",
				name, what, timeout, r.Data["status"], r.Data["serial_number"], r.Data["attempts"], r.Data["renewals"], r.Data["renew_at"], r.Data["next_attempt_at"], r.Data["last_error"])
		}
		time.Sleep(time.Second)
	}
}

// requireOrdersMatchRenewals waits (up to 30 s, for an order in flight) until the proxy's count of
// created orders equals the certificates stored for name (1 + renewals).
func requireOrdersMatchRenewals(t testing.TB, c *vaultapi.Client, proxy *ACMEProxy, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := readCertOK(t, c, name)
		stored := 1 + intField(r.Data, "renewals")
		if proxy.NewOrders() == stored {
			return
		}
		if time.Now().After(deadline) {
			require.FailNowf(t, "orders and certificates differ", "certs/%s: %d certificates stored (renewals %v) but %d orders created at the CA",
				name, stored, r.Data["renewals"], proxy.NewOrders())
		}
		time.Sleep(time.Second)
	}
}

// intField is a JSON number field of a response as int (0 when absent).
func intField(data map[string]any, key string) int {
	switch v := data[key].(type) {
	case float64:
		return int(v)
	case int:
		return v
	}
	return 0
}

// timeField parses an RFC 3339 field of a response.
func timeField(t testing.TB, data map[string]any, key string) time.Time {
	t.Helper()
	s, _ := data[key].(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoErrorf(t, err, "field %s = %v", key, data[key])
	return ts
}

// assertTimeNear checks lo-slack <= got <= hi+slack.
func assertTimeNear(t testing.TB, got, lo, hi time.Time, slack time.Duration, what string) {
	t.Helper()
	assert.Truef(t, !got.Before(lo.Add(-slack)) && !got.After(hi.Add(slack)),
		"%s is %s: expected between %s and %s (±%s)", what, got.Format(time.RFC3339), lo.Format(time.RFC3339), hi.Format(time.RFC3339), slack)
}

func stringList(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}

// normSerial is a serial in lower-case hex without separators or leading zeros.
func normSerial(s string) string {
	return strings.TrimLeft(strings.ToLower(strings.NewReplacer(":", "", "-", "").Replace(strings.TrimSpace(s))), "0")
}

// requestLog wraps a Fault and records the method and path of every request the proxy sees.
type requestLog struct {
	mu   sync.Mutex
	reqs []string // "METHOD /path"
}

func (l *requestLog) wrap(inner Fault) Fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
		l.mu.Unlock()
		return inner != nil && inner(w, r)
	}
}

// paths returns the paths of method requests that start with prefix, in order.
func (l *requestLog) paths(method, prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.reqs {
		m, p, _ := strings.Cut(r, " ")
		if m == method && strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out
}

func (l *requestLog) distinct(method, prefix string) []string {
	p := l.paths(method, prefix)
	slices.Sort(p)
	return slices.Compact(p)
}
