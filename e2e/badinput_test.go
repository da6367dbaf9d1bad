package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type badCase struct {
	name    string         // sub-test name
	path    string         // under the mount, e.g. accounts/bad-1
	data    map[string]any // the request body
	mention []string       // the error must contain one of these (case-insensitive)
}

// TestBadInput: every invalid write answers 400 with a message that names the offending field or
// value, and stores nothing.
func TestBadInput(t *testing.T) {
	c := env.RootClient(t)
	is := env.SetupIssuer(t, c, "bi", nil, map[string]any{
		"allowed_domains":             env.Zone,
		"allow_subdomains":            true,
		"allow_bare_domains":          true,
		"allow_wildcard_certificates": true,
		"allowed_cert_names":          "bi/*",
	})

	acct := func(o map[string]any) map[string]any { return env.AccountData(t, o) }
	dns := func(o map[string]any) map[string]any { return env.DNSData(o) }
	role := func(o map[string]any) map[string]any {
		return merge(map[string]any{
			"account": is.Account, "dns": is.DNS, "allowed_domains": env.Zone,
			"allow_subdomains": true, "allowed_cert_names": "bad/*",
		}, o)
	}
	cert := func(o map[string]any) map[string]any {
		return merge(map[string]any{"role": is.Role, "domains": "ok." + env.Zone, "wait": "0s"}, o)
	}
	creds := func(drop string, add map[string]any) map[string]any {
		m := env.TSIGCredentials()
		delete(m, drop)
		for k, v := range add {
			m[k] = v
		}
		return m
	}

	long63 := strings.Repeat("a", 64) + "." + env.Zone
	var labels []string
	for i := 0; i < 5; i++ {
		labels = append(labels, strings.Repeat(string(rune('b'+i)), 55))
	}
	long253 := strings.Join(labels, ".") + "." + env.Zone // 5*56 + 12 = 292 characters
	var many []string
	for i := 0; i <= 100; i++ {
		many = append(many, fmt.Sprintf("n%d.%s", i, env.Zone))
	}

	cases := []badCase{
		// accounts
		{"account/missing directory_url", "accounts/bad-a1", acct(map[string]any{"directory_url": nil}), []string{"directory_url"}},
		{"account/invalid directory_url", "accounts/bad-a2", acct(map[string]any{"directory_url": "not a url"}), []string{"directory_url"}},
		{"account/http directory_url", "accounts/bad-a3", acct(map[string]any{"directory_url": "http://127.0.0.1:1/dir"}), []string{"directory_url", "https"}},
		{"account/terms false", "accounts/bad-a4", acct(map[string]any{"terms_of_service_agreed": false}), []string{"terms_of_service_agreed"}},
		{"account/terms missing", "accounts/bad-a5", acct(map[string]any{"terms_of_service_agreed": nil}), []string{"terms_of_service_agreed"}},
		{"account/unknown key_type", "accounts/bad-a6", acct(map[string]any{"key_type": "dsa1024"}), []string{"key_type", "dsa1024"}},
		{"account/bad contact", "accounts/bad-a7", acct(map[string]any{"contact": "not-an-email"}), []string{"contact", "not-an-email"}},
		{"account/malformed ca_bundle", "accounts/bad-a8", acct(map[string]any{"ca_bundle": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"}), []string{"ca_bundle"}},
		{"account/malformed private_key", "accounts/bad-a9", acct(map[string]any{"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}), []string{"private_key"}},
		{"account/eab_kid without eab_hmac_key", "accounts/bad-a10", acct(map[string]any{"eab_kid": "kid-1"}), []string{"eab_hmac_key"}},

		// config/dns
		{"dns/missing provider", "config/dns/bad-d1", dns(map[string]any{"provider": nil}), []string{"provider"}},
		{"dns/unknown provider", "config/dns/bad-d2", dns(map[string]any{"provider": "nope"}), []string{"nope"}},
		{"dns/credential ending in _FILE", "config/dns/bad-d3", dns(map[string]any{"credentials": creds("", map[string]any{"RFC2136_TSIG_FILE": "/etc/passwd"})}), []string{"_FILE"}},
		{"dns/missing required credential", "config/dns/bad-d4", dns(map[string]any{"credentials": creds("RFC2136_NAMESERVER", nil)}), []string{"RFC2136_NAMESERVER"}},
		{"dns/bad resolver", "config/dns/bad-d5", dns(map[string]any{"resolvers": "not_a_resolver!"}), []string{"resolver", "not_a_resolver!"}},

		// roles
		{"role/missing account", "roles/bad-r1", role(map[string]any{"account": nil}), []string{"account"}},
		{"role/account not found", "roles/bad-r2", role(map[string]any{"account": "no-such-acct"}), []string{"no-such-acct"}},
		{"role/dns config not found", "roles/bad-r3", role(map[string]any{"dns": "no-such-dns"}), []string{"no-such-dns"}},
		{"role/missing allowed_cert_names", "roles/bad-r4", role(map[string]any{"allowed_cert_names": nil}), []string{"allowed_cert_names"}},
		{"role/unknown key_type", "roles/bad-r5", role(map[string]any{"key_type": "dsa1024"}), []string{"key_type", "dsa1024"}},

		// certs
		{"cert/missing role", "certs/bi/c1", cert(map[string]any{"role": nil}), []string{"role"}},
		{"cert/role not found", "certs/bi/c2", cert(map[string]any{"role": "no-such-role"}), []string{"no-such-role"}},
		{"cert/role does not allow the name", "certs/other/c3", cert(nil), []string{"other/c3", "allowed_cert_names"}},
		{"cert/empty domains", "certs/bi/c4", cert(map[string]any{"domains": ""}), []string{"domains"}},
		{"cert/label over 63", "certs/bi/c5", cert(map[string]any{"domains": long63}), []string{"63", "label", strings.Repeat("a", 64)}},
		{"cert/name over 253", "certs/bi/c6", cert(map[string]any{"domains": long253}), []string{"253", "too long", long253}},
		{"cert/bad characters", "certs/bi/c7", cert(map[string]any{"domains": "a_b!." + env.Zone}), []string{"a_b!." + env.Zone}},
		{"cert/wildcard inside", "certs/bi/c8", cert(map[string]any{"domains": "www.*." + env.Zone}), []string{"www.*." + env.Zone}},
		{"cert/wildcard without dot", "certs/bi/c9", cert(map[string]any{"domains": "*" + env.Zone}), []string{"*" + env.Zone}},
		{"cert/duplicate names", "certs/bi/c10", cert(map[string]any{"domains": "dup." + env.Zone + ",dup." + env.Zone}), []string{"duplicate", "dup." + env.Zone}},
		{"cert/101 names", "certs/bi/c11", cert(map[string]any{"domains": strings.Join(many, ",")}), []string{"100", "too many"}},
		{"cert/name outside the role", "certs/bi/c12", cert(map[string]any{"domains": "www.other.test"}), []string{"www.other.test"}},
		{"cert/ip address", "certs/bi/c13", cert(map[string]any{"domains": "127.0.0.1"}), []string{"127.0.0.1"}},
		{"cert/unknown key_type", "certs/bi/c14", cert(map[string]any{"key_type": "dsa1024"}), []string{"key_type", "dsa1024"}},
		// "%2E%2E" is sent as is; Vault decodes it and hands the plugin the name "bi/../c16".
		{"cert/name with .. segment", "certs/bi/%2E%2E/c16", cert(nil), []string{".."}},
	}

	// renew/<name> is the renew action: for a certificate that does not exist it answers 404 and
	// creates nothing.
	t.Run("cert/renew of a missing certificate", func(t *testing.T) {
		r := MustDo(t, c, http.MethodPut, Mount+"/renew/bi/c15", cert(nil))
		assert.Equal(t, http.StatusNotFound, r.Status, "%s", r)
		assert.Contains(t, r.ErrorText(), "does not exist")
		assertNothingStored(t, "certs/bi/c15")
	})
	// The old action path certs/<name>/renew is not an action and declares nothing.
	cases = append(cases, badCase{"cert/name ending in renew", "certs/bi/c17/renew", cert(nil), []string{"reserved", "renew/<name>"}})

	// Huge values: the 400 still says what to fix, but quotes at most a short part of the input.
	huge := strings.Repeat("a", 500_000)
	hugeCases := []badCase{
		{"huge/domain name", "certs/bi/h1", cert(map[string]any{"domains": huge + "." + env.Zone}), []string{"253"}},
		{"huge/label", "certs/bi/h2", cert(map[string]any{"domains": "x" + huge[:70_000] + "." + env.Zone}), []string{"253", "63"}},
		{"huge/profile", "certs/bi/h3", cert(map[string]any{"profile": huge}), []string{"profile"}},
		{"huge/key_type", "certs/bi/h4", cert(map[string]any{"key_type": huge}), []string{"key_type"}},
		{"huge/wait", "certs/bi/h5", cert(map[string]any{"wait": huge}), []string{"wait"}},
		{"huge/role name", "certs/bi/h6", cert(map[string]any{"role": huge}), []string{"role"}},
		{"huge/certificate name", "certs/bi/" + huge[:60_000], cert(nil), []string{"longer"}},
		{"huge/allowed_domains", "roles/bad-h7", role(map[string]any{"allowed_domains": huge + ".test"}), []string{"allowed_domains"}},
		{"huge/allowed_cert_names", "roles/bad-h8", role(map[string]any{"allowed_cert_names": huge}), []string{"allowed_cert_names", "pattern", "longer"}},
		{"huge/contact", "accounts/bad-h9", acct(map[string]any{"contact": huge + "@example.test"}), []string{"contact"}},
		{"huge/resolver", "config/dns/bad-h10", dns(map[string]any{"resolvers": huge}), []string{"resolver"}},
		{"huge/provider", "config/dns/bad-h11", dns(map[string]any{"provider": huge}), []string{"provider"}},
	}
	for _, tc := range hugeCases {
		t.Run(tc.name, func(t *testing.T) {
			r := MustDo(t, c, http.MethodPut, Mount+"/"+tc.path, tc.data)
			assert.Equal(t, http.StatusBadRequest, r.Status, "PUT %s: %.300s", tc.path[:min(len(tc.path), 80)], r)
			msg := r.ErrorText()
			assert.LessOrEqual(t, len(msg), 1200, "the message quotes the whole input: %.300s...", msg)
			assert.NotContains(t, msg, huge[:200], "the message quotes the input")
			assert.Truef(t, containsAnyFold(msg, tc.mention), "message %.400q should mention one of %q", msg, tc.mention)
			if !strings.HasPrefix(tc.path, "certs/bi/a") {
				assertNothingStored(t, tc.path)
			}
		})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r *Resp
			if strings.Contains(tc.path, "%") {
				var err error
				r, err = DoEscaped(context.Background(), c, http.MethodPut, Mount+"/"+tc.path, tc.data)
				require.NoError(t, err)
			} else {
				r = MustDo(t, c, http.MethodPut, Mount+"/"+tc.path, tc.data)
			}
			assert.Equal(t, http.StatusBadRequest, r.Status, "PUT %s: %s", tc.path, r)
			msg := r.ErrorText()
			assert.NotEmpty(t, strings.TrimSpace(msg), "error message")
			assert.Truef(t, containsAnyFold(msg, tc.mention), "message %q should mention one of %q", msg, tc.mention)
			assertNothingStored(t, tc.path)
		})
	}
}

func containsAnyFold(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(strings.ToLower(s), strings.ToLower(sub)) {
			return true
		}
	}
	return false
}

// assertNothingStored checks that <kind>/<name> does not exist: read gives 404 and it is not
// listed.
func assertNothingStored(t *testing.T, path string) {
	t.Helper()
	root := env.RootClient(t)
	if strings.HasPrefix(path, "certs/") {
		name := strings.TrimPrefix(path, "certs/")
		if strings.Contains(name, "%") { // an escaped ".." segment: nothing under the names it resolves to
			for _, dir := range []string{"", "/bi"} {
				keys := List(t, root, Mount+"/certs"+dir)
				for _, bad := range []string{"c16", "../", ".."} {
					assert.NotContains(t, keys, bad, "certs%s must not list %s", dir, bad)
				}
			}
			return
		}
		if strings.HasSuffix(name, "/renew") {
			// Neither <x>/renew nor <x> may have been created.
			assertNotStored(t, root, strings.TrimSuffix(name, "/renew"))
			assert.NotContains(t, List(t, root, Mount+"/certs/"+strings.TrimSuffix(name, "/renew")), "renew")
			return
		}
		assertNotStored(t, root, name)
		return
	}
	i := strings.LastIndex(path, "/")
	dir, name := path[:i], path[i+1:]
	r := MustDo(t, root, http.MethodGet, Mount+"/"+path, nil)
	assert.Equal(t, http.StatusNotFound, r.Status, "%s must not exist: %s", path, r)
	keys := List(t, root, Mount+"/"+dir)
	require.NotContains(t, keys, name, "%s must not be listed", path)
}
