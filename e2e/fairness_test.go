package e2e

// Tests of what one tenant can spend or hold with a real tenant token: fair sharing of the
// issuance workers between roles, forced renewals bounded by forced_renewal_interval, the
// per-account order budget, and max_certificates. Helpers used by bench_fairness_test.go too
// (slow DNS configuration, fair tenants, polling status/certs) are at the end of this file.

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFairnessSlowTenantDoesNotSlowAnother: a tenant whose DNS records never become visible (its
// configuration's resolver does not answer) declares 24 certificates; each job holds a worker
// for the whole propagation timeout. Its role holds at most 6 of the 8 workers (the rest queue,
// "queued" on status/certs), and another tenant's certificate is issued within 15 s meanwhile.
func TestFairnessSlowTenantDoesNotSlowAnother(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()

	const slowJobs = 24
	root := env.RootClient(t)
	id := Unique("fair")
	acct := id + "-acct"
	env.CreateAccount(t, root, acct, nil)
	slowTeam, fastTeam := id+"-slow", id+"-fast"
	env.CreateDNS(t, root, slowTeam+"-dns", SlowDNSData(t, "60s"))
	env.CreateDNS(t, root, fastTeam+"-dns", nil)
	CreateRole(t, root, slowTeam, TeamRole(acct, slowTeam+"-dns", slowTeam, nil))
	CreateRole(t, root, fastTeam, TeamRole(acct, fastTeam+"-dns", fastTeam, nil))
	slow := teamToken(t, root, slowTeam)
	fast := teamToken(t, root, fastTeam)

	var slowNames []string
	for i := range slowJobs {
		slowNames = append(slowNames, fmt.Sprintf("%s/c%02d", slowTeam, i))
	}
	// Deleting cancels the jobs in flight, so that they do not hold workers for the rest of the
	// suite (each would otherwise hold one for 60 s, and the queue for four minutes).
	t.Cleanup(func() { DeleteCertsAndDrain(t, root, slowNames) })

	writesWaiting := 0
	for i, name := range slowNames {
		w := MustDo(t, slow, http.MethodPut, Mount+"/certs/"+name, map[string]any{
			"role": slowTeam, "domains": fmt.Sprintf("c%02d.%s.%s", i, slowTeam, env.Zone), "wait": "0s",
		})
		require.Equal(t, http.StatusAccepted, w.Status, "write certs/%s: %s", name, w)
		require.Equal(t, "pending", w.Data["status"], "%s", w)
		if fmt.Sprint(w.Data["waiting"]) != "" {
			writesWaiting++
		}
	}
	t.Logf("%d slow certificates declared (%d write answers already said why they wait)", slowJobs, writesWaiting)

	// The slow role queues beyond its share: at least 24-6 of its jobs wait, "queued".
	var queued map[string]string
	waitFor(t, 20*time.Second, "the slow tenant's jobs to queue", func() (bool, string) {
		queued = WaitingCerts(t, root, slowTeam+"/", "queued")
		return len(queued) >= slowJobs-6, fmt.Sprintf("%d queued", len(queued))
	})
	for _, why := range queued {
		t.Logf("status/certs: a slow certificate waits: %q", why)
		break
	}

	start := time.Now()
	w := MustDo(t, fast, http.MethodPut, Mount+"/certs/"+fastTeam+"/app", map[string]any{
		"role": fastTeam, "domains": "app." + fastTeam + "." + env.Zone, "wait": "30s",
	})
	took := time.Since(start)
	t.Logf("the other tenant's certificate was issued in %s while the slow tenant held its workers", took.Round(time.Millisecond))
	require.Equal(t, http.StatusOK, w.Status, "the other tenant's write (after %s): %s", took, w)
	assert.Equal(t, "valid", w.Data["status"])
	assert.Less(t, took, 15*time.Second, "the other tenant's issuance must not wait for the slow tenant's jobs")
	cert := WaitCert(t, fast, fastTeam+"/app", 5*time.Second)
	assert.Equal(t, []string{"app." + fastTeam + "." + env.Zone}, cert.Leaf.DNSNames)

	// The slow tenant was still holding its workers all along (its jobs take 60 s each).
	still := WaitingCerts(t, root, slowTeam+"/", "queued")
	assert.GreaterOrEqual(t, len(still), slowJobs-6, "the slow tenant's jobs still queue after the fast issuance")
	reasons := map[string]int{}
	for _, why := range still {
		reasons[why]++
	}
	// The reason is the one given when the job queued ("all 8 workers are busy" when other tests'
	// jobs held the other two workers at that moment), so both forms are accepted.
	t.Logf("status/certs after the fast issuance: %d slow certificates queued, reasons %v", len(still), reasons)
}

// TestFairnessForcedRenewalFlood: with the role's default forced_renewal_interval (1h), 25
// renewals and 25 revocations by hand right after issuance are all answered 429, and no order
// (nor revocation) reaches the CA after the first order.
func TestFairnessForcedRenewalFlood(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()

	root := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	team := Unique("flood")
	is := ProxiedTeamIssuer(t, root, proxy, team, nil, nil)
	role := MustDo(t, root, http.MethodGet, Mount+"/roles/"+is.Role, nil)
	require.EqualValues(t, 3600, role.Data["forced_renewal_interval"], "default forced_renewal_interval: %s", role)
	tok := teamToken(t, root, team)
	name := team + "/app"
	first := IssueCert(t, tok, name, map[string]any{"role": is.Role, "domains": "app." + team + "." + env.Zone}, 2*time.Minute)
	require.Equal(t, 1, proxy.NewOrders())

	for _, action := range []string{"renew", "revoke"} {
		for i := range 25 {
			r := MustDo(t, tok, http.MethodPut, Mount+"/"+action+"/"+name, map[string]any{"wait": "0s", "reason": "superseded"})
			require.Equal(t, http.StatusTooManyRequests, r.Status, "%s #%d right after issuance: %s", action, i+1, r)
			require.Contains(t, r.ErrorText(), "forced_renewal_interval")
		}
	}
	time.Sleep(2 * time.Second) // anything started in the background would have ordered by now
	assert.Equal(t, 1, proxy.NewOrders(), "no new order after the first")
	assert.Zero(t, proxy.Requests(http.MethodPost, "/revoke-cert"), "no revocation reached the CA")
	r := readCertOK(t, tok, name)
	assert.Equal(t, first.SerialNumber, fmt.Sprint(r.Data["serial_number"]))
	assert.Equal(t, 0, intField(r.Data, "attempts"))
	assert.Equal(t, 0, intField(r.Data, "renewals"))
}

// TestFairnessOrderBudget: an account with order_limit=3/6s (3 at once, then one every 2 s) and 9
// certificates declared at once: every one is issued, the k-th order reaches the CA no earlier
// than (k-3)*2 s after the first, the waiting ones say so ("order budget") without counting a
// failure, and the CA never answers rateLimited.
func TestFairnessOrderBudget(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()

	const (
		n      = 9
		burst  = 3
		refill = 2 * time.Second
	)
	root := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	team := Unique("budget")
	is := ProxiedTeamIssuer(t, root, proxy, team, map[string]any{"order_limit": "3/6s"}, nil)
	acct := MustDo(t, root, http.MethodGet, Mount+"/accounts/"+is.Account, nil)
	require.Equal(t, http.StatusOK, acct.Status, "%s", acct)
	t.Logf("account order_limit %v", acct.Data["order_limit"])
	tok := teamToken(t, root, team)

	var names []string
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("%s/c%d", team, i)
		names = append(names, name)
		w := MustDo(t, tok, http.MethodPut, Mount+"/certs/"+name, map[string]any{
			"role": is.Role, "domains": fmt.Sprintf("c%d.%s.%s", i, team, env.Zone), "wait": "0s",
		})
		require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, w.Status, "write certs/%s: %s", name, w)
	}

	var (
		mu         sync.Mutex
		budgetSeen []string // waiting reasons naming the order budget
		maxAttempt int
		vault429   int
		issued     = map[string]time.Duration{}
	)
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(90 * time.Second)
			for time.Now().Before(deadline) {
				r, err := Do(t.Context(), tok, http.MethodGet, Mount+"/certs/"+name, nil)
				if err != nil {
					return
				}
				mu.Lock()
				why := fmt.Sprint(r.Data["waiting"])
				if r.Status == http.StatusServiceUnavailable {
					why = r.ErrorText()
				}
				if strings.Contains(why, "order budget") {
					budgetSeen = append(budgetSeen, why)
				}
				maxAttempt = max(maxAttempt, intField(r.Data, "attempts"))
				if r.Status == http.StatusTooManyRequests {
					vault429++
				}
				if r.Status == http.StatusOK {
					issued[name] = time.Since(start)
				}
				done := r.Status == http.StatusOK || r.FailedAttempt()
				mu.Unlock()
				if done {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	total := time.Since(start)
	require.Len(t, issued, n, "every certificate is issued within 90 s")

	times := proxy.NewOrderTimes()
	require.Len(t, times, n, "one order per certificate")
	for k := burst + 1; k <= n; k++ {
		earliest := time.Duration(k-burst)*refill - 500*time.Millisecond
		got := times[k-1].Sub(times[0])
		assert.GreaterOrEqual(t, got, earliest, "order %d reached the CA %s after the first; the budget allows it only after %s", k, got, earliest+500*time.Millisecond)
	}
	var offsets []string
	for _, ts := range times {
		offsets = append(offsets, fmt.Sprintf("%.1fs", ts.Sub(times[0]).Seconds()))
	}
	t.Logf("orders reached the CA at +%s; all %d issued in %s (budget minimum %s)", strings.Join(offsets, " +"), n, total.Round(100*time.Millisecond), time.Duration(n-burst)*refill)

	require.NotEmpty(t, budgetSeen, "reads say that certificates wait for the order budget")
	t.Logf("%d reads said why they wait, e.g. %q", len(budgetSeen), budgetSeen[0])
	assert.Contains(t, budgetSeen[0], "new orders per account (3/6s)")
	assert.Zero(t, maxAttempt, "waiting for the budget is not a failure (attempts stay 0)")
	assert.Zero(t, vault429, "no 429 from Vault")
	assert.Zero(t, proxy.UpstreamStatuses(http.StatusTooManyRequests), "the CA never answered rateLimited")
	for _, name := range names {
		r := readCertOK(t, tok, name)
		assert.Equal(t, 0, intField(r.Data, "attempts"), "%s", name)
		assert.Empty(t, r.Data["last_error"], "%s", name)
		assert.Empty(t, r.Data["waiting"], "%s", name)
	}
}

// TestFairnessQuota: a role with max_certificates=2 refuses a tenant's third certificate (400
// naming max_certificates, nothing stored), also when many are written at once, and when an
// existing certificate is moved into the full role; moving one out or deleting one frees a place.
func TestFairnessQuota(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()

	root := env.RootClient(t)
	team := Unique("quota")
	acct, dns := team+"-acct", team+"-dns"
	env.CreateAccount(t, root, acct, nil)
	env.CreateDNS(t, root, dns, nil)
	capped, open := team+"-capped", team+"-open"
	CreateRole(t, root, capped, TeamRole(acct, dns, team, map[string]any{"max_certificates": 2}))
	CreateRole(t, root, open, TeamRole(acct, dns, team, nil))
	tok := teamToken(t, root, team)
	domain := func(s string) string { return s + "." + team + "." + env.Zone }
	write := func(name, role string) *Resp {
		return MustDo(t, tok, http.MethodPut, Mount+"/certs/"+team+"/"+name, map[string]any{"role": role, "domains": domain(name), "wait": "0s"})
	}

	t.Run("third certificate is 400", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			r := write(name, capped)
			require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "%s: %s", name, r)
		}
		r := write("c", capped)
		require.Equal(t, http.StatusBadRequest, r.Status, "third certificate: %s", r)
		assert.Contains(t, r.ErrorText(), "max_certificates")
		assertNotStored(t, root, team+"/c")
		// Rewriting one it already has is not a new certificate.
		r = write("a", capped)
		assert.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "rewrite of an existing certificate: %s", r)
	})

	t.Run("moving a certificate into the full role is 400", func(t *testing.T) {
		r := write("m", open)
		require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "%s", r)
		r = write("m", capped)
		require.Equal(t, http.StatusBadRequest, r.Status, "move into the full role: %s", r)
		assert.Contains(t, r.ErrorText(), "max_certificates")
		m := MustDo(t, root, http.MethodGet, Mount+"/certs/"+team+"/m", nil)
		assert.Equal(t, open, m.Data["role"], "the certificate keeps its role: %s", m)
	})

	t.Run("moving out or deleting frees a place", func(t *testing.T) {
		r := write("a", open) // leaves the capped role
		require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "%s", r)
		r = write("c", capped)
		require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "a place was freed by moving a out: %s", r)
		r = write("d", capped)
		require.Equal(t, http.StatusBadRequest, r.Status, "full again: %s", r)
		MustDo(t, tok, http.MethodDelete, Mount+"/certs/"+team+"/b", nil)
		r = write("d", capped)
		require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "a place was freed by deleting b: %s", r)
	})

	// Concurrent writes cannot overrun the quota.
	t.Run("concurrent writes", func(t *testing.T) {
		role := team + "-race"
		CreateRole(t, root, role, TeamRole(acct, dns, team, map[string]any{"max_certificates": 3}))
		var wg sync.WaitGroup
		statuses := make([]int, 12)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := Do(t.Context(), tok, http.MethodPut, Mount+"/certs/"+team+fmt.Sprintf("/r%d", i), map[string]any{
					"role": role, "domains": domain(fmt.Sprintf("r%d", i)), "wait": "0s",
				})
				if err == nil {
					statuses[i] = r.Status
				}
			}()
		}
		wg.Wait()
		accepted := 0
		for _, s := range statuses {
			if s == http.StatusOK || s == http.StatusAccepted {
				accepted++
			} else {
				assert.Equal(t, http.StatusBadRequest, s)
			}
		}
		assert.Equal(t, 3, accepted, "12 concurrent writes into a role with max_certificates=3: %v", statuses)
		listed := 0
		for _, k := range List(t, root, Mount+"/certs/"+team) {
			if strings.HasPrefix(k, "r") {
				listed++
			}
		}
		assert.Equal(t, 3, listed, "stored")
	})
}

// TestFairnessAttacks: what a tenant can still do to spend the shared account's orders, with a
// real token and two roles granted to it (a strict one with the default forced_renewal_interval
// and a loose one with 0). The asserted behaviour is the designed one; the log says what it costs.
func TestFairnessAttacks(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()

	root := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	team := Unique("attack")
	is := ProxiedTeamIssuer(t, root, proxy, team, nil, nil)
	loose := team + "-loose"
	CreateRole(t, root, loose, TeamRole(is.Account, is.DNS, team, map[string]any{"forced_renewal_interval": "0s"}))
	tok := teamToken(t, root, team)
	domain := func(s string) string { return s + "." + team + "." + env.Zone }

	// Moving a certificate to a role with a looser forced_renewal_interval: the renewal is then
	// governed by the new role. It is the operator who granted the tenant that role.
	t.Run("role change to a looser interval", func(t *testing.T) {
		name := team + "/mv"
		first := IssueCert(t, tok, name, map[string]any{"role": is.Role, "domains": domain("mv")}, 2*time.Minute)
		before := proxy.NewOrders()
		r := MustDo(t, tok, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "0s"})
		require.Equal(t, http.StatusTooManyRequests, r.Status, "%s", r)
		r = MustDo(t, tok, http.MethodPut, Mount+"/certs/"+name, map[string]any{"role": loose, "wait": "30s"})
		require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "move to the loose role: %s", r)
		afterMove := proxy.NewOrders()
		r = MustDo(t, tok, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "30s"})
		t.Logf("role change to forced_renewal_interval=0: the move ordered %d certificate(s); renew then answered %d", afterMove-before, r.Status)
		assert.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "the loose role allows renewals by hand: %s", r)
		renewed := WaitCert(t, tok, name, time.Minute)
		time.Sleep(time.Second)
		t.Logf("serial before %s, after %s; orders for the move and the renewal: %d", first.SerialNumber, renewed.SerialNumber, proxy.NewOrders()-before)
		assert.Equal(t, 0, afterMove-before, "the move itself orders nothing")
		assert.LessOrEqual(t, proxy.NewOrders()-before, 1, "one order: the renewal the looser role allows")
	})

	// Changing only the role (same domains, key type and profile) reissues nothing: flipping
	// between two roles with the default 1h interval is no way around it.
	t.Run("role flips between two strict roles", func(t *testing.T) {
		other := team + "-strict2"
		CreateRole(t, root, other, TeamRole(is.Account, is.DNS, team, nil))
		name := team + "/rf"
		IssueCert(t, tok, name, map[string]any{"role": is.Role, "domains": domain("rf")}, 2*time.Minute)
		before := proxy.NewOrders()
		for i := range 4 {
			role := other
			if i%2 == 1 {
				role = is.Role
			}
			r := MustDo(t, tok, http.MethodPut, Mount+"/certs/"+name, map[string]any{"role": role, "wait": "60s"})
			require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "flip %d: %s", i, r)
			renew := MustDo(t, tok, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "0s"})
			assert.Equal(t, http.StatusTooManyRequests, renew.Status, "renew/ after flip %d: %s", i, renew)
		}
		time.Sleep(time.Second)
		t.Logf("4 role changes between two roles with forced_renewal_interval 1h ordered %d certificates (renew/ answered 429 each time)", proxy.NewOrders()-before)
		assert.Equal(t, 0, proxy.NewOrders()-before, "a role change alone orders nothing")
	})

	// forced_renewal_interval bounds renew/ and revoke/ only: rewriting the domains orders a new
	// certificate each time (as documented), and so does deleting and declaring again.
	t.Run("domain flips and delete/recreate", func(t *testing.T) {
		name := team + "/flip"
		IssueCert(t, tok, name, map[string]any{"role": is.Role, "domains": domain("flip")}, 2*time.Minute)
		before := proxy.NewOrders()
		for i := range 3 {
			d := domain("flip")
			if i%2 == 0 {
				d += "," + domain("flip2")
			}
			r := MustDo(t, tok, http.MethodPut, Mount+"/certs/"+name, map[string]any{"domains": d, "wait": "60s"})
			require.Equal(t, http.StatusOK, r.Status, "flip %d: %s", i, r)
		}
		flips := proxy.NewOrders() - before
		before = proxy.NewOrders()
		for i := range 3 {
			MustDo(t, tok, http.MethodDelete, Mount+"/certs/"+name, nil)
			r := MustDo(t, tok, http.MethodPut, Mount+"/certs/"+name, map[string]any{"role": is.Role, "domains": domain("flip"), "wait": "60s"})
			require.Equal(t, http.StatusOK, r.Status, "recreate %d: %s", i, r)
		}
		recreated := proxy.NewOrders() - before
		t.Logf("within the 1h forced_renewal_interval: 3 domain changes ordered %d certificates, 3 delete+recreate ordered %d (only the account's order budget bounds these)", flips, recreated)
		assert.Equal(t, 3, flips)
		assert.Equal(t, 3, recreated)
	})

	// A certificate that never issued has no issuance time, so forced_renewal_interval does not
	// apply to it: renew/ retries at once (clearing the backoff).
	t.Run("renew flood on a failing certificate", func(t *testing.T) {
		failDNS := team + "-fail-dns"
		env.CreateDNS(t, root, failDNS, SlowDNSData(t, "1s"))
		failRole := team + "-fail"
		CreateRole(t, root, failRole, TeamRole(is.Account, failDNS, team, nil))
		name := team + "/fail"
		before := proxy.NewOrders()
		r := MustDo(t, tok, http.MethodPut, Mount+"/certs/"+name, map[string]any{"role": failRole, "domains": domain("fail"), "wait": "60s"})
		require.Equal(t, http.StatusAccepted, r.Status, "%s", r)
		statuses := map[int]int{}
		for i := range 5 {
			r := MustDo(t, tok, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "60s"})
			statuses[r.Status]++
			if i == 0 {
				t.Logf("renew of a failing certificate answered: %s", r)
			}
		}
		orders := proxy.NewOrders() - before
		t.Logf("a failing certificate renewed 5 times by hand: answers %v, %d orders at the CA for 6 attempts", statuses, orders)
		assert.LessOrEqual(t, orders, 6)
		MustDo(t, root, http.MethodDelete, Mount+"/certs/"+name, nil)
	})
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with bench_fairness_test.go

// ClosedResolver returns 127.0.0.1:<port> of a UDP port nothing listens on (bound and released).
func ClosedResolver(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	return addr
}

// SlowDNSData is a DNS configuration that writes its records to BIND but checks them at a
// resolver that never answers, so every job using it holds a worker for propagationTimeout and
// then fails.
func SlowDNSData(t testing.TB, propagationTimeout string) map[string]any {
	return env.DNSData(map[string]any{
		"resolvers":           ClosedResolver(t),
		"propagation_timeout": propagationTimeout,
		"polling_interval":    "1s",
	})
}

// TeamRole is a role's fields for tenant team: names team/*, domains under team.<zone>.
func TeamRole(account, dns, team string, extra map[string]any) map[string]any {
	return merge(map[string]any{
		"account": account, "dns": dns,
		"allowed_domains": team + "." + env.Zone, "allow_subdomains": true,
		"allowed_cert_names": team + "/*",
	}, extra)
}

// ProxiedTeamIssuer is SetupIssuer for tenant team through proxy, with the role's defaults
// (forced_renewal_interval 1h) unless roleFields says otherwise.
func ProxiedTeamIssuer(t testing.TB, c *vaultapi.Client, proxy *ACMEProxy, team string, accountFields, roleFields map[string]any) Issuer {
	t.Helper()
	return env.SetupIssuer(t, c, team, merge(map[string]any{
		"directory_url": proxy.DirectoryURL(env.PebbleDirectory),
		"ca_bundle":     string(proxy.CAPEM),
	}, accountFields), merge(TeamRole("", "", team, map[string]any{"account": nil, "dns": nil}), roleFields))
}

// WaitingCerts returns the certificates under prefix that status/certs lists as waiting, with
// their reason, keeping only reasons containing substr.
func WaitingCerts(t testing.TB, root *vaultapi.Client, prefix, substr string) map[string]string {
	t.Helper()
	st := MustDo(t, root, http.MethodGet, Mount+"/status/certs", nil)
	require.Equal(t, http.StatusOK, st.Status, "status/certs: %s", st)
	details, _ := st.Data["certificates"].(map[string]any)
	out := map[string]string{}
	for _, name := range stringList(st.Data["waiting"]) {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		d, _ := details[name].(map[string]any)
		why := fmt.Sprint(d["waiting"])
		if strings.Contains(why, substr) {
			out[name] = why
		}
	}
	return out
}

// DeleteCertsAndDrain deletes names (root) and waits until status/certs lists none of them.
func DeleteCertsAndDrain(t testing.TB, root *vaultapi.Client, names []string) {
	t.Helper()
	for _, name := range names {
		r := MustDo(t, root, http.MethodDelete, Mount+"/certs/"+name, nil)
		assert.Contains(t, []int{http.StatusOK, http.StatusNoContent, http.StatusNotFound}, r.Status, "delete certs/%s: %s", name, r)
	}
	gone := map[string]bool{}
	for _, n := range names {
		gone[n] = true
	}
	waitFor(t, 30*time.Second, "deleted certificates to leave status/certs", func() (bool, string) {
		st := MustDo(t, root, http.MethodGet, Mount+"/status/certs", nil)
		details, _ := st.Data["certificates"].(map[string]any)
		left := 0
		for name := range details {
			if gone[name] {
				left++
			}
		}
		return left == 0, fmt.Sprintf("%d still listed", left)
	})
}

// waitFor polls cond every 250 ms until it holds or timeout passes (then the test fails with
// cond's last description).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			require.FailNowf(t, "timed out", "waiting %s for %s: %s", timeout, what, desc)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
