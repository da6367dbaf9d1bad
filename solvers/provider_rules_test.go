package solvers

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/legoenv"
)

// A lego upgrade changes the documented names: provider_env.go must then be
// regenerated (go generate ./solvers/).
func TestProviderEnvIsGenerated(t *testing.T) {
	dir, version, err := legoenv.Locate()
	require.NoError(t, err, "the go command and the lego module are needed to check provider_env.go")
	want, err := legoenv.Generate(dir, version)
	require.NoError(t, err)
	got, err := os.ReadFile("provider_env.go")
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "provider_env.go is stale for lego %s: run go generate ./solvers/", version)
	assert.Equal(t, version, providerEnvLegoVersion)
}

func TestProviderNamesAliases(t *testing.T) {
	for _, pair := range [][2]string{{"rfc2136", "dnsupdate"}, {"acme-dns", "acmedns"}, {"edgedns", "fastdns"}, {"linode", "linodev4"}} {
		a, okA := ProviderNames(pair[0])
		b, okB := ProviderNames(pair[1])
		require.True(t, okA && okB, pair)
		assert.Equal(t, a, b, "alias %s of %s", pair[1], pair[0])
	}
	azure, _ := ProviderNames("azure")
	azuredns, _ := ProviderNames("azuredns")
	assert.NotEqual(t, azure, azuredns, "azure and azuredns are different providers")
	_, ok := ProviderNames("nope")
	assert.False(t, ok)
	rfc, _ := ProviderNames("rfc2136")
	for _, n := range []string{"RFC2136_NAMESERVER", "DNSUPDATE_NAMESERVER", "RFC2136_TSIG_SECRET", "DNSUPDATE_RFC3645_USERNAME", "RFC2136_TSIG_GSS_USERNAME", "LEGO_DISABLE_CNAME_SUPPORT"} {
		assert.Contains(t, rfc, n)
	}
}

func TestValidateProviderCredentialKey(t *testing.T) {
	tests := []struct {
		provider, key string
		errPart       string // empty: accepted
	}{
		{"cloudflare", "CF_DNS_API_TOKEN", ""},
		{"cloudflare", "CLOUDFLARE_DNS_API_TOKEN", ""},
		{"cloudflare", "LEGO_DISABLE_CNAME_SUPPORT", ""},
		{"rfc2136", "RFC2136_NAMESERVER", ""},
		{"dnsupdate", "DNSUPDATE_TSIG_SECRET", ""},
		{"route53", "AWS_ACCESS_KEY_ID", ""},
		{"route53", "AWS_ASSUME_ROLE_ARN", ""},
		{"godaddy", "GODADDY_API_KEY", ""},
		{"azuredns", "AZURE_AUTH_METHOD", ""},

		// Not documented for the provider: network and host identity settings.
		{"route53", "HTTPS_PROXY", "not one lego documents"},
		{"route53", "HTTP_PROXY", "not one lego documents"},
		{"route53", "NO_PROXY", "not one lego documents"},
		{"route53", "KUBECONFIG", "not one lego documents"},
		{"route53", "AWS_WEB_IDENTITY_TOKEN_FILE", "_FILE"},
		{"route53", "AWS_ROLE_ARN", "not one lego documents"},
		{"azuredns", "IDENTITY_ENDPOINT", "not one lego documents"},
		{"azuredns", "MSI_ENDPOINT", "not one lego documents"},
		{"azuredns", "IMDS_ENDPOINT", "not one lego documents"},
		{"azuredns", "AZURE_FEDERATED_TOKEN_FILE", "_FILE"},
		{"azuredns", "AZURE_OIDC_TOKEN", "not one lego documents"},
		{"azuredns", "AZURE_USERNAME", "not one lego documents"},
		{"azuredns", "AZURE_CONFIG_DIR", "not one lego documents"},
		{"gcloud", "GOOGLE_CLOUD_PROJECT", "reserved"},
		{"gcloud", "CLOUDSDK_CONFIG", "not one lego documents"},
		{"cloudflare", "AWS_ACCESS_KEY_ID", "not one lego documents"},
		{"rfc2136", "CF_DNS_API_TOKEN", "not one lego documents"},
		{"cloudflare", "LEGO_EXPERIMENTAL_DNS_TCP_ONLY", "reserved"},

		// Documented, but a host file or an ambient credential source.
		{"azuredns", "AZURE_CLIENT_CERTIFICATE_PATH", "_PATH"},
		{"gcloud", "GCE_SERVICE_ACCOUNT_FILE", "_FILE"},
		{"rfc2136", "RFC2136_TSIG_FILE", "_FILE"},
		{"route53", "AWS_SHARED_CREDENTIALS_FILE", "_FILE"},
		{"route53", "AWS_PROFILE", "shared AWS files"},
		{"alidns", "ALICLOUD_RAM_ROLE", "instance metadata"},
		{"oraclecloud", "OCI_AUTH_TYPE", "instance metadata"},
		{"edgedns", "AKAMAI_EDGERC", "file on the Vault host"},
		{"infoblox", "INFOBLOX_CA_CERTIFICATE", "file on the Vault host"},
		{"azure", "AZURE_METADATA_ENDPOINT", "subscription"},

		{"nope", "X_Y", "not a lego DNS provider"},
	}
	for _, tt := range tests {
		t.Run(tt.provider+"/"+tt.key, func(t *testing.T) {
			err := ValidateProviderCredentialKey(tt.provider, tt.key)
			if tt.errPart == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, IsConfigError(err), "want *ConfigError, got %T", err)
			assert.Contains(t, err.Error(), tt.errPart)
			if tt.provider != "nope" {
				assert.Contains(t, err.Error(), tt.key, "the error names the key")
			}
		})
	}
}

func TestRefusedKeyListsAcceptedNames(t *testing.T) {
	err := ValidateProviderCredentialKey("cloudns", "HTTPS_PROXY")
	require.Error(t, err)
	assert.Equal(t, `credential name "HTTPS_PROXY" is not one lego documents for provider "cloudns"; it accepts `+
		"CLOUDNS_AUTH_ID, CLOUDNS_AUTH_PASSWORD, CLOUDNS_HTTP_TIMEOUT, CLOUDNS_POLLING_INTERVAL, CLOUDNS_PROPAGATION_TIMEOUT, CLOUDNS_SUB_AUTH_ID, CLOUDNS_TTL, LEGO_DISABLE_CNAME_SUPPORT",
		err.Error())

	// A long list is truncated; refused names are never offered.
	err = ValidateProviderCredentialKey("rfc2136", "HTTPS_PROXY")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more)")
	assert.NotContains(t, err.Error(), "_FILE")
	err = ValidateProviderCredentialKey("route53", "HTTPS_PROXY")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "AWS_PROFILE")
	assert.NotContains(t, err.Error(), "AWS_SHARED_CREDENTIALS_FILE")
}

func TestCheckConfigAllowList(t *testing.T) {
	_, err := checkConfig(DNSConfig{Provider: "nope"})
	require.Error(t, err)
	assert.Equal(t, `provider "nope" is not a lego DNS provider`, err.Error())

	_, err = checkConfig(DNSConfig{Provider: "cloudflare", Credentials: map[string]string{"CF_DNS_API_TOKEN": "t", "HTTPS_PROXY": "http://proxy.internal:3128"}})
	require.Error(t, err)
	assert.True(t, IsConfigError(err))
	assert.Contains(t, err.Error(), `"HTTPS_PROXY"`)
	assert.NotContains(t, err.Error(), "proxy.internal", "values are never quoted")

	_, err = checkConfig(DNSConfig{Provider: "cloudflare", Credentials: map[string]string{"CF_DNS_API_TOKEN": "t"}})
	assert.NoError(t, err)
}

func TestCredentialModes(t *testing.T) {
	const secret = "do-not-print-me"
	tests := []struct {
		name    string
		cfg     DNSConfig
		errPart string
	}{
		{"route53 without keys", DNSConfig{Provider: "route53", Credentials: map[string]string{"AWS_REGION": "eu-west-1"}}, "needs AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY set"},
		{"route53 with keys", DNSConfig{Provider: "route53", Credentials: map[string]string{"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": secret}}, ""},
		{"route53 with blank key", DNSConfig{Provider: "route53", Credentials: map[string]string{"AWS_ACCESS_KEY_ID": " ", "AWS_SECRET_ACCESS_KEY": secret}}, "needs AWS_ACCESS_KEY_ID set"},
		{"lightsail without keys", DNSConfig{Provider: "lightsail", Credentials: map[string]string{"DNS_ZONE": "example.com"}}, "AWS_ACCESS_KEY_ID"},
		{"gcloud without key", DNSConfig{Provider: "gcloud", Credentials: map[string]string{"GCE_PROJECT": "p"}}, "needs GCE_SERVICE_ACCOUNT set"},
		{"gcloud with key", DNSConfig{Provider: "gcloud", Credentials: map[string]string{"GCE_SERVICE_ACCOUNT": `{"type":"service_account"}`}}, ""},
		{"azuredns default", DNSConfig{Provider: "azuredns", Credentials: map[string]string{"AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": secret, "AZURE_TENANT_ID": "t"}}, ""},
		{"azuredns env", DNSConfig{Provider: "azuredns", Credentials: map[string]string{"AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": secret, "AZURE_TENANT_ID": "t", "AZURE_AUTH_METHOD": "ENV"}}, ""},
		{"azuredns without secret", DNSConfig{Provider: "azuredns", Credentials: map[string]string{"AZURE_TENANT_ID": "t"}}, "needs AZURE_CLIENT_ID, AZURE_CLIENT_SECRET set"},
		{"azure without subscription", DNSConfig{Provider: "azure", Credentials: map[string]string{"AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": secret, "AZURE_TENANT_ID": "t"}}, "AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP"},
		{"alidns without keys", DNSConfig{Provider: "alidns"}, "ALICLOUD_ACCESS_KEY"},
		{"ovh without credentials", DNSConfig{Provider: "ovh", Credentials: map[string]string{"OVH_ENDPOINT": "ovh-eu"}}, "needs explicit credentials"},
		{"ovh half an app key", DNSConfig{Provider: "ovh", Credentials: map[string]string{"OVH_ENDPOINT": "ovh-eu", "OVH_APPLICATION_KEY": "k"}}, "needs explicit credentials"},
		{"ovh token", DNSConfig{Provider: "ovh", Credentials: map[string]string{"OVH_ENDPOINT": "ovh-eu", "OVH_ACCESS_TOKEN": secret}}, ""},
		{"edgedns without host", DNSConfig{Provider: "fastdns", Credentials: map[string]string{"AKAMAI_CLIENT_TOKEN": "x"}}, "AKAMAI_HOST"},
	}
	for _, method := range []string{"cli", "msi", "wli", "oidc", "pipeline", "CLI", ""} {
		tests = append(tests, struct {
			name    string
			cfg     DNSConfig
			errPart string
		}{"azuredns method " + method, DNSConfig{Provider: "azuredns", Credentials: map[string]string{
			"AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": secret, "AZURE_TENANT_ID": "t", "AZURE_AUTH_METHOD": method,
		}}, "AZURE_AUTH_METHOD of provider \"azuredns\" must be env or unset"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkConfig(tt.cfg)
			if tt.errPart == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, IsConfigError(err))
			assert.Contains(t, err.Error(), tt.errPart)
			assert.NotContains(t, err.Error(), secret)
			assert.NotContains(t, err.Error(), "=cli", "values are not echoed")
		})
	}
}

func TestChildEnvPinsAzureAuthMethod(t *testing.T) {
	cc, err := checkConfig(DNSConfig{Provider: "azuredns", Credentials: map[string]string{"AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s3cret", "AZURE_TENANT_ID": "t"}})
	require.NoError(t, err)
	env := childEnv(cc, "/t")
	assert.Contains(t, env, "AZURE_AUTH_METHOD=env")
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "AZURE_AUTH_METHOD" || k == "HOME" || k == "TMPDIR" || slices.Contains(fixedChildEnvNames(), k) {
			continue
		}
		names, _ := ProviderNames("azuredns")
		assert.Contains(t, names, k, "every other variable of the child is a documented name")
	}
}

func fixedChildEnvNames() []string {
	var out []string
	for _, kv := range fixedChildEnv {
		k, _, _ := strings.Cut(kv, "=")
		out = append(out, k)
	}
	return out
}
