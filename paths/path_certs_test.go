package paths

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// certHarness has the fixtures (role "web": example.com, its subdomains and wildcards, any
// certificate name) and a role "team" for certificate names team-a/* (subdomains only, ec384).
func certHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.fixtures()
	h.role("team", map[string]any{"allowed_cert_names": "team-a/*", "allow_bare_domains": false,
		"allow_wildcard_certificates": false, "key_type": "ec384", "profile": "classic"})
	h.e.reset()
	return h
}

// domainOfLength returns a name under example.com of exactly n characters.
func domainOfLength(n int) string {
	s := "example.com"
	for len(s) < n {
		need := n - len(s) // characters to add, a dot included
		l := need - 1
		if need > 64 {
			l = 63
			if need-64 < 2 {
				l = 60
			}
		}
		s = strings.Repeat("a", l) + "." + s
	}
	return s
}

func TestDomainOfLength(t *testing.T) {
	// DNS-01 validates a name at _acme-challenge.<name>, which must fit DNS's 253 characters: the
	// longest usable name has 237 (a wildcard *.x: x has at most 237).
	for _, n := range []int{13, 76, 77, 78, 236, 237, 238, 253, 254} {
		require.Len(t, domainOfLength(n), n)
		_, err := CanonicalDomain(domainOfLength(n))
		require.Equal(t, n <= 237, err == nil, "%d: %v", n, err)
		_, err = CanonicalDomain("*." + domainOfLength(n))
		require.Equal(t, n <= 237, err == nil, "*.%d: %v", n, err)
	}
}

func TestCertWriteIssues(t *testing.T) {
	h := certHarness(t)
	resp := h.ok(logical.CreateOperation, "certs/team-a/www", map[string]any{"role": "team",
		"domains": "WWW.Example.com., bücher.example.com"})
	require.Equal(t, http.StatusOK, statusOf(resp))
	c := h.loadCert("team-a/www")
	require.Equal(t, map[string]any{
		"role": "team", "domains": []string{"www.example.com", "xn--bcher-kva.example.com"}, "key_type": "ec384", "profile": "classic",
		"status": "valid", "last_error": "", "waiting": "", "serial_number": c.SerialNumber, "expiration": c.NotAfter.Unix(), "not_after": c.NotAfter,
		"ip_sans": []string{}, "challenge": "dns-01", "key_source": "vault",
	}, resp.Data)
	require.NotContains(t, resp.Data, "private_key", "a write never returns the key")

	require.Equal(t, int64(1), c.Generation)
	require.Equal(t, int64(1), c.IssuedGeneration)
	require.Equal(t, []call{{"CertificateChanged", "team-a/www"}, {"EnsureCertificate", "team-a/www"}}, h.e.called(""),
		"the entry is stored and announced before issuance")
	require.Equal(t, []time.Duration{30 * time.Second}, h.e.ensureWaits, "the default wait")

	t.Run("explicit key_type and profile", func(t *testing.T) {
		resp := h.ok(logical.CreateOperation, "certs/web1", map[string]any{"role": "web", "domains": "*.example.com,example.com",
			"key_type": "EC384", "profile": "shortlived", "wait": 60})
		require.Equal(t, "ec384", resp.Data["key_type"])
		require.Equal(t, "shortlived", resp.Data["profile"])
		require.Equal(t, []string{"*.example.com", "example.com"}, resp.Data["domains"])
		require.Equal(t, time.Minute, h.e.ensureWaits[len(h.e.ensureWaits)-1])
	})
}

func TestCertWritePendingAndFailed(t *testing.T) {
	t.Run("pending", func(t *testing.T) {
		h := certHarness(t)
		h.e.ensure = leavePending
		resp := h.ok(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
		require.Equal(t, http.StatusAccepted, statusOf(resp))
		body := bodyOf(t, resp)
		require.Equal(t, "pending", body["status"])
		require.NotContains(t, body, "serial_number")
		require.Len(t, warningsOf(t, resp), 1)
		require.Contains(t, warningsOf(t, resp)[0], "issuance continues in the background: read certs/web")
		require.Equal(t, []time.Duration{0}, h.e.ensureWaits)
		require.Equal(t, storage.StatusPending, h.loadCert("web").Status)
	})
	t.Run("failed", func(t *testing.T) {
		h := certHarness(t)
		h.e.ensure = failAttempt
		resp := h.ok(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 5})
		require.Equal(t, http.StatusAccepted, statusOf(resp))
		body := bodyOf(t, resp)
		require.Equal(t, "failed", body["status"])
		require.Contains(t, body["last_error"], "NXDOMAIN")
		require.Equal(t, []time.Duration{5 * time.Second}, h.e.ensureWaits)
	})
	t.Run("engine error", func(t *testing.T) {
		h := certHarness(t)
		h.e.ensure = func(*fakeEngine, string, *storage.CertEntry) (*storage.CertEntry, error) {
			return nil, errors.New("worker pool stopped")
		}
		_, err := h.do(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
		require.ErrorContains(t, err, "worker pool stopped")
		require.NotNil(t, h.loadCert("web"), "the specification stays stored; the scheduler issues it later")
	})
	t.Run("deleted meanwhile", func(t *testing.T) {
		h := certHarness(t)
		h.e.ensure = func(e *fakeEngine, name string, _ *storage.CertEntry) (*storage.CertEntry, error) {
			return nil, storage.DeleteCert(context.Background(), e.s, name)
		}
		_, err := h.do(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
		require.ErrorContains(t, err, `certificate "web" was deleted while it was being issued`)
	})
}

func TestCertWriteIdempotent(t *testing.T) {
	h := certHarness(t)
	h.ok(logical.CreateOperation, "certs/team-a/www", map[string]any{"role": "team", "domains": "www.example.com,api.example.com"})
	before := h.dump()

	for _, data := range []map[string]any{
		{"role": "team", "domains": "www.example.com,api.example.com"},
		{"role": "team", "domains": "WWW.example.COM.,api.example.com", "key_type": "ec384", "profile": "classic"},
		{"role": "team"},
		{"domains": "www.example.com,api.example.com"},
		{},
	} {
		h.e.reset()
		resp := h.ok(logical.UpdateOperation, "certs/team-a/www", data)
		require.Equal(t, http.StatusOK, statusOf(resp))
		require.Equal(t, "valid", resp.Data["status"])
		require.Empty(t, h.e.called(""), "writing the same specification again (%v) orders nothing", data)
		require.Equal(t, before, h.dump(), "and stores nothing")
	}

	t.Run("pending entry is not restarted", func(t *testing.T) {
		h := certHarness(t)
		h.e.ensure = leavePending
		h.ok(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
		before := h.dump()
		h.e.reset()
		resp := h.ok(logical.UpdateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
		require.Equal(t, http.StatusAccepted, statusOf(resp))
		require.Equal(t, []string{"web"}, h.e.names("EnsureCertificate"), "the engine decides whether one is in flight")
		require.Empty(t, h.e.names("CertificateChanged"))
		require.Equal(t, before, h.dump())
		require.Equal(t, int64(1), h.loadCert("web").Generation)
	})

	t.Run("failed entry is retried now", func(t *testing.T) {
		h := certHarness(t)
		h.e.ensure = failAttempt
		h.ok(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
		require.False(t, h.loadCert("web").NextAttemptAt.IsZero())
		h.e.reset()
		h.e.ensure = leavePending
		h.ok(logical.UpdateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
		c := h.loadCert("web")
		require.True(t, c.NextAttemptAt.IsZero(), "the backoff is cleared")
		require.Equal(t, int64(1), c.Generation, "the same specification keeps its generation")
		require.Equal(t, []string{"web"}, h.e.names("CertificateChanged"))
	})
}

func TestCertWriteConcurrent(t *testing.T) {
	h := certHarness(t)
	h.e.ensure = leavePending
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			resp, err := h.handle(&logical.Request{Operation: logical.CreateOperation, Path: "certs/web",
				Data: map[string]any{"role": "web", "domains": "www.example.com", "wait": 0}, Storage: h.s})
			if err == nil && resp.IsError() {
				err = resp.Error()
			}
			errs <- err
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	require.Equal(t, int64(1), h.loadCert("web").Generation, "concurrent identical writes make one generation")
	require.Equal(t, []string{"web"}, h.e.names("CertificateChanged"), "and one change")
	require.Len(t, h.e.names("EnsureCertificate"), n)
}

func TestCertWriteChangesSpec(t *testing.T) {
	cases := []struct {
		name  string
		data  map[string]any
		check func(t *testing.T, c *storage.CertEntry)
	}{
		{name: "domains", data: map[string]any{"domains": "www.example.com,new.example.com"}, check: func(t *testing.T, c *storage.CertEntry) {
			require.Equal(t, []string{"www.example.com", "new.example.com"}, c.Domains)
		}},
		{name: "domain order", data: map[string]any{"domains": "api.example.com,www.example.com"}, check: func(t *testing.T, c *storage.CertEntry) {
			require.Equal(t, []string{"api.example.com", "www.example.com"}, c.Domains, "the first name is the subject")
		}},
		{name: "key_type", data: map[string]any{"key_type": "ec256"}, check: func(t *testing.T, c *storage.CertEntry) { require.Equal(t, "ec256", c.KeyType) }},
		{name: "profile", data: map[string]any{"profile": "shortlived"}, check: func(t *testing.T, c *storage.CertEntry) { require.Equal(t, "shortlived", c.Profile) }},
		{name: "role", data: map[string]any{"role": "web"}, check: func(t *testing.T, c *storage.CertEntry) {
			require.Equal(t, "web", c.Role)
			require.Equal(t, "ec256", c.KeyType, "a new role brings its key type")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := certHarness(t)
			h.ok(logical.CreateOperation, "certs/team-a/www", map[string]any{"role": "team", "domains": "www.example.com,api.example.com"})
			old := h.loadCert("team-a/www")
			h.e.reset()
			h.e.ensure = leavePending
			resp := h.ok(logical.UpdateOperation, "certs/team-a/www", tc.data)
			require.Equal(t, http.StatusAccepted, statusOf(resp), "the current certificate no longer matches")
			c := h.loadCert("team-a/www")
			require.Equal(t, old.Generation+1, c.Generation)
			require.Equal(t, storage.StatusPending, c.Status)
			require.Equal(t, old.Certificate, c.Certificate, "the old certificate is served until the new one is stored")
			require.Equal(t, []call{{"CertificateChanged", "team-a/www"}, {"EnsureCertificate", "team-a/www"}}, h.e.called(""))
			tc.check(t, c)
		})
	}
}

func TestCertWriteRefused(t *testing.T) {
	hundred := make([]string, 101)
	for i := range hundred {
		hundred[i] = fmt.Sprintf("d%d.example.com", i)
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name  string
		path  string // certificate name; "web" when empty
		data  map[string]any
		wants []string
		// createOnly: an existing certificate keeps the value the request leaves out.
		createOnly bool
	}{
		{name: "name too long", path: long(128) + "/" + long(128), wants: []string{"longer than 256 characters"}},
		{name: "segment too long", path: "team/" + long(129), wants: []string{"has a segment longer than 128"}},
		{name: "dot-dot segment", path: "a/../b", wants: []string{`certificate name "a/../b" has an empty, "." or ".." segment`}},
		{name: "dot segment", path: "./b", wants: []string{`has an empty, "." or ".." segment`}},
		{name: "empty segment", path: "a//b", wants: []string{`has an empty, "." or ".." segment`}},
		{name: "space", path: "a b", wants: []string{`has the character " "`}},
		{name: "at sign", path: "a@b", wants: []string{`has the character "@"`}},
		{name: "reserved action name", path: "revoke", wants: []string{`ends in "revoke", which is reserved`}},
		{name: "no role", data: map[string]any{"domains": "www.example.com"}, wants: []string{"role is required"}, createOnly: true},
		{name: "missing role", data: map[string]any{"role": "nope", "domains": "www.example.com"}, wants: []string{`role "nope" does not exist`}},
		{name: "name outside role", path: "team-b/www", data: map[string]any{"role": "team", "domains": "www.example.com"},
			wants: []string{`role "team" does not exist or may not be used for certificate "team-b/www"`, "allowed_cert_names"}},
		{name: "folder name outside role", path: "team-a", data: map[string]any{"role": "team", "domains": "www.example.com"},
			wants: []string{`role "team" does not exist or may not be used for certificate "team-a"`}},
		{name: "no domains", data: map[string]any{"role": "web"}, wants: []string{"domains is required"}, createOnly: true},
		{name: "empty domains", data: map[string]any{"role": "web", "domains": ""}, wants: []string{"domains is required"}},
		{name: "101 domains", data: map[string]any{"role": "web", "domains": hundred}, wants: []string{"domains has 101 names: a certificate may carry at most 100"}},
		{name: "duplicate", data: map[string]any{"role": "web", "domains": "www.example.com,WWW.Example.com."}, wants: []string{`domains: "www.example.com" is listed twice`}},
		{name: "misplaced wildcard", data: map[string]any{"role": "web", "domains": "www.*.example.com"}, wants: []string{"domains:", "misplaced wildcard"}},
		{name: "IPv4", data: map[string]any{"role": "web", "domains": "192.0.2.1"}, wants: []string{`role "web" does not allow the IP address "192.0.2.1"`, "allowed_ip_sans"}},
		{name: "IPv6", data: map[string]any{"role": "web", "domains": "[2001:db8::1]"}, wants: []string{`does not allow the IP address "2001:db8::1"`}},
		{name: "label of 64", data: map[string]any{"role": "web", "domains": long(64) + ".example.com"}, wants: []string{"is longer than 63 characters"}},
		{name: "name of 254", data: map[string]any{"role": "web", "domains": domainOfLength(254)}, wants: []string{"is longer than 253 characters"}},
		{name: "wildcard of 254", data: map[string]any{"role": "web", "domains": "*." + domainOfLength(252)}, wants: []string{"is longer than 253 characters"}},
		{name: "bad IDNA", data: map[string]any{"role": "web", "domains": "a\u200db.example.com"}, wants: []string{"not a valid internationalized DNS name"}},
		{name: "domain outside role", data: map[string]any{"role": "web", "domains": "www.example.com,www.example.org"},
			wants: []string{`role "web" does not allow "www.example.org"`}},
		{name: "bare domain not allowed", path: "team-a/x", data: map[string]any{"role": "team", "domains": "example.com"},
			wants: []string{`role "team" does not allow "example.com"`}},
		{name: "wildcard not allowed", path: "team-a/x", data: map[string]any{"role": "team", "domains": "*.example.com"},
			wants: []string{`role "team" does not allow "*.example.com"`}},
		{name: "unknown key_type", data: map[string]any{"role": "web", "domains": "www.example.com", "key_type": "ec521"}, wants: []string{`key_type: unknown key type "ec521"`}},
		{name: "profile of 65", data: map[string]any{"role": "web", "domains": "www.example.com", "profile": long(65)}, wants: []string{"longer than 64 characters"}},
		{name: "profile character", data: map[string]any{"role": "web", "domains": "www.example.com", "profile": "a/b"}, wants: []string{`has the character "/"`}},
		{name: "wait 61", data: map[string]any{"role": "web", "domains": "www.example.com", "wait": 61}, wants: []string{"wait must be between 0s and 1m0s"}},
		{name: "wait -1", data: map[string]any{"role": "web", "domains": "www.example.com", "wait": -1}, wants: []string{`field "wait"`, "negative"}},
		{name: "wait not a duration", data: map[string]any{"role": "web", "domains": "www.example.com", "wait": "soon"}, wants: []string{`field "wait"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := certHarness(t)
			name := tc.path
			if name == "" {
				name = "web"
			}
			data := tc.data
			if data == nil {
				data = map[string]any{"role": "web", "domains": "www.example.com"}
			}
			h.bad(nil, logical.CreateOperation, "certs/"+name, data, tc.wants...)
			keys := h.keys()
			for _, k := range keys {
				require.False(t, strings.HasPrefix(k, storage.CertPrefix), "stored %s", k)
			}

			// The same input against an existing certificate leaves it as it was.
			if tc.path == "" && tc.data != nil && !tc.createOnly {
				h.ok(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
				h.bad(nil, logical.UpdateOperation, "certs/web", tc.data, tc.wants...)
			}
		})
	}

	t.Run("folder path", func(t *testing.T) {
		h := certHarness(t)
		_, err := h.do(logical.UpdateOperation, "certs/team-a/", map[string]any{"role": "web", "domains": "www.example.com"})
		require.ErrorIs(t, err, logical.ErrUnsupportedOperation)
		require.Empty(t, h.e.called(""))
	})
}

// TestCertWildcardNeedsSubdomains: a wildcard *.R needs allow_wildcard_certificates and
// allow_subdomains, and R an allowed base or under one; a bare allowed name never opens its
// parent's wildcard (every sibling).
func TestCertWildcardNeedsSubdomains(t *testing.T) {
	h := certHarness(t)
	h.role("bare", map[string]any{"allowed_domains": "x.example.com", "allow_bare_domains": true, "allow_subdomains": false,
		"allow_wildcard_certificates": true})
	h.role("sub", map[string]any{"allowed_domains": "x.example.com", "allow_bare_domains": false, "allow_subdomains": true,
		"allow_wildcard_certificates": true})
	for _, tc := range []struct{ role, domain string }{
		{"bare", "*.example.com"},
		{"bare", "*.x.example.com"},
		{"sub", "*.example.com"},
		{"sub", "*.evilx.example.com"},
	} {
		h.bad(nil, logical.CreateOperation, "certs/wild", map[string]any{"role": tc.role, "domains": tc.domain},
			fmt.Sprintf("role %q does not allow %q", tc.role, tc.domain))
	}
	h.ok(logical.CreateOperation, "certs/bare", map[string]any{"role": "bare", "domains": "x.example.com"})
	h.ok(logical.CreateOperation, "certs/wild", map[string]any{"role": "sub", "domains": "*.x.example.com,*.a.b.x.example.com"})
}

func TestCertWriteAccepted(t *testing.T) {
	hundred := make([]string, 100)
	for i := range hundred {
		hundred[i] = fmt.Sprintf("d%d.example.com", i)
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name    string
		path    string
		data    map[string]any
		domains []string
	}{
		{name: "name of 256", path: long(127) + "/" + long(128)},
		{name: "segment of 128", path: "team/" + long(128)},
		{name: "name characters", path: "A.b_c-1/x.Y"},
		{name: "renewal-like name", path: "renewal/revoked"},
		{name: "100 domains", data: map[string]any{"domains": hundred}, domains: hundred},
		{name: "label of 63", data: map[string]any{"domains": long(63) + ".example.com"}, domains: []string{long(63) + ".example.com"}},
		{name: "name of 237", data: map[string]any{"domains": domainOfLength(237)}, domains: []string{domainOfLength(237)}},
		{name: "upper case and trailing dot", data: map[string]any{"domains": "WWW.EXAMPLE.COM."}, domains: []string{"www.example.com"}},
		{name: "IDNA", data: map[string]any{"domains": "Bücher.example.com,*.ÉCOLE.example.com"},
			domains: []string{"xn--bcher-kva.example.com", "*.xn--cole-9oa.example.com"}},
		{name: "profile of 64", data: map[string]any{"profile": long(64)}},
		{name: "wait 0", data: map[string]any{"wait": 0}},
		{name: "wait 60", data: map[string]any{"wait": "60s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := certHarness(t)
			name := tc.path
			if name == "" {
				name = "web"
			}
			data := map[string]any{"role": "web", "domains": "www.example.com"}
			for k, v := range tc.data {
				data[k] = v
			}
			h.ok(logical.CreateOperation, "certs/"+name, data)
			c := h.loadCert(name)
			require.NotNil(t, c)
			if tc.domains != nil {
				require.Equal(t, tc.domains, c.Domains)
			}
		})
	}
}

func TestCertRead(t *testing.T) {
	t.Run("issued", func(t *testing.T) {
		h := certHarness(t)
		h.ok(logical.CreateOperation, "certs/team-a/www", map[string]any{"role": "team", "domains": "www.example.com"})
		c := h.loadCert("team-a/www")
		h.e.reset()
		resp := h.ok(logical.ReadOperation, "certs/team-a/www", nil)
		require.Empty(t, h.e.called(""), "a current certificate is read from storage")
		d := resp.Data
		require.Equal(t, c.Certificate, d["certificate"])
		require.Equal(t, c.PrivateKey, d["private_key"])
		require.Equal(t, "ec", d["private_key_type"])
		require.Equal(t, c.Chain[0], d["issuing_ca"])
		require.Equal(t, c.Chain, d["ca_chain"])
		require.Equal(t, c.SerialNumber, d["serial_number"])
		require.Equal(t, c.NotAfter.Unix(), d["expiration"])
		require.Equal(t, []string{"www.example.com"}, d["domains"])
		require.Equal(t, "valid", d["status"])
		require.Equal(t, "team", d["role"])
		require.NotContains(t, d, "next_attempt_at")
		for _, k := range []string{"certificate", "private_key", "issuing_ca"} {
			require.NotEmpty(t, d[k], k)
		}
	})

	t.Run("missing", func(t *testing.T) {
		h := certHarness(t)
		resp, err := h.do(logical.ReadOperation, "certs/team-a/none", nil)
		require.NoError(t, err)
		require.Nil(t, resp)
		require.Empty(t, h.e.called(""))
	})

	pending := func(t *testing.T) *harness {
		h := certHarness(t)
		h.e.ensure = leavePending
		h.ok(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
		h.e.reset()
		h.e.ensureWaits = nil
		return h
	}

	t.Run("none issued yet: issue and wait", func(t *testing.T) {
		h := pending(t)
		h.e.ensure = nil // issues
		resp := h.ok(logical.ReadOperation, "certs/web", nil)
		require.NotEmpty(t, resp.Data["certificate"])
		require.Equal(t, []time.Duration{30 * time.Second}, h.e.ensureWaits)
	})

	t.Run("none issued yet: 503", func(t *testing.T) {
		h := pending(t)
		resp, err := h.do(logical.ReadOperation, "certs/web", nil)
		require.Nil(t, resp, "never an empty certificate")
		require.Equal(t, http.StatusServiceUnavailable, codeOf(err))
		require.ErrorContains(t, err, `certificate "web" is not issued yet (status pending)`)
		require.ErrorContains(t, err, "retry")
		require.Equal(t, []string{"web"}, h.e.names("EnsureCertificate"))
		require.Equal(t, []time.Duration{30 * time.Second}, h.e.ensureWaits)
	})

	t.Run("none issued, last attempt failed: 503 with the error", func(t *testing.T) {
		h := pending(t)
		h.e.ensure = failAttempt
		_, err := h.do(logical.ReadOperation, "certs/web", nil)
		require.Equal(t, http.StatusServiceUnavailable, codeOf(err))
		c := h.loadCert("web")
		require.ErrorContains(t, err, "the last attempt failed: acme: challenge validation failed: NXDOMAIN")
		require.ErrorContains(t, err, "the next attempt starts at "+c.NextAttemptAt.Format(time.RFC3339))
		require.ErrorContains(t, err, "write certs/web again to retry now")
	})

	t.Run("none issued on a performance standby", func(t *testing.T) {
		h := pending(t)
		h.e.writeSafe = false
		_, err := h.do(logical.ReadOperation, "certs/web", nil)
		require.ErrorIs(t, err, logical.ErrReadOnly, "Vault forwards the read to the active node")
		require.Empty(t, h.e.called(""))
	})

	t.Run("deleted while issuing", func(t *testing.T) {
		h := pending(t)
		h.e.ensure = func(e *fakeEngine, name string, _ *storage.CertEntry) (*storage.CertEntry, error) {
			return nil, storage.DeleteCert(context.Background(), e.s, name)
		}
		resp, err := h.do(logical.ReadOperation, "certs/web", nil)
		require.NoError(t, err)
		require.Nil(t, resp)
	})

	stale := func(t *testing.T) (*harness, *storage.CertEntry) {
		h := certHarness(t)
		h.ok(logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
		h.e.ensure = leavePending
		h.ok(logical.UpdateOperation, "certs/web", map[string]any{"domains": "www.example.com,api.example.com"})
		h.e.reset()
		h.e.ensureWaits = nil
		c := h.loadCert("web")
		require.False(t, c.Current())
		return h, c
	}

	t.Run("old certificate while the new one is issued", func(t *testing.T) {
		h, c := stale(t)
		resp := h.ok(logical.ReadOperation, "certs/web", nil)
		require.Equal(t, c.Certificate, resp.Data["certificate"], "the previous certificate is served meanwhile")
		require.Equal(t, []time.Duration{0}, h.e.ensureWaits, "a read with a certificate to serve does not wait")
	})

	t.Run("old certificate on a performance standby", func(t *testing.T) {
		h, c := stale(t)
		h.e.writeSafe = false
		resp := h.ok(logical.ReadOperation, "certs/web", nil)
		require.Equal(t, c.Certificate, resp.Data["certificate"])
		require.Empty(t, h.e.called(""))
	})
}

func TestCertReadTTL(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		name          string
		set           func(c *storage.CertEntry, now time.Time)
		ttl, rotation time.Duration
	}{
		{name: "renewal in 2h", set: func(c *storage.CertEntry, now time.Time) {
			c.NotBefore, c.NotAfter, c.RenewAt = now.Add(-30*day), now.Add(60*day), now.Add(2*time.Hour)
		}, ttl: 2 * time.Hour, rotation: 30*day + 2*time.Hour},
		{name: "capped at 4h", set: func(c *storage.CertEntry, now time.Time) {
			c.NotBefore, c.NotAfter, c.RenewAt = now.Add(-20*day), now.Add(70*day), now.Add(10*day)
		}, ttl: 4 * time.Hour, rotation: 30 * day},
		{name: "renewal due", set: func(c *storage.CertEntry, now time.Time) {
			c.NotBefore, c.NotAfter, c.RenewAt = now.Add(-61*day), now.Add(29*day), now.Add(-time.Hour)
		}, ttl: minReadTTL, rotation: 61*day - time.Hour},
		{name: "forced renewal", set: func(c *storage.CertEntry, now time.Time) {
			c.NotBefore, c.NotAfter, c.RenewAt, c.ForceRenewal = now.Add(-day), now.Add(89*day), now.Add(59*day), true
		}, ttl: minReadTTL, rotation: 60 * day},
		{name: "failing: next attempt", set: func(c *storage.CertEntry, now time.Time) {
			c.NotBefore, c.NotAfter, c.RenewAt = now.Add(-61*day), now.Add(29*day), now.Add(-time.Hour)
			c.Attempts, c.NextAttemptAt = 2, now.Add(30*time.Minute)
		}, ttl: 30 * time.Minute, rotation: 61*day - time.Hour},
		{name: "ARI check first", set: func(c *storage.CertEntry, now time.Time) {
			c.NotBefore, c.NotAfter, c.RenewAt, c.ARICheckAt = now.Add(-7*day), now.Add(83*day), now.Add(3*time.Hour), now.Add(time.Hour)
		}, ttl: time.Hour + time.Second, rotation: 7*day + 3*time.Hour},
		{name: "no renewal time", set: func(c *storage.CertEntry, now time.Time) {
			c.NotBefore, c.NotAfter = now.Add(-day), now.Add(89*day)
		}, ttl: minReadTTL, rotation: 90 * day},
		{name: "six-day certificate", set: func(c *storage.CertEntry, now time.Time) {
			c.NotBefore, c.NotAfter, c.RenewAt = now.Add(-3*day), now.Add(3*day+10*time.Hour), now.Add(time.Hour)
		}, ttl: time.Hour, rotation: 3*day + time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := certHarness(t)
			now := time.Now().UTC()
			c := &storage.CertEntry{Role: "web", Domains: []string{"www.example.com"}, KeyType: "ec256", Generation: 3, IssuedGeneration: 3,
				Status: storage.StatusValid, Certificate: "cert", PrivateKey: "key", Chain: []string{"ca"}, SerialNumber: "01"}
			tc.set(c, now)
			h.storeCert("web", c)
			resp := h.ok(logical.ReadOperation, "certs/web", nil)
			require.InDelta(t, tc.ttl.Seconds(), resp.Data["ttl"], 1, "ttl")
			require.Equal(t, int64(tc.rotation.Seconds()), resp.Data["rotation_period"])
			require.Empty(t, h.e.called(""))
		})
	}
}

func TestCertDelete(t *testing.T) {
	h := certHarness(t)
	h.ok(logical.CreateOperation, "certs/team-a/www", map[string]any{"role": "team", "domains": "www.example.com"})
	h.ok(logical.CreateOperation, "certs/team-a/api", map[string]any{"role": "team", "domains": "api.example.com"})
	ctx := context.Background()
	require.NoError(t, storage.StoreOrder(ctx, h.s, "team-a/www", &storage.OrderEntry{OrderURL: "https://ca.test/order/1", Generation: 1}))
	require.NoError(t, storage.StoreOrder(ctx, h.s, "team-a/api", &storage.OrderEntry{OrderURL: "https://ca.test/order/2", Generation: 1}))
	h.e.reset()

	resp := h.ok(logical.DeleteOperation, "certs/team-a/www", nil)
	require.Nil(t, resp)
	require.Nil(t, h.loadCert("team-a/www"))
	o, err := storage.LoadOrder(ctx, h.s, "team-a/www")
	require.NoError(t, err)
	require.Nil(t, o, "the order record goes with the certificate")
	require.Equal(t, []string{"team-a/www"}, h.e.names("CertificateChanged"))
	require.Empty(t, h.e.names("RevokeCertificate"), "deleting does not revoke")

	// The other certificate and its order stay.
	require.NotNil(t, h.loadCert("team-a/api"))
	o, err = storage.LoadOrder(ctx, h.s, "team-a/api")
	require.NoError(t, err)
	require.NotNil(t, o)

	resp, err = h.do(logical.ReadOperation, "certs/team-a/www", nil)
	require.NoError(t, err)
	require.Nil(t, resp)
}

func TestCertList(t *testing.T) {
	h := certHarness(t)
	h.e.ensure = leavePending
	for _, n := range []string{"team-a/www", "team-a/api", "team-a/deep/x", "team-b/www", "top"} {
		h.ok(logical.CreateOperation, "certs/"+n, map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
	}
	require.Equal(t, []string{"team-a/", "team-b/", "top"}, h.ok(logical.ListOperation, "certs/", nil).Data["keys"])
	require.Equal(t, []string{"api", "deep/", "www"}, h.ok(logical.ListOperation, "certs/team-a/", nil).Data["keys"])
	require.Equal(t, []string{"x"}, h.ok(logical.ListOperation, "certs/team-a/deep/", nil).Data["keys"])
	require.Empty(t, h.ok(logical.ListOperation, "certs/none/", nil).Data["keys"])
}

// Read and delete answer a name storage cannot hold (a ".." segment, however it was encoded on
// the way in) with a 400, as write does, not with storage's 500.
func TestCertReadDeleteRefuseBadNames(t *testing.T) {
	h := certHarness(t)
	for _, name := range []string{"team-a/../team-b/web", "team-a/./x", "team-a//x", "..", "team-a/.."} {
		for _, op := range []logical.Operation{logical.ReadOperation, logical.DeleteOperation} {
			resp, err := h.do(op, "certs/"+name, nil)
			require.NoError(t, err, "%s %s", op, name)
			require.True(t, resp.IsError(), "%s %s: a 400", op, name)
			require.Contains(t, resp.Error().Error(), "segment")
		}
	}
}

// Changing only the role of a certificate (same names, key type and profile) reissues nothing: the
// certificate already carries the names the new role allows. Switching roles in a loop is then no
// way to place orders past forced_renewal_interval.
func TestCertRoleOnlyChangeReissuesNothing(t *testing.T) {
	h := certHarness(t)
	h.role("web2", map[string]any{"allowed_cert_names": "*"})
	h.ok(logical.CreateOperation, "certs/w", map[string]any{"role": "web", "domains": "www.example.com"})
	before := h.loadCert("w")
	h.e.reset()
	for _, role := range []string{"web2", "web", "web2"} {
		resp := h.ok(logical.UpdateOperation, "certs/w", map[string]any{"role": role})
		require.Equal(t, http.StatusOK, statusOf(resp))
		c := h.loadCert("w")
		require.Equal(t, role, c.Role)
		require.Equal(t, before.Generation, c.Generation, "no new generation")
		require.Equal(t, before.SerialNumber, c.SerialNumber, "same certificate")
	}
	require.Empty(t, h.e.names("EnsureCertificate"), "nothing to issue")
	// A role that does not allow the names is refused, and the certificate keeps its role.
	h.role("other", map[string]any{"allowed_domains": "example.net"})
	resp, err := h.do(logical.UpdateOperation, "certs/w", map[string]any{"role": "other"})
	require.NoError(t, err)
	require.True(t, resp.IsError())
	require.Equal(t, "web2", h.loadCert("w").Role)
}
