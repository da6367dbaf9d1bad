package e2e

// CNAME-delegated DNS-01 (config/dns delegated_domains, the acme-dns pattern), with real BIND zones
// (scripts/env-up.sh): delegated.test holds _acme-challenge CNAMEs, www and api into example.test,
// evil into outside.test, loop to itself; nocname has none. All three zones accept dynamic updates
// with the same TSIG key, so only the plugin's own rules keep a record out of the wrong zone, and
// BIND's log (every update it applies, with its zone) shows where records went.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitAttemptFailed waits until certs/<name>'s issuance attempt has failed and returns what the
// engine says about it (the read's 503 message, which carries last_error).
func waitAttemptFailed(t testing.TB, c *vaultapi.Client, name string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
		require.NotEqualf(t, http.StatusOK, r.Status, "certs/%s was issued: %s", name, r)
		require.Equalf(t, http.StatusServiceUnavailable, r.Status, "read certs/%s: %s", name, r)
		if r.FailedAttempt() {
			return r.ErrorText()
		}
		require.Truef(t, time.Now().Before(deadline), "certs/%s: no failed attempt within %s: %s", name, timeout, r)
		time.Sleep(500 * time.Millisecond)
	}
}

// TestCNAMEDelegatedDNS01 issues a certificate for names of delegated.test whose
// _acme-challenge records are CNAMEs into the configuration's zone (example.test): the TXT records
// are written at the CNAME targets in example.test and nowhere else, and removed afterwards. Names
// whose CNAME points outside the zones (or that have none, or loop) fail with a last_error saying so,
// and nothing is written in delegated.test or outside.test.
func TestCNAMEDelegatedDNS01(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	dz, oz := env.DelegatedZone, env.OutsideZone
	require.NotEmpty(t, dz, "env.json has no DELEGATED_ZONE (scripts/env-up.sh)")
	require.NotEmpty(t, oz, "env.json has no OUTSIDE_ZONE (scripts/env-up.sh)")

	id := Unique("cname")
	env.CreateAccount(t, c, id+"-acct", nil)
	w := env.CreateDNS(t, c, id+"-dns", map[string]any{"zones": env.Zone, "delegated_domains": dz})
	t.Logf("config/dns/%s-dns: %s", id, w)
	got := MustDo(t, c, http.MethodGet, Mount+"/config/dns/"+id+"-dns", nil)
	require.Equal(t, http.StatusOK, got.Status, "%s", got)
	assert.Equal(t, []string{dz}, asStrings(got.Data["delegated_domains"]), "delegated_domains on the read")
	assert.Equal(t, []string{env.Zone}, asStrings(got.Data["zones"]), "zones on the read")
	CreateRole(t, c, id, map[string]any{
		"account": id + "-acct", "dns": id + "-dns", "allowed_domains": dz, "allow_subdomains": true,
		"allowed_cert_names": id + "/*",
	})
	// Names of the other zones never see an update from this test.
	strayZones := []string{"'" + dz + "/IN'", "'" + oz + "/IN'"}

	t.Run("delegated into the zone", func(t *testing.T) {
		mark := namedLogMark(t)
		names := []string{"www." + dz, "api." + dz}
		start := time.Now()
		cert := IssueCert(t, c, id+"/www", map[string]any{"role": id, "domains": strings.Join(names, ",")}, 3*time.Minute)
		t.Logf("certificate for %v issued in %s through CNAMEs into %s", names, time.Since(start).Round(time.Millisecond), env.Zone)
		assert.ElementsMatch(t, names, cert.Leaf.DNSNames, "SANs")
		requireChainsToPebble(t, cert, names[0])
		assert.Empty(t, cert.Data["last_error"])

		updates := namedUpdatesSince(t, mark)
		for _, n := range names {
			target := n + ".acme." + env.Zone // env-up.sh: _acme-challenge.<n> CNAME <n>.acme.<zone>.
			want := fmt.Sprintf("updating zone '%s/IN': adding an RR at '%s' TXT", env.Zone, target)
			assert.Truef(t, containsLine(updates, want), "BIND applied no %q; updates: %s", want, strings.Join(updates, "\n"))
			// Cleaned up: nothing left at the target.
			waitFor(t, 30*time.Second, "the TXT record at "+target+" to be removed", func() (bool, string) {
				txt := digTXT(t, target)
				return len(txt) == 0, fmt.Sprint(txt)
			})
		}
		for _, u := range updates {
			for _, z := range strayZones {
				assert.NotContains(t, u, z, "an update outside the configuration's zones")
			}
		}
	})

	// refused issues certs/<id>/<label> for <label>.<dz> and requires its attempt to fail with a
	// message that names each of the groups in mention (one word of each, case-insensitive), with
	// nothing written for the name anywhere, nor anything in the other zones.
	refused := func(t *testing.T, label string, mention ...[]string) {
		name, domain := id+"/"+label, label+"."+dz
		mark := namedLogMark(t)
		w := MustDo(t, c, http.MethodPut, Mount+"/certs/"+name, map[string]any{"role": id, "domains": domain, "wait": "60s"})
		var msg string
		if w.Status == http.StatusBadRequest {
			msg = w.ErrorText() // refused before any order: as good, as long as it says why
		} else {
			require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, w.Status, "write certs/%s: %s", name, w)
			require.NotEqual(t, "valid", fmt.Sprint(w.Data["status"]), "certs/%s must not be issued: %s", name, w)
			msg = waitAttemptFailed(t, c, name, 2*time.Minute)
		}
		t.Logf("%s: %s", domain, msg)
		for _, m := range mention {
			assert.Truef(t, containsAnyFold(msg, m), "the message names one of %q: %q", m, msg)
		}
		assert.NotContains(t, strings.ToLower(msg), "internal error")
		for _, u := range namedUpdatesSince(t, mark) {
			assert.NotContains(t, u, label+"."+dz, "BIND applied an update for %s", domain)
			assert.NotContains(t, u, "'"+label+"."+oz+"'", "BIND applied an update in %s", oz)
			for _, z := range strayZones {
				assert.NotContains(t, u, z, "an update outside the configuration's zones")
			}
		}
		assert.Empty(t, digTXT(t, label+"."+oz), "no TXT at the CNAME target outside the zones")
		st := MustDo(t, c, http.MethodGet, Mount+"/status/certs", nil)
		require.Equal(t, http.StatusOK, st.Status, "%s", st)
		MustDo(t, c, http.MethodDelete, Mount+"/certs/"+name, nil)
	}
	t.Run("CNAME out of the zones", func(t *testing.T) {
		refused(t, "evil", []string{"outside"}, []string{"zone"}, []string{"_acme-challenge.evil." + dz, "evil." + oz})
	})
	// (The words asked for below do not occur in the names themselves: "nocname" holds "cname",
	// "loop.delegated.test" holds "loop".)
	t.Run("no CNAME", func(t *testing.T) {
		refused(t, "nocname", []string{"outside"}, []string{"zone"}, []string{"_acme-challenge.nocname." + dz})
	})
	t.Run("CNAME loop", func(t *testing.T) {
		refused(t, "loop", []string{"outside", "cname chain", "loops", "too many"}, []string{"_acme-challenge.loop." + dz})
	})

	t.Run("bad delegated_domains", func(t *testing.T) {
		for i, v := range []string{"*." + dz, "a..b", "-bad-.test", strings.Repeat("a", 64) + ".test", "http://" + dz, dz + "/x"} {
			path := fmt.Sprintf("config/dns/%s-bad%d", id, i)
			r := MustDo(t, c, http.MethodPut, Mount+"/"+path, env.DNSData(map[string]any{"zones": env.Zone, "delegated_domains": v}))
			assert.Equalf(t, http.StatusBadRequest, r.Status, "delegated_domains=%q: %s", v, r)
			assert.Truef(t, containsAnyFold(r.ErrorText(), []string{"delegated_domains", v}), "message %q names the field", r.ErrorText())
			assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/"+path, nil).Status, "nothing stored at %s", path)
		}
	})
}

// containsLine reports whether one of lines contains s.
func containsLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
