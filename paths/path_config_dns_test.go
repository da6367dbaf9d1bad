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

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

func loadDNS(t *testing.T, h *harness, name string) *storage.DNSConfigEntry {
	t.Helper()
	c, err := storage.LoadDNSConfig(context.Background(), h.s, name)
	require.NoError(t, err)
	return c
}

func TestDNSConfigCreateReadList(t *testing.T) {
	h := newHarness(t)
	creds := map[string]any{"RFC2136_TSIG_SECRET": secret, "RFC2136_NAMESERVER": "192.0.2.53", "RFC2136_TSIG_KEY": "key."}
	resp := h.ok(logical.CreateOperation, "config/dns/ns", map[string]any{
		"provider": " RFC2136 ", "credentials": creds, "zones": "Example.COM.,bücher.example",
		"resolvers": "192.0.2.1, [2001:db8::1]:5353,::1",
	})
	want := map[string]any{
		"provider":            "rfc2136",
		"credential_keys":     []string{"RFC2136_NAMESERVER", "RFC2136_TSIG_KEY", "RFC2136_TSIG_SECRET"},
		"delegated_domains":   []string{},
		"zones":               []string{"example.com", "xn--bcher-kva.example"},
		"resolvers":           []string{"192.0.2.1:53", "[2001:db8::1]:5353", "[::1]:53"},
		"propagation_timeout": int64(120),
		"polling_interval":    "500ms",
		"ttl":                 0,
	}
	require.Equal(t, want, resp.Data)
	require.NotContains(t, resp.Data, "credentials")

	// The engine checked the configuration with the values; they are stored for the solver.
	require.Equal(t, []string{"rfc2136"}, h.e.names("CheckDNSConfig"))
	require.Equal(t, secret, h.e.checkedDNS[0].Credentials["RFC2136_TSIG_SECRET"])
	require.Equal(t, []string{"ns"}, h.e.names("DNSConfigChanged"))
	stored := loadDNS(t, h, "ns")
	require.Equal(t, map[string]string{"RFC2136_TSIG_SECRET": secret, "RFC2136_NAMESERVER": "192.0.2.53", "RFC2136_TSIG_KEY": "key."}, stored.Credentials)
	require.Equal(t, solvers.DefaultPropagationTimeout, stored.PropagationTimeout)
	require.Equal(t, solvers.DefaultPollingInterval, stored.PollingInterval)

	read := h.ok(logical.ReadOperation, "config/dns/ns", nil)
	require.Equal(t, want, read.Data)

	// credentials may also be given as a list of key=value pairs (vault write credentials=K=V).
	resp = h.ok(logical.CreateOperation, "config/dns/cf", map[string]any{"provider": "cloudflare",
		"credentials": []any{"CLOUDFLARE_DNS_API_TOKEN=" + secret}})
	require.Equal(t, []string{"CLOUDFLARE_DNS_API_TOKEN"}, resp.Data["credential_keys"])
	require.Equal(t, secret, loadDNS(t, h, "cf").Credentials["CLOUDFLARE_DNS_API_TOKEN"])
	require.Equal(t, []string{}, resp.Data["zones"], "empty lists are lists, not null")
	require.Equal(t, []string{}, resp.Data["resolvers"])

	list := h.ok(logical.ListOperation, "config/dns/", nil)
	require.Equal(t, []string{"cf", "ns"}, list.Data["keys"])

	resp, err := h.do(logical.ReadOperation, "config/dns/missing", nil)
	require.NoError(t, err)
	require.Nil(t, resp)
}

// TestDNSConfigFields checks each field's bounds just inside (stored as given) and just outside
// (400 naming the field, nothing stored), on create and on update of an existing configuration.
func TestDNSConfigFields(t *testing.T) {
	cases := []struct {
		field string
		value any
		// want is the 400 message part; empty: accepted.
		want string
		// check inspects the stored entry of an accepted value.
		check func(t *testing.T, c *storage.DNSConfigEntry)
	}{
		{field: "propagation_timeout", value: 1, check: func(t *testing.T, c *storage.DNSConfigEntry) { require.Equal(t, time.Second, c.PropagationTimeout) }},
		{field: "propagation_timeout", value: 1800, check: func(t *testing.T, c *storage.DNSConfigEntry) { require.Equal(t, 30*time.Minute, c.PropagationTimeout) }},
		{field: "propagation_timeout", value: "30m", check: func(t *testing.T, c *storage.DNSConfigEntry) { require.Equal(t, 30*time.Minute, c.PropagationTimeout) }},
		{field: "propagation_timeout", value: 0, want: "propagation_timeout must be between 1s and 30m0s"},
		{field: "propagation_timeout", value: 1801, want: "propagation_timeout must be between 1s and 30m0s"},
		{field: "propagation_timeout", value: -1, want: `field "propagation_timeout": cannot provide negative value`},
		{field: "polling_interval", value: "50ms", check: func(t *testing.T, c *storage.DNSConfigEntry) {
			require.Equal(t, 50*time.Millisecond, c.PollingInterval)
		}},
		{field: "polling_interval", value: "1m", check: func(t *testing.T, c *storage.DNSConfigEntry) { require.Equal(t, time.Minute, c.PollingInterval) }},
		{field: "polling_interval", value: "49ms", want: `polling_interval "49ms" must be a duration between 50ms and 1m0s`},
		{field: "polling_interval", value: "61s", want: `polling_interval "61s" must be a duration between 50ms and 1m0s`},
		{field: "polling_interval", value: "x", want: `polling_interval "x" must be a duration`},
		{field: "ttl", value: 0, check: func(t *testing.T, c *storage.DNSConfigEntry) { require.Equal(t, 0, c.TTL) }},
		{field: "ttl", value: 86400, check: func(t *testing.T, c *storage.DNSConfigEntry) { require.Equal(t, 86400, c.TTL) }},
		{field: "ttl", value: -1, want: "ttl must be between 0 and 86400 seconds"},
		{field: "ttl", value: 86401, want: "ttl must be between 0 and 86400 seconds"},
		{field: "resolvers", value: "::1", check: func(t *testing.T, c *storage.DNSConfigEntry) { require.Equal(t, []string{"[::1]:53"}, c.Resolvers) }},
		{field: "resolvers", value: "[::1]:53,192.0.2.1:5353", check: func(t *testing.T, c *storage.DNSConfigEntry) {
			require.Equal(t, []string{"[::1]:53", "192.0.2.1:5353"}, c.Resolvers)
		}},
		{field: "resolvers", value: "dns.example", want: `resolvers: resolver "dns.example" is not an IP address`},
		{field: "resolvers", value: "1.2.3.4:0", want: `resolvers: resolver "1.2.3.4:0" is not an IP address`},
		{field: "zones", value: "*.example.com", want: "zones: a zone cannot be a wildcard"},
		{field: "zones", value: "192.0.2.1", want: "zones: \"192.0.2.1\" is an IP address"},
		{field: "zones", value: "example..com", want: "zones: \"example..com\""},
		{field: "credentials", value: map[string]any{"CLOUDFLARE_DNS_API_TOKEN_FILE": secret}, want: `credentials: credential name "CLOUDFLARE_DNS_API_TOKEN_FILE" is not allowed`},
		{field: "credentials", value: map[string]any{"EXEC_PATH": secret}, want: `credentials: credential name "EXEC_PATH" is not allowed`},
		{field: "credentials", value: map[string]any{"PATH": secret}, want: `credentials: credential name "PATH" is reserved`},
		{field: "credentials", value: map[string]any{"LD_PRELOAD": secret}, want: `credentials: credential name "LD_PRELOAD" is reserved`},
		{field: "credentials", value: map[string]any{"VAULT_TOKEN": secret}, want: `credentials: credential name "VAULT_TOKEN" is reserved`},
		{field: "credentials", value: map[string]any{"cloudflare_token": secret}, want: `credentials: credential name "cloudflare_token" is invalid`},
		// Only the names lego documents for the provider (an allow-list, not a deny-list).
		{field: "credentials", value: map[string]any{"GODADDY_API_KEY": secret}, want: `credentials: credential name "GODADDY_API_KEY" is not one lego documents for provider "rfc2136"`},
		{field: "credentials", value: map[string]any{"HTTPS_PROXY": secret}, want: `credential name "HTTPS_PROXY" is not one lego documents`},
		{field: "credentials", value: map[string]any{"KUBECONFIG": secret}, want: `credential name "KUBECONFIG" is not one lego documents`},
		{field: "credentials", value: map[string]any{"RFC2136_TSIG_SECRET": secret, "RFC2136_NAMESERVER": "192.0.2.53"}, check: func(t *testing.T, c *storage.DNSConfigEntry) {
			require.Equal(t, map[string]string{"RFC2136_TSIG_SECRET": secret, "RFC2136_NAMESERVER": "192.0.2.53"}, c.Credentials)
		}},
		{field: "provider", value: "", want: "provider is required"},
	}
	for _, tc := range cases {
		for _, update := range []bool{false, true} {
			name := fmt.Sprintf("%s=%v", tc.field, tc.value)
			if update {
				name += " update"
			}
			t.Run(name, func(t *testing.T) {
				h := newHarness(t)
				data := map[string]any{"provider": "rfc2136", "credentials": map[string]any{"RFC2136_TSIG_SECRET": secret}}
				op := logical.CreateOperation
				if update {
					h.dnsConfig("ns", "example.com")
					data = map[string]any{}
					op = logical.UpdateOperation
				}
				data[tc.field] = tc.value
				if tc.want != "" {
					h.bad(nil, op, "config/dns/ns", data, tc.want)
					if !update {
						require.Empty(t, h.keys())
					}
					return
				}
				h.e.reset()
				h.ok(op, "config/dns/ns", data)
				tc.check(t, loadDNS(t, h, "ns"))
				require.Equal(t, []string{"ns"}, h.e.names("DNSConfigChanged"))
			})
		}
	}
}

func TestDNSConfigProviderRequired(t *testing.T) {
	h := newHarness(t)
	h.bad(nil, logical.CreateOperation, "config/dns/ns", map[string]any{"credentials": map[string]any{"A_TOKEN": secret}},
		"provider is required: give a lego DNS provider name")
	h.bad(nil, logical.CreateOperation, "config/dns/"+strings.Repeat("n", 129), map[string]any{"provider": "rfc2136"},
		"DNS configuration name is longer than 128")
	h.ok(logical.CreateOperation, "config/dns/"+strings.Repeat("n", 128), map[string]any{"provider": "rfc2136"})
}

// TestSensitiveInputNotQuoted: a malformed sensitive field is refused before Vault's field parser
// can quote its value in a "field validation failed" 400 (regression: a credentials pair written
// with ':' instead of '=' came back in the error, secret included).
func TestSensitiveInputNotQuoted(t *testing.T) {
	cases := []struct {
		name, path string
		data       map[string]any
		wants      []string
	}{
		{name: "credentials pair without =", path: "config/dns/ns",
			data:  map[string]any{"provider": "rfc2136", "credentials": []any{"RFC2136_NAMESERVER=192.0.2.53", "RFC2136_TSIG_SECRET:" + secret}},
			wants: []string{"credentials is malformed", "NAME=value", "the value is not shown"}},
		{name: "credentials not a map", path: "config/dns/ns", data: map[string]any{"provider": "rfc2136", "credentials": 42.5},
			wants: []string{"credentials is malformed"}},
		{name: "eab_hmac_key not a string", path: "accounts/main",
			data:  map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true, "eab_kid": "k", "eab_hmac_key": map[string]any{"k": secret}},
			wants: []string{"eab_hmac_key is malformed"}},
		{name: "private_key not a string", path: "accounts/main",
			data:  map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true, "private_key": []any{secret, secret}},
			wants: []string{"private_key is malformed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.bad(nil, logical.CreateOperation, tc.path, tc.data, tc.wants...)
			require.Empty(t, h.keys())
		})
	}
}

func TestDNSConfigUpdate(t *testing.T) {
	newConfig := func(t *testing.T) *harness {
		h := newHarness(t)
		h.ok(logical.CreateOperation, "config/dns/ns", map[string]any{"provider": "rfc2136", "zones": "example.com",
			"resolvers": "192.0.2.1", "ttl": 60, "polling_interval": "1s", "propagation_timeout": 300,
			"credentials": map[string]any{"RFC2136_NAMESERVER": "192.0.2.53", "RFC2136_TSIG_SECRET": secret}})
		h.e.reset()
		return h
	}

	t.Run("partial update keeps the rest", func(t *testing.T) {
		h := newConfig(t)
		before := loadDNS(t, h, "ns")
		resp := h.ok(logical.UpdateOperation, "config/dns/ns", map[string]any{"zones": "example.net,example.org"})
		require.Equal(t, []string{"example.net", "example.org"}, resp.Data["zones"])
		require.Equal(t, []string{"RFC2136_NAMESERVER", "RFC2136_TSIG_SECRET"}, resp.Data["credential_keys"])
		after := loadDNS(t, h, "ns")
		require.Equal(t, []string{"example.net", "example.org"}, after.Zones)
		after.Zones = before.Zones
		require.Equal(t, before, after)
		// The engine checks the merged configuration, credentials included.
		require.Equal(t, before.Credentials, h.e.checkedDNS[len(h.e.checkedDNS)-1].Credentials)
		require.Equal(t, []string{"ns"}, h.e.names("DNSConfigChanged"))
	})

	t.Run("credentials replace all", func(t *testing.T) {
		h := newConfig(t)
		resp := h.ok(logical.UpdateOperation, "config/dns/ns", map[string]any{"credentials": map[string]any{"RFC2136_TSIG_KEY": "k."}})
		require.Equal(t, []string{"RFC2136_TSIG_KEY"}, resp.Data["credential_keys"])
		require.Equal(t, map[string]string{"RFC2136_TSIG_KEY": "k."}, loadDNS(t, h, "ns").Credentials)
		require.Equal(t, "rfc2136", loadDNS(t, h, "ns").Provider)
	})

	t.Run("provider", func(t *testing.T) {
		h := newConfig(t)
		h.ok(logical.UpdateOperation, "config/dns/ns", map[string]any{"provider": "Cloudflare",
			"credentials": map[string]any{"CLOUDFLARE_DNS_API_TOKEN": secret}})
		c := loadDNS(t, h, "ns")
		require.Equal(t, "cloudflare", c.Provider)
		require.Equal(t, map[string]string{"CLOUDFLARE_DNS_API_TOKEN": secret}, c.Credentials)
		require.Equal(t, 60, c.TTL)
	})

	t.Run("bad field keeps the stored configuration", func(t *testing.T) {
		h := newConfig(t)
		h.bad(nil, logical.UpdateOperation, "config/dns/ns", map[string]any{"zones": "example.net", "ttl": 86401,
			"credentials": map[string]any{"RFC2136_TSIG_SECRET": secret + "-new"}}, "ttl must be between 0 and 86400")
	})
}

func TestDNSConfigCheckFails(t *testing.T) {
	ce := solvers.ValidateCredentialKey("bad key")
	var typed *solvers.ConfigError
	require.ErrorAs(t, ce, &typed)

	for _, update := range []bool{false, true} {
		t.Run(fmt.Sprintf("update=%v", update), func(t *testing.T) {
			h := newHarness(t)
			if update {
				h.dnsConfig("ns", "example.com")
			}
			data := map[string]any{"provider": "rfc2136", "credentials": map[string]any{"RFC2136_TSIG_SECRET": secret + "2"}}

			h.e.checkDNSErr = fmt.Errorf("start provider: %w", ce)
			h.bad([]string{"CheckDNSConfig"}, logical.UpdateOperation, "config/dns/ns", data,
				`DNS configuration "ns" cannot work`, `credential name "bad key" is invalid`)

			// Anything but a *solvers.ConfigError is our failure: 500, nothing stored.
			h.e.checkDNSErr = errors.New("solver process crashed")
			h.e.reset()
			err := h.fails(logical.UpdateOperation, "config/dns/ns", data)
			require.Equal(t, http.StatusInternalServerError, codeOf(err))
			require.Contains(t, err.Error(), `check DNS configuration "ns"`)
			require.Empty(t, h.e.names("DNSConfigChanged"))
		})
	}
}

func TestDNSConfigDelete(t *testing.T) {
	h := newHarness(t)
	h.fixtures()
	h.dnsConfig("spare", "")

	h.bad(nil, logical.DeleteOperation, "config/dns/ns", nil, `DNS configuration "ns" is used by role(s) web`, "change or delete them first")
	require.NotNil(t, loadDNS(t, h, "ns"))

	h.e.reset()
	h.ok(logical.DeleteOperation, "config/dns/spare", nil)
	require.Nil(t, loadDNS(t, h, "spare"))
	require.Equal(t, []string{"spare"}, h.e.names("DNSConfigChanged"), "the solver process of a deleted configuration stops")

	h.ok(logical.DeleteOperation, "roles/web", nil)
	h.e.reset()
	h.ok(logical.DeleteOperation, "config/dns/ns", nil)
	require.Equal(t, []string{"ns"}, h.e.names("DNSConfigChanged"))
	require.Equal(t, []string{"accounts/acme"}, h.keys())
}

// A secret written without its NAME= parses as a credential name with no value: the 400 says so
// without quoting it.
func TestDNSConfigCredentialWithoutNameIsNotQuoted(t *testing.T) {
	h := newHarness(t)
	for _, creds := range []any{secret, secret + "=", map[string]any{secret: ""}, []any{"RFC2136_NAMESERVER=192.0.2.53", secret + "= "}} {
		resp, err := h.do(logical.CreateOperation, "config/dns/ns", map[string]any{"provider": "rfc2136", "zones": "example.com", "credentials": creds})
		require.NoError(t, err)
		require.True(t, resp.IsError(), "%v: a 400", creds)
		msg := resp.Error().Error()
		require.True(t, strings.Contains(msg, "no value") || strings.Contains(msg, "malformed"), msg)
	}
}
