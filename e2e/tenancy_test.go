package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const teamPolicy = `
path "%[1]s/certs/%[2]s/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "%[1]s/renew/%[2]s/*" {
  capabilities = ["update"]
}
path "%[1]s/revoke/%[2]s/*" {
  capabilities = ["update"]
}
`

// teamToken creates policy <team> and a real token carrying it (from auth/token/create).
func teamToken(t *testing.T, root *vaultapi.Client, team string) *vaultapi.Client {
	t.Helper()
	require.NoError(t, root.Sys().PutPolicy(team, fmt.Sprintf(teamPolicy, Mount, team)))
	r := MustWrite(t, root, "auth/token/create", map[string]any{
		"policies":          []string{team},
		"no_default_policy": true,
		"ttl":               "1h",
		"display_name":      team,
	})
	var parsed struct {
		Auth struct {
			ClientToken string   `json:"client_token"`
			Policies    []string `json:"policies"`
		} `json:"auth"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &parsed))
	require.NotEmpty(t, parsed.Auth.ClientToken)
	require.Equal(t, []string{team}, parsed.Auth.Policies)
	c, err := env.Client(parsed.Auth.ClientToken)
	require.NoError(t, err)
	return c
}

// TestTenancy: a team's token can only manage certificates under its own prefix, only through
// roles whose allowed_cert_names match, only for its domains, and cannot touch configuration.
func TestTenancy(t *testing.T) {
	root := env.RootClient(t)
	env.CreateAccount(t, root, "tenancy-acct", nil)
	env.CreateDNS(t, root, "tenancy-dns", nil)
	for _, team := range []string{"team-a", "team-b"} {
		CreateRole(t, root, team, map[string]any{
			"account":            "tenancy-acct",
			"dns":                "tenancy-dns",
			"allowed_domains":    team + "." + env.Zone,
			"allow_subdomains":   true,
			"allowed_cert_names": team + "/*",
		})
	}
	a := teamToken(t, root, "team-a")
	b := teamToken(t, root, "team-b")

	t.Run("own prefix: write and read", func(t *testing.T) {
		cert := IssueCert(t, a, "team-a/app", map[string]any{"role": "team-a", "domains": "app.team-a." + env.Zone}, 3*time.Minute)
		assert.Equal(t, []string{"app.team-a." + env.Zone}, cert.Leaf.DNSNames)
		assert.Contains(t, List(t, a, Mount+"/certs/team-a"), "app")
		// The top level is not the tenant's: listing it would show every other tenant's folder and
		// every top-level certificate name.
		_, err := a.Logical().List(Mount + "/certs")
		var re *vaultapi.ResponseError
		require.ErrorAs(t, err, &re, "a tenant listed certs/")
		assert.Equal(t, 403, re.StatusCode)
	})

	t.Run("other team's prefix is 403", func(t *testing.T) {
		for _, op := range []struct {
			method string
			path   string
			data   map[string]any
		}{
			{http.MethodPut, "certs/team-b/app", map[string]any{"role": "team-b", "domains": "app.team-b." + env.Zone}},
			{http.MethodPut, "certs/team-b/app", map[string]any{"role": "team-a", "domains": "app.team-a." + env.Zone}},
			{http.MethodGet, "certs/team-b/app", nil},
			{"LIST", "certs/team-b", nil},
			{http.MethodDelete, "certs/team-b/app", nil},
			{http.MethodGet, "certs/team-a-evil/app", nil},
		} {
			r := MustDo(t, a, op.method, Mount+"/"+op.path, op.data)
			assert.Equal(t, http.StatusForbidden, r.Status, "team-a %s %s: %s", op.method, op.path, r)
		}
		r := MustDo(t, b, http.MethodGet, Mount+"/certs/team-a/app", nil)
		assert.Equal(t, http.StatusForbidden, r.Status, "team-b reads team-a's certificate: %s", r)
	})

	t.Run("role of the other team is 400", func(t *testing.T) {
		r := MustDo(t, a, http.MethodPut, Mount+"/certs/team-a/x", map[string]any{
			"role": "team-b", "domains": "x.team-b." + env.Zone, "wait": "0s",
		})
		assert.Equal(t, http.StatusBadRequest, r.Status, "%s", r)
		assert.NotEmpty(t, r.ErrorText())
		assertNotStored(t, root, "team-a/x")
	})

	t.Run("domain of the other team is 400", func(t *testing.T) {
		r := MustDo(t, a, http.MethodPut, Mount+"/certs/team-a/y", map[string]any{
			"role": "team-a", "domains": "y.team-b." + env.Zone, "wait": "0s",
		})
		assert.Equal(t, http.StatusBadRequest, r.Status, "%s", r)
		assert.Contains(t, r.ErrorText(), "y.team-b."+env.Zone)
		assertNotStored(t, root, "team-a/y")
	})

	// A role allowing the bare name x.team-a.<zone> and wildcards never gives *.team-a.<zone>, which
	// would cover every sibling of x.
	t.Run("parent wildcard via a bare name is 400", func(t *testing.T) {
		CreateRole(t, root, "team-a-bare", map[string]any{
			"account": "tenancy-acct", "dns": "tenancy-dns", "allowed_domains": "x.team-a." + env.Zone,
			"allow_bare_domains": true, "allow_wildcard_certificates": true, "allowed_cert_names": "team-a/*",
		})
		for i, domain := range []string{"*.team-a." + env.Zone, "*.x.team-a." + env.Zone} {
			name := fmt.Sprintf("team-a/wild%d", i)
			r := MustDo(t, a, http.MethodPut, Mount+"/certs/"+name, map[string]any{"role": "team-a-bare", "domains": domain, "wait": "0s"})
			assert.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", domain, r)
			assert.Contains(t, r.ErrorText(), domain)
			assertNotStored(t, root, name)
		}
	})

	// The role bounds profiles and key types: a tenant cannot pick Pebble's shortlived profile (many
	// more orders) or a key type the role does not list, on create or on update, in any spelling.
	t.Run("profile and key type stay inside the role", func(t *testing.T) {
		for i, data := range []map[string]any{
			{"profile": ShortlivedProfile}, {"profile": strings.ToUpper(DefaultProfile)}, {"profile": DefaultProfile + " x"},
			{"key_type": "rsa2048"}, {"key_type": "EC384"}, {"key_type": "rsa4096", "profile": ShortlivedProfile},
		} {
			name := fmt.Sprintf("team-a/bound%d", i)
			r := MustDo(t, a, http.MethodPut, Mount+"/certs/"+name, merge(map[string]any{"role": "team-a", "domains": "bound.team-a." + env.Zone, "wait": "0s"}, data))
			assert.Equal(t, http.StatusBadRequest, r.Status, "%v: %s", data, r)
			assertNotStored(t, root, name)
		}
		// An existing certificate cannot be moved outside the role by an update either.
		IssueCert(t, a, "team-a/bound", map[string]any{"role": "team-a", "domains": "bound.team-a." + env.Zone}, 3*time.Minute)
		for _, data := range []map[string]any{{"profile": ShortlivedProfile}, {"key_type": "rsa2048"}} {
			r := MustDo(t, a, http.MethodPut, Mount+"/certs/team-a/bound", data)
			assert.Equal(t, http.StatusBadRequest, r.Status, "update %v: %s", data, r)
		}
		d := MustDo(t, a, http.MethodGet, Mount+"/certs/team-a/bound", nil).Data
		assert.Equal(t, DefaultProfile, d["profile"])
		assert.Equal(t, "ec256", d["key_type"])
		// The operator may widen the role; then the tenant may choose.
		CreateRole(t, root, "team-a-wide", map[string]any{
			"account": "tenancy-acct", "dns": "tenancy-dns", "allowed_domains": "team-a." + env.Zone, "allow_subdomains": true,
			"allowed_cert_names": "team-a/*", "allowed_key_types": "rsa2048", "allowed_profiles": ShortlivedProfile,
		})
		r := MustDo(t, a, http.MethodPut, Mount+"/certs/team-a/wide", map[string]any{"role": "team-a-wide", "domains": "wide.team-a." + env.Zone,
			"key_type": "rsa2048", "profile": ShortlivedProfile, "wait": "0s"})
		assert.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "%s", r)
	})

	// The operator's certificate named like the tenant's folder ("team-a") is out of the tenant's
	// reach: certs/team-a/renew and certs/team-a/revoke are refused names, not actions, and the
	// actions renew/team-a and revoke/team-a are outside renew/team-a/* and revoke/team-a/*.
	t.Run("actions stay inside the prefix", func(t *testing.T) {
		CreateRole(t, root, "ops", map[string]any{
			"account": "tenancy-acct", "dns": "tenancy-dns", "allowed_domains": "ops." + env.Zone,
			"allow_bare_domains": true, "allowed_cert_names": "team-a",
		})
		ops := IssueCert(t, root, "team-a", map[string]any{"role": "ops", "domains": "ops." + env.Zone}, 3*time.Minute)
		for _, op := range []struct {
			path   string
			status int
		}{
			{"certs/team-a/revoke", http.StatusBadRequest},
			{"certs/team-a/renew", http.StatusBadRequest},
			{"revoke/team-a", http.StatusForbidden},
			{"renew/team-a", http.StatusForbidden},
			{"revoke/team-b/app", http.StatusForbidden},
		} {
			r := MustDo(t, a, http.MethodPut, Mount+"/"+op.path, map[string]any{"reason": "keyCompromise", "wait": "0s"})
			assert.Equal(t, op.status, r.Status, "team-a PUT %s: %s", op.path, r)
		}
		after := MustDo(t, root, http.MethodGet, Mount+"/certs/team-a", nil)
		require.Equal(t, http.StatusOK, after.Status, "%s", after)
		assert.Equal(t, ops.SerialNumber, fmt.Sprint(after.Data["serial_number"]), "the operator's certificate was neither renewed nor revoked")
		assertNotStored(t, root, "team-a/revoke")

		// Its own certificate, the tenant renews through renew/team-a/<name> — but not in a loop:
		// within the role's forced_renewal_interval (default 1h) after issuance it gets a 429.
		before := MustDo(t, a, http.MethodGet, Mount+"/certs/team-a/app", nil)
		for _, p := range []string{"renew/team-a/app", "revoke/team-a/app"} {
			r := MustDo(t, a, http.MethodPut, Mount+"/"+p, map[string]any{"reason": "superseded", "wait": "0s"})
			assert.Equal(t, http.StatusTooManyRequests, r.Status, "%s right after issuance: %s", p, r)
			assert.Contains(t, r.ErrorText(), "forced_renewal_interval")
		}
		same := MustDo(t, a, http.MethodGet, Mount+"/certs/team-a/app", nil)
		assert.Equal(t, before.Data["serial_number"], same.Data["serial_number"], "neither renewed nor revoked")
		MustWrite(t, root, Mount+"/roles/team-a", map[string]any{"forced_renewal_interval": "1s"})
		time.Sleep(1100 * time.Millisecond)
		r := MustDo(t, a, http.MethodPut, Mount+"/renew/team-a/app", map[string]any{"wait": "60s"})
		assert.Contains(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "team-a renews its own certificate: %s", r)
	})

	t.Run("configuration is 403", func(t *testing.T) {
		for _, op := range []struct {
			method string
			path   string
			data   map[string]any
		}{
			{http.MethodGet, "config/dns/tenancy-dns", nil},
			{http.MethodPut, "config/dns/evil", env.DNSData(nil)},
			{"LIST", "config/dns", nil},
			{http.MethodGet, "accounts/tenancy-acct", nil},
			{http.MethodPut, "accounts/evil", env.AccountData(t, nil)},
			{"LIST", "accounts", nil},
			{http.MethodDelete, "accounts/tenancy-acct", nil},
			{http.MethodGet, "roles/team-a", nil},
			{http.MethodPut, "roles/team-a", map[string]any{"account": "tenancy-acct", "dns": "tenancy-dns", "allowed_domains": "evil.test", "allowed_cert_names": "*"}},
			{"LIST", "roles", nil},
		} {
			r := MustDo(t, a, op.method, Mount+"/"+op.path, op.data)
			assert.Equal(t, http.StatusForbidden, r.Status, "team-a %s %s: %s", op.method, op.path, r)
		}
		// Nothing changed.
		role := MustDo(t, root, http.MethodGet, Mount+"/roles/team-a", nil)
		require.Equal(t, http.StatusOK, role.Status)
		assert.Equal(t, []string{"team-a." + env.Zone}, asStrings(role.Data["allowed_domains"]))
	})
}

// assertNotStored checks that certs/<name> is neither readable (404) nor listed.
func assertNotStored(t *testing.T, root *vaultapi.Client, name string) {
	t.Helper()
	r := MustDo(t, root, http.MethodGet, Mount+"/certs/"+name, nil)
	// 404, or 400 for a name no certificate can have (a reserved or malformed name).
	assert.Contains(t, []int{http.StatusNotFound, http.StatusBadRequest}, r.Status, "certs/%s must not exist: %s", name, r)
	dir, leaf := "", name
	if i := strings.LastIndex(name, "/"); i >= 0 {
		dir, leaf = "/"+name[:i], name[i+1:]
	}
	assert.NotContains(t, List(t, root, Mount+"/certs"+dir), leaf, "certs%s must not list %s", dir, leaf)
}
