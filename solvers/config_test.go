package solvers

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateCredentialKey(t *testing.T) {
	tests := []struct {
		key     string
		ok      bool
		errPart string
	}{
		{"RFC2136_NAMESERVER", true, ""},
		{"CF_DNS_API_TOKEN", true, ""},
		{"AWS_ACCESS_KEY_ID", true, ""},
		{"A", true, ""},
		{"X1_2", true, ""},
		{"LEGO_DISABLE_CNAME_SUPPORT", true, ""},
		{"GODADDY_API_KEY", true, ""},
		{"GOOGLE_DOMAINS_ACCESS_TOKEN", true, ""},
		{"RFC2136_TTL", true, ""},

		{"", false, "empty"},
		{strings.Repeat("A", 129), false, "longer than 128"},
		{strings.Repeat("A", 128), true, ""},
		{"lower_case", false, "invalid"},
		{"1ABC", false, "invalid"},
		{"_ABC", false, "invalid"},
		{"AB-C", false, "invalid"},
		{"AB C", false, "invalid"},
		{"AB=C", false, "invalid"},
		{"RFC2136_TSIG_FILE", false, "RFC2136_TSIG_FILE"},
		{"GCE_SERVICE_ACCOUNT_FILE", false, "_FILE"},
		{"CF_API_KEY_FILE", false, "set the secret itself as CF_API_KEY"},
		{"ACME_DNS_STORAGE_PATH", false, "_PATH"},
		{"TRANSIP_PRIVATE_KEY_PATH", false, "_PATH"},
		{"HYPERONE_PASSPORT_LOCATION", false, "_LOCATION"},
		{"PATH", false, "reserved"},
		{"HOME", false, "reserved"},
		{"TMPDIR", false, "reserved"},
		{"LD_PRELOAD", false, "LD_"},
		{"LD_LIBRARY_PATH", false, "_PATH"},
		{"GODEBUG", false, "GO"},
		{"GOMAXPROCS", false, "GO"},
		{"GOTRACEBACK", false, "GO"},
		{"SSL_CERT_DIR", false, "SSL_CERT_"},
		{"PLUGIN_MIN_PORT", false, "PLUGIN_"},
		{"PLUGIN_CLIENT_CERT", false, "PLUGIN_"},
		{"VAULT_TOKEN", false, "VAULT_"},
		{"LEGO_CA_CERTIFICATES", false, "LEGO_"},
		{"LEGO_DEBUG_DNS_API_HTTP_CLIENT", false, "LEGO_"},
		{"LEGO_EXPERIMENTAL_DNS_TCP_ONLY", false, "LEGO_"},
		{"AWS_EC2_METADATA_DISABLED", false, "reserved"},
		{"AWS_EC2_METADATA_SERVICE_ENDPOINT", false, "AWS_EC2_METADATA_"},
		{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", false, "AWS_CONTAINER_"},
		{"AWS_SHARED_CREDENTIALS_FILE", false, "_FILE"},
		{"AWS_CONFIG_FILE", false, "_FILE"},
		{"GCE_METADATA_HOST", false, "reserved"},
		{"GOOGLE_APPLICATION_CREDENTIALS", false, "reserved"},
		{"LETSENCRYPT_VAULT_DNS_SOLVER_COOKIE", false, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.key[:min(len(tt.key), 40)], func(t *testing.T) {
			err := ValidateCredentialKey(tt.key)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			var ce *ConfigError
			assert.True(t, errors.As(err, &ce), "want *ConfigError, got %T", err)
			assert.Contains(t, err.Error(), tt.errPart)
			if tt.key != "" && len(tt.key) <= 40 {
				assert.Contains(t, err.Error(), tt.key, "error names the key")
			}
		})
	}
}

func TestChallengeRecord(t *testing.T) {
	for _, d := range []string{"www.example.test", "*.www.example.test", "www.example.test."} {
		fqdn, value := ChallengeRecord(d, "tok.thumb")
		assert.Equal(t, "_acme-challenge.www.example.test.", fqdn, d)
		assert.Equal(t, "sYAwVrqDtVOuJZvAHurSAYPoEt5fFV_C4bdSOOW-o5Y", value)
	}
	_, v2 := ChallengeRecord("x.test", "other")
	assert.NotEqual(t, "sYAwVrqDtVOuJZvAHurSAYPoEt5fFV_C4bdSOOW-o5Y", v2)
	assert.Len(t, v2, 43, "base64url of 32 bytes without padding")
	assert.NotContains(t, v2, "=")
}

func TestCheckConfig(t *testing.T) {
	base := DNSConfig{Provider: "rfc2136", Credentials: map[string]string{"RFC2136_NAMESERVER": "127.0.0.1"}}

	cc, err := checkConfig(base)
	require.NoError(t, err)
	assert.Equal(t, DefaultPropagationTimeout, cc.PropagationTimeout)
	assert.Equal(t, DefaultPollingInterval, cc.PollingInterval)

	for _, p := range []string{"exec", "manual", "EXEC"} {
		c := base
		c.Provider = p
		_, err := checkConfig(c)
		require.Error(t, err, p)
		assert.True(t, IsConfigError(err))
		assert.Contains(t, err.Error(), "not allowed")
	}
	for _, p := range []string{"", "Route53", "a b", "../x", strings.Repeat("a", 65)} {
		c := base
		c.Provider = p
		_, err := checkConfig(c)
		assert.True(t, IsConfigError(err), "provider %q", p)
	}

	c := base
	c.Credentials = map[string]string{"RFC2136_TSIG_FILE": "/etc/shadow"}
	_, err = checkConfig(c)
	require.Error(t, err)
	assert.True(t, IsConfigError(err))
	assert.NotContains(t, err.Error(), "/etc/shadow")

	c = base
	c.Credentials = map[string]string{"RFC2136_TSIG_SECRET": "a\x00b"}
	_, err = checkConfig(c)
	assert.True(t, IsConfigError(err))

	c = base
	c.Resolvers = []string{"192.0.2.1", "192.0.2.2:5353", "::1", "[2001:db8::1]:53", " ", ""}
	cc, err = checkConfig(c)
	require.NoError(t, err)
	assert.Equal(t, []string{"192.0.2.1:53", "192.0.2.2:5353", "[::1]:53", "[2001:db8::1]:53"}, cc.resolvers, "blank entries are skipped")

	for _, r := range []string{"dns.example:53", "dns.example", "1.2.3.4:0", "1.2.3.4:99999", "a b", ":53", "1.2.3.4:x", "2001:db8::1:53:x", "[::1]"} {
		c = base
		c.Resolvers = []string{r}
		_, err = checkConfig(c)
		assert.True(t, IsConfigError(err), "resolver %q", r)
	}

	c = base
	c.TTL = -1
	_, err = checkConfig(c)
	assert.True(t, IsConfigError(err))

	c = base
	c.Zones = []string{" Example.Test. ", "", "b.example.org"}
	cc, err = checkConfig(c)
	require.NoError(t, err)
	assert.Equal(t, []string{"example.test", "b.example.org"}, cc.zones)
	for _, z := range []string{"*.example.test", "a b.test", ".example.test", "a..test", "u@example.test"} {
		c = base
		c.Zones = []string{z}
		_, err = checkConfig(c)
		assert.True(t, IsConfigError(err), "zone %q", z)
	}
}

func TestConfigHash(t *testing.T) {
	base := DNSConfig{Provider: "rfc2136", Credentials: map[string]string{"RFC2136_NAMESERVER": "1", "RFC2136_TSIG_KEY": "2"}, Resolvers: []string{"1.1.1.1"}, TTL: 60, Zones: []string{"example.test"}}
	h := func(c DNSConfig) [32]byte {
		cc, err := checkConfig(c)
		require.NoError(t, err)
		return cc.hash
	}
	h0 := h(base)
	same := base
	same.Credentials = map[string]string{"RFC2136_TSIG_KEY": "2", "RFC2136_NAMESERVER": "1"}
	same.Resolvers = []string{"1.1.1.1:53"}
	same.Zones = []string{"Example.Test."}
	same.PropagationTimeout = time.Minute // not part of the child's identity
	assert.True(t, sameHash(h0, h(same)))

	for _, mut := range []func(*DNSConfig){
		func(c *DNSConfig) { c.Provider = "dnsupdate" },
		func(c *DNSConfig) {
			c.Credentials = map[string]string{"RFC2136_NAMESERVER": "1", "RFC2136_TSIG_KEY": "3"}
		},
		func(c *DNSConfig) { c.Credentials = map[string]string{"RFC2136_NAMESERVER": "1"} },
		func(c *DNSConfig) {
			c.Credentials = map[string]string{"RFC2136_NAMESERVER": "12", "RFC2136_TSIG_KEY": ""}
		},
		func(c *DNSConfig) { c.Resolvers = nil },
		func(c *DNSConfig) { c.TTL = 61 },
		func(c *DNSConfig) { c.Zones = nil },
		func(c *DNSConfig) { c.Zones = []string{"example.test", "other.test"} },
	} {
		c := base
		mut(&c)
		assert.False(t, sameHash(h0, h(c)))
	}
}

func TestChildEnv(t *testing.T) {
	cc, err := checkConfig(DNSConfig{
		Provider: "rfc2136",
		Credentials: map[string]string{
			"RFC2136_NAMESERVER": "127.0.0.1:53",
			"DNSUPDATE_TSIG_KEY": "k.",
		},
		TTL: 60,
	})
	require.NoError(t, err)
	env := childEnv(cc, "/tmp/private")
	assert.Equal(t, []string{
		"DNSUPDATE_TSIG_KEY=k.",
		"RFC2136_NAMESERVER=127.0.0.1:53",
		"DNSUPDATE_TTL=60",
		"RFC2136_TTL=60",
		"HOME=/nonexistent",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_CONFIG_FILE=/dev/null",
		"GCE_METADATA_HOST=127.0.0.1:1",
		"TMPDIR=/tmp/private",
	}, env)

	// An explicit *_TTL credential wins: no TTL variables are added.
	cc.Credentials = map[string]string{"CF_DNS_API_TOKEN": "x", "CLOUDFLARE_TTL": "300"}
	cc.Provider = "cloudflare"
	env = childEnv(cc, "/t")
	assert.False(t, slices.Contains(env, "RFC2136_TTL=60"))
	assert.False(t, slices.Contains(env, "CLOUDFLARE_TTL=60"))

	// No TTL, no variables.
	assert.Nil(t, ttlEnv("cloudflare", []string{"CF_DNS_API_TOKEN"}, 0))
	// Only the TTL names lego documents for the provider are set.
	assert.Equal(t, []string{"CLOUDFLARE_TTL=30"}, ttlEnv("cloudflare", []string{"CF_DNS_API_TOKEN", "CF_ZONE_API_TOKEN"}, 30))
	assert.Equal(t, []string{"AWS_TTL=30"}, ttlEnv("route53", nil, 30))
	assert.Nil(t, ttlEnv("no-such-provider", nil, 30))
}

func TestRedactor(t *testing.T) {
	r := newRedactor(map[string]string{
		"A_SECRET": "s3cr3t-value",
		"A_SHORT":  "abc",               // too short to redact
		"A_LONG":   "s3cr3t-value-long", // contains another value
		"A_SPACE":  "  padded  ",
		"A_EMPTY":  "",
	})
	in := errors.New("auth failed for s3cr3t-value-long and s3cr3t-value (abc) padded")
	out := r.Error(in)
	assert.Equal(t, "auth failed for [redacted] and [redacted] (abc) [redacted]", out.Error())
	assert.False(t, IsConfigError(out))

	ce := r.Error(&ConfigError{msg: "bad token s3cr3t-value"})
	assert.True(t, IsConfigError(ce))
	assert.Equal(t, "bad token [redacted]", ce.Error())

	assert.Nil(t, r.Error(nil))
	assert.Equal(t, "x", newRedactor(nil).String("x"))

	// The parent strips URL queries again, whatever the child sent.
	assert.Equal(t, `cloudns: Get "https://api.cloudns.net/dns/add-record.json?[query removed]": timeout`,
		newRedactor(nil).String(`cloudns: Get "https://api.cloudns.net/dns/add-record.json?auth-id=1&auth-password=Pa%24%24+w0rd": timeout`))
	// Encodings of a value are redacted too.
	assert.Equal(t, "auth-password=[redacted]", newRedactor(map[string]string{"P": "Pa$$ w0rd"}).String("auth-password=Pa%24%24+w0rd"))
	assert.Equal(t, "auth-password=[redacted]", newRedactor(map[string]string{"P": "Pa$$ w0rd"}).String("auth-password=Pa%24%24%20w0rd"))
}

// FuzzParseResolvers checks that accepted resolvers are always ip:port.
func FuzzParseResolvers(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53", "2001:db8::1", "dns.example", "1.2.3.4:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ParseResolvers([]string{in})
		if err != nil {
			return
		}
		for _, r := range out {
			if _, err := netip.ParseAddrPort(r); err != nil {
				t.Fatalf("accepted %q as %q", in, r)
			}
		}
	})
}
