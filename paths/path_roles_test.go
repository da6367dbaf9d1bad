package paths

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

func loadRole(t *testing.T, h *harness, name string) *storage.RoleEntry {
	t.Helper()
	r, err := storage.LoadRole(context.Background(), h.s, name)
	require.NoError(t, err)
	return r
}

// roleHarness has the account "acme" and the DNS configuration "ns" (zones example.com and
// example.net), and no role.
func roleHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.account("acme")
	h.dnsConfig("ns", "example.com,example.net")
	h.e.reset()
	return h
}

func TestRoleCreateReadList(t *testing.T) {
	h := roleHarness(t)
	resp := h.ok(logical.CreateOperation, "roles/team-a", map[string]any{
		"account": "acme", "dns": "ns", "allowed_domains": "WWW.Example.com., example.net",
		"allow_subdomains": true, "allowed_cert_names": "team-a/*, shared", "key_type": "EC384", "profile": "tlsserver",
	})
	want := map[string]any{
		"account": "acme", "dns": "ns", "allowed_domains": []string{"www.example.com", "example.net"},
		"allow_bare_domains": false, "allow_subdomains": true, "allow_wildcard_certificates": false,
		"allowed_cert_names": []string{"team-a/*", "shared"}, "key_type": "ec384", "profile": "tlsserver",
		"allowed_key_types": []string{}, "allowed_profiles": []string{}, "forced_renewal_interval": int64(3600), "max_certificates": 0, "order_limit": "",
		"allowed_challenges": []string{"dns-01"}, "allowed_ip_sans": []string{}, "preferred_chain": "", "revoke_on_delete": false, "allow_imports": false,
	}
	require.Equal(t, want, resp.Data)
	require.Equal(t, want, h.ok(logical.ReadOperation, "roles/team-a", nil).Data)
	require.Empty(t, h.e.called(""), "roles do not involve the engine")

	// key_type defaults to ec256, profile to the CA's default.
	resp = h.ok(logical.CreateOperation, "roles/plain", map[string]any{"account": "acme", "dns": "ns",
		"allowed_domains": "example.com", "allow_bare_domains": true, "allowed_cert_names": "*"})
	require.Equal(t, "ec256", resp.Data["key_type"])
	require.Equal(t, "", resp.Data["profile"])

	require.Equal(t, []string{"plain", "team-a"}, h.ok(logical.ListOperation, "roles/", nil).Data["keys"])
	resp, err := h.do(logical.ReadOperation, "roles/missing", nil)
	require.NoError(t, err)
	require.Nil(t, resp)
}

func TestRoleUpdateIsPartial(t *testing.T) {
	h := roleHarness(t)
	h.role("web", map[string]any{"profile": "classic", "key_type": "ec384"})
	before := loadRole(t, h, "web")

	steps := []struct {
		data   map[string]any
		change func(r *storage.RoleEntry)
	}{
		{data: map[string]any{"profile": "shortlived"}, change: func(r *storage.RoleEntry) { r.Profile = "shortlived" }},
		{data: map[string]any{"allow_bare_domains": false}, change: func(r *storage.RoleEntry) { r.AllowBareDomains = false }},
		{data: map[string]any{"allowed_cert_names": "web/*"}, change: func(r *storage.RoleEntry) { r.AllowedCertNames = []string{"web/*"} }},
		{data: map[string]any{"allowed_domains": "example.net"}, change: func(r *storage.RoleEntry) { r.AllowedDomains = []string{"example.net"} }},
		{data: map[string]any{"key_type": "rsa2048"}, change: func(r *storage.RoleEntry) { r.KeyType = "rsa2048" }},
		{data: map[string]any{"profile": ""}, change: func(r *storage.RoleEntry) { r.Profile = "" }},
	}
	want := *before
	for _, s := range steps {
		resp := h.ok(logical.UpdateOperation, "roles/web", s.data)
		s.change(&want)
		require.Equal(t, &want, loadRole(t, h, "web"), "after %v", s.data)
		require.Equal(t, roleResponse(&want), resp.Data)
	}
}

func TestRoleRefused(t *testing.T) {
	valid := func() map[string]any {
		return map[string]any{"account": "acme", "dns": "ns", "allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "*"}
	}
	cases := []struct {
		name  string
		path  string
		set   map[string]any
		unset []string
		wants []string
	}{
		{name: "name too long", path: "roles/" + strings.Repeat("r", 129), wants: []string{"role name is longer than 128"}},
		{name: "no account", unset: []string{"account"}, wants: []string{"account is required"}},
		{name: "no dns", unset: []string{"dns"}, wants: []string{"dns is required"}},
		{name: "no allowed_domains", unset: []string{"allowed_domains"}, wants: []string{"allowed_domains is required"}},
		{name: "allows no names", unset: []string{"allow_subdomains"}, wants: []string{"the role allows no names", "allow_bare_domains=true"}},
		{name: "no allowed_cert_names", unset: []string{"allowed_cert_names"}, wants: []string{"allowed_cert_names is required", "team-a/*"}},
		{name: "empty allowed_cert_names", set: map[string]any{"allowed_cert_names": " , "}, wants: []string{"allowed_cert_names is required"}},
		{name: "missing account", set: map[string]any{"account": "nope"}, wants: []string{`account "nope" does not exist`, "accounts/nope"}},
		{name: "missing dns", set: map[string]any{"dns": "nope"}, wants: []string{`DNS configuration "nope" does not exist`, "config/dns/nope"}},
		{name: "domain outside zones", set: map[string]any{"allowed_domains": "example.com,example.org"},
			wants: []string{`allowed domain "example.org" is outside the zones and delegated_domains of DNS configuration "ns" (example.com, example.net)`}},
		{name: "zone suffix is not a zone", set: map[string]any{"allowed_domains": "badexample.com"}, wants: []string{`allowed domain "badexample.com" is outside`}},
		{name: "wildcard domain", set: map[string]any{"allowed_domains": "*.example.com"}, wants: []string{"allowed_domains: a zone cannot be a wildcard"}},
		{name: "IP domain", set: map[string]any{"allowed_domains": "192.0.2.1"}, wants: []string{"allowed_domains:", "is an IP address"}},
		{name: "star inside pattern", set: map[string]any{"allowed_cert_names": "team-*/www"}, wants: []string{`allowed_cert_names: pattern "team-*/www" may only have * at its end`}},
		{name: "two stars", set: map[string]any{"allowed_cert_names": "team-a/**"}, wants: []string{`pattern "team-a/**" may only have * at its end`}},
		{name: "star mid-segment", set: map[string]any{"allowed_cert_names": "te*m"}, wants: []string{`pattern "te*m" may only have * at its end`}},
		{name: "trailing slash", set: map[string]any{"allowed_cert_names": "team-a/"}, wants: []string{`allowed_cert_names: pattern "team-a/"`, "empty"}},
		{name: "dot-dot", set: map[string]any{"allowed_cert_names": "team-a/../b"}, wants: []string{`pattern "team-a/../b"`, `".."`}},
		{name: "bad character", set: map[string]any{"allowed_cert_names": "team a"}, wants: []string{`pattern "team a"`, `character " "`}},
		{name: "unknown key_type", set: map[string]any{"key_type": "dsa"}, wants: []string{`key_type: unknown key type "dsa"`}},
		{name: "profile too long", set: map[string]any{"profile": strings.Repeat("p", 65)}, wants: []string{"is longer than 64 characters"}},
		{name: "profile character", set: map[string]any{"profile": "short lived"}, wants: []string{`profile "short lived" has the character " "`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := roleHarness(t)
			data := valid()
			for k, v := range tc.set {
				data[k] = v
			}
			for _, k := range tc.unset {
				delete(data, k)
			}
			path := tc.path
			if path == "" {
				path = "roles/web"
			}
			h.bad(nil, logical.CreateOperation, path, data, tc.wants...)
			require.Nil(t, loadRole(t, h, "web"))

			// The same change to an existing role is refused and leaves it as it was.
			if tc.path == "" && len(tc.unset) == 0 {
				h.ok(logical.CreateOperation, "roles/web", valid())
				h.bad(nil, logical.UpdateOperation, "roles/web", tc.set, tc.wants...)
			}
		})
	}
}

func TestRoleCertNamePatternDotSegments(t *testing.T) {
	for _, p := range []string{"team-a/../*", "../*", "team-a/./*"} {
		t.Run(p, func(t *testing.T) {
			h := roleHarness(t)
			// Regression: validateCertNamePattern appended "x" to a prefix ending in "/", so the
			// segment ".." was checked as "..x" and accepted. Such a pattern can never match
			// (certificate names have no "." or ".." segments) and is refused like "team-a/../b".
			h.bad(nil, logical.CreateOperation, "roles/web", map[string]any{"account": "acme", "dns": "ns",
				"allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": p},
				"allowed_cert_names: pattern")
		})
	}
}

func TestRoleAccepted(t *testing.T) {
	cases := []struct {
		field string
		value any
		want  any
	}{
		{field: "allowed_cert_names", value: "*", want: []string{"*"}},
		{field: "allowed_cert_names", value: "team-*", want: []string{"team-*"}},
		{field: "allowed_cert_names", value: "team-a/*,team-b/www", want: []string{"team-a/*", "team-b/www"}},
		{field: "profile", value: strings.Repeat("p", 64), want: strings.Repeat("p", 64)},
		{field: "profile", value: "tls-server_1.0", want: "tls-server_1.0"},
		{field: "allowed_domains", value: "sub.example.com", want: []string{"sub.example.com"}},
	}
	for _, tc := range cases {
		t.Run(tc.field+"="+tc.value.(string), func(t *testing.T) {
			h := roleHarness(t)
			data := map[string]any{"account": "acme", "dns": "ns", "allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "*"}
			data[tc.field] = tc.value
			resp := h.ok(logical.CreateOperation, "roles/web", data)
			require.Equal(t, tc.want, resp.Data[tc.field])
		})
	}
	t.Run("name of 128 characters", func(t *testing.T) {
		h := roleHarness(t)
		h.role(strings.Repeat("r", 128), nil)
		require.NotNil(t, loadRole(t, h, strings.Repeat("r", 128)))
	})
	t.Run("any zone when the DNS configuration has none", func(t *testing.T) {
		h := roleHarness(t)
		h.dnsConfig("any", "")
		h.role("web", map[string]any{"dns": "any", "allowed_domains": "example.org"})
		require.Equal(t, []string{"example.org"}, loadRole(t, h, "web").AllowedDomains)
	})
}

func TestRoleDelete(t *testing.T) {
	h := roleHarness(t)
	h.role("web", nil)
	h.role("api", nil)
	resp := h.ok(logical.DeleteOperation, "roles/web", nil)
	require.Nil(t, resp)
	require.Nil(t, loadRole(t, h, "web"))
	require.Equal(t, []string{"api"}, h.ok(logical.ListOperation, "roles/", nil).Data["keys"])
	h.ok(logical.DeleteOperation, "roles/web", nil)
	require.Empty(t, h.e.called(""))
}

// getHook is storage that calls onGet after each Get.
type getHook struct {
	logical.Storage
	onGet func(key string)
}

func (s *getHook) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := s.Storage.Get(ctx, key)
	s.onGet(key)
	return e, err
}

// TestRoleWriteRacesReferenceDelete deletes the role's account (or DNS configuration) right
// after the role write has checked that it exists. Afterwards either the role was refused or
// the referenced entry still exists: no role may refer to an entry that is gone.
func TestRoleWriteRacesReferenceDelete(t *testing.T) {
	for _, ref := range []string{"accounts/acme", "config/dns/ns"} {
		t.Run(ref, func(t *testing.T) {
			h := roleHarness(t)
			var once sync.Once
			deleted := make(chan error, 1)
			s := &getHook{Storage: h.s, onGet: func(key string) {
				if key != ref {
					return
				}
				once.Do(func() {
					go func() {
						_, err := h.handle(&logical.Request{Operation: logical.DeleteOperation, Path: ref, Storage: h.s})
						deleted <- err
					}()
					// Give the delete the chance to run now; a role write that holds the
					// referenced entry's lock makes it wait until the role is stored.
					select {
					case err := <-deleted:
						deleted <- err
					case <-time.After(200 * time.Millisecond):
					}
				})
			}}
			resp, err := h.handle(&logical.Request{Operation: logical.CreateOperation, Path: "roles/web",
				Data: map[string]any{"account": "acme", "dns": "ns", "allowed_domains": "example.com", "allow_subdomains": true,
					"allowed_cert_names": "*"}, Storage: s})
			require.NoError(t, err)
			require.NoError(t, <-deleted)
			roleStored := !resp.IsError()
			e, err := h.s.Get(context.Background(), ref)
			require.NoError(t, err)
			// Regression: a role write checked that its account and DNS configuration exist
			// without holding their locks, so a delete between the check and StoreRole left the
			// new role pointing at nothing.
			require.False(t, roleStored && e == nil, "role web was stored but %s was deleted under it", ref)
		})
	}
}

// A role bounds the key types and profiles of its certificates: by default only its own; with
// allowed_key_types / allowed_profiles also those listed ("*": any). Each is tried on create and on
// update, just inside and just outside the list, in other spellings.
func TestRoleBoundsKeyTypesAndProfiles(t *testing.T) {
	h := roleHarness(t)
	base := map[string]any{"account": "acme", "dns": "ns", "allowed_domains": "example.com", "allow_bare_domains": true,
		"allowed_cert_names": "*", "key_type": "ec256", "profile": "tlsserver"}
	with := func(extra map[string]any) map[string]any {
		d := map[string]any{}
		for k, v := range base {
			d[k] = v
		}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}
	h.ok(logical.CreateOperation, "roles/strict", base)
	h.ok(logical.CreateOperation, "roles/some", with(map[string]any{"allowed_key_types": "rsa2048, EC384", "allowed_profiles": "classic"}))
	h.ok(logical.CreateOperation, "roles/any", with(map[string]any{"allowed_key_types": "*", "allowed_profiles": "*"}))
	h.ok(logical.CreateOperation, "roles/nodefault", with(map[string]any{"profile": ""}))

	cases := []struct {
		role, keyType, profile string
		ok                     bool
		mention                string
	}{
		{"strict", "", "", true, ""},               // the role's own
		{"strict", "ec256", "tlsserver", true, ""}, // named explicitly
		{"strict", "EC256", "", true, ""},          // another spelling of its own
		{"strict", "ec384", "", false, "key type"},
		{"strict", "rsa2048", "", false, "key type"},
		{"strict", "", "shortlived", false, "profile"},
		{"strict", "", "TLSSERVER", false, "profile"}, // profiles are case-sensitive at the CA
		{"strict", "", "tlsserver ", true, ""},        // trimmed
		{"some", "rsa2048", "", true, ""},
		{"some", "ec384", "classic", true, ""},
		{"some", "rsa4096", "", false, "key type"},
		{"some", "", "shortlived", false, "profile"},
		{"any", "rsa4096", "shortlived", true, ""},
		{"nodefault", "", "shortlived", false, "profile"},
	}
	for i, tc := range cases {
		name := fmt.Sprintf("%s/%d", tc.role, i)
		data := map[string]any{"role": tc.role, "domains": "example.com", "wait": 0}
		if tc.keyType != "" {
			data["key_type"] = tc.keyType
		}
		if tc.profile != "" {
			data["profile"] = tc.profile
		}
		resp, err := h.do(logical.CreateOperation, "certs/"+name, data)
		require.NoError(t, err)
		if tc.ok {
			require.False(t, resp.IsError(), "%s: %v", name, resp.Data)
			continue
		}
		require.True(t, resp.IsError(), "%s: key_type %q profile %q should be refused", name, tc.keyType, tc.profile)
		require.Contains(t, resp.Error().Error(), tc.mention)
		require.Contains(t, resp.Error().Error(), "allowed_")
		c, err := storage.LoadCert(context.Background(), h.s, name)
		require.NoError(t, err)
		require.Nil(t, c, "a refused certificate is not stored")
	}

	// An update may not step outside the role either: the stored certificate keeps its values.
	h.ok(logical.CreateOperation, "certs/upd", map[string]any{"role": "strict", "domains": "example.com", "wait": 0})
	for _, data := range []map[string]any{{"profile": "shortlived"}, {"key_type": "rsa2048"}} {
		resp, err := h.do(logical.UpdateOperation, "certs/upd", data)
		require.NoError(t, err)
		require.True(t, resp.IsError(), "update %v should be refused", data)
	}
	c, err := storage.LoadCert(context.Background(), h.s, "upd")
	require.NoError(t, err)
	require.Equal(t, "ec256", c.KeyType)
	require.Equal(t, "tlsserver", c.Profile)

	// Bad lists are 400s.
	for _, data := range []map[string]any{{"allowed_key_types": "dsa1024"}, {"allowed_profiles": "bad profile!"}} {
		resp, err := h.do(logical.CreateOperation, "roles/bad", with(data))
		require.NoError(t, err)
		require.True(t, resp.IsError(), "%v should be refused", data)
	}
}

// max_certificates is a role's quota: just below it a certificate is created, at it the next is
// refused with nothing stored; updates of existing certificates and moves between roles count
// right; 0 lifts it; bounds are checked.
func TestRoleMaxCertificates(t *testing.T) {
	h := certHarness(t)
	h.role("quota", map[string]any{"allowed_cert_names": "q/*", "max_certificates": 2})
	write := func(name, role string) (*logical.Response, error) {
		return h.do(logical.CreateOperation, "certs/"+name, map[string]any{"role": role, "domains": "www.example.com", "wait": 0})
	}
	for _, n := range []string{"q/1", "q/2"} {
		resp, err := write(n, "quota")
		require.NoError(t, err)
		require.False(t, resp.IsError(), "%s: %v", n, resp.Error())
	}
	resp, err := write("q/3", "quota")
	require.NoError(t, err)
	require.True(t, resp.IsError(), "the third is over the quota")
	require.Contains(t, resp.Error().Error(), `role "quota" allows at most 2 certificates and has 2`)
	require.Nil(t, h.loadCert("q/3"), "nothing stored")

	// Rewriting one it has is not a new certificate.
	resp, err = h.do(logical.UpdateOperation, "certs/q/1", map[string]any{"role": "quota", "domains": "www.example.com,example.com", "wait": 0})
	require.NoError(t, err)
	require.False(t, resp.IsError(), "%v", resp.Error())
	// Moving a certificate into the full role is refused; out of it frees a place.
	h.ok(logical.CreateOperation, "certs/q/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
	resp, err = h.do(logical.UpdateOperation, "certs/q/web", map[string]any{"role": "quota", "wait": 0})
	require.NoError(t, err)
	require.True(t, resp.IsError(), "moving into a full role")
	require.Equal(t, "web", h.loadCert("q/web").Role)
	h.ok(logical.DeleteOperation, "certs/q/2", nil)
	resp, err = write("q/3", "quota")
	require.NoError(t, err)
	require.False(t, resp.IsError(), "a delete frees a place: %v", resp.Error())

	h.ok(logical.UpdateOperation, "roles/quota", map[string]any{"max_certificates": 0})
	resp, err = write("q/4", "quota")
	require.NoError(t, err)
	require.False(t, resp.IsError())
	for _, bad := range []any{-1, 1_000_001} {
		resp, err := h.do(logical.UpdateOperation, "roles/quota", map[string]any{"max_certificates": bad})
		require.NoError(t, err)
		require.True(t, resp.IsError(), "%v", bad)
	}
}
