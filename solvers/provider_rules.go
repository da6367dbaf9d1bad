package solvers

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/testproviders"
)

//go:generate go run gen_provider_env.go

// globalEnv are names lego reads for every DNS provider and documents outside
// the providers' own tables. LEGO_DISABLE_CNAME_SUPPORT only narrows where a
// record is written (the _acme-challenge name itself, no CNAME following).
var globalEnv = []string{"LEGO_DISABLE_CNAME_SUPPORT"}

// hostPathNames are documented names whose value is a path on the Vault host
// that lego or the provider's SDK opens, without a _FILE/_PATH/_LOCATION
// suffix to show it.
var hostPathNames = map[string]bool{
	"AKAMAI_EDGERC":           true, // the .edgerc file
	"INFOBLOX_CA_CERTIFICATE": true, // a PEM file path
}

// maxListedNames bounds how many accepted names an error lists.
const maxListedNames = 15

// ProviderNames returns the names lego documents for provider's environment
// (see providerEnv) plus the provider-independent ones, and whether provider
// is a lego DNS provider at all. The slice is sorted and must not be
// modified. Safe for concurrent use.
func ProviderNames(provider string) ([]string, bool) {
	names, ok := providerEnv[provider]
	if !ok {
		names, ok = testproviders.Env[provider]
	}
	if !ok {
		return nil, false
	}
	all := slices.Concat(names, globalEnv)
	sort.Strings(all)
	return slices.Compact(all), true
}

// ValidateProviderCredentialKey reports whether k may be set in the
// credentials of a configuration for provider: it must pass
// ValidateCredentialKey (syntax, no host file paths, no reserved names), be
// one of the names lego documents for provider (an allow-list, see
// ProviderNames), and not select an ambient credential source (see
// credentialModes). It returns a *ConfigError that names the key and lists
// (truncated) the names the provider accepts. Safe for concurrent use.
func ValidateProviderCredentialKey(provider, k string) error {
	if err := ValidateCredentialKey(k); err != nil {
		return err
	}
	names, ok := ProviderNames(provider)
	if !ok {
		return configErrorf("provider %q is not a lego DNS provider", truncate(provider, maxProviderNameLen))
	}
	if hostPathNames[k] {
		return configErrorf("credential name %q is not allowed: its value is a file on the Vault host, which tenants may not choose", k)
	}
	if why, refused := credentialModes[provider].refused[k]; refused {
		return configErrorf("credential name %q is not allowed for provider %q: %s", k, provider, why)
	}
	if slices.Contains(names, k) {
		return nil
	}
	return configErrorf("credential name %q is not one lego documents for provider %q; it accepts %s", k, provider, acceptedList(provider, names))
}

// acceptedList renders the names of provider a configuration may set.
func acceptedList(provider string, names []string) string {
	var ok []string
	for _, n := range names {
		if ValidateCredentialKey(n) != nil || hostPathNames[n] {
			continue
		}
		if _, refused := credentialModes[provider].refused[n]; refused {
			continue
		}
		ok = append(ok, n)
	}
	if len(ok) == 0 {
		return "no credentials"
	}
	if len(ok) > maxListedNames {
		return strings.Join(ok[:maxListedNames], ", ") + ", ... (" + strconv.Itoa(len(ok)-maxListedNames) + " more)"
	}
	return strings.Join(ok, ", ")
}

// credentialMode forces a provider whose lego default falls back to ambient
// credentials (instance metadata, the host's CLI logins and files, workload
// identity) onto an explicit mode whose credentials all come from the
// configuration.
type credentialMode struct {
	// required names must be set to a non-empty value.
	required []string
	// anyOf, when set, needs at least one group whose names are all set.
	anyOf [][]string
	// refused are documented names that select an ambient source, with why.
	refused map[string]string
	// values restricts a name to these values (compared case-insensitively)
	// when it is set.
	values map[string][]string
	// env is added to the child's environment after the credentials.
	env []string
	// mode describes the explicit mode for error messages.
	mode string
}

var awsMode = credentialMode{
	required: []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
	refused: map[string]string{
		"AWS_PROFILE": "it selects a profile from the shared AWS files of the Vault host; give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ASSUME_ROLE_ARN to assume a role)",
	},
	mode: "an access key: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the child cannot reach instance metadata, container credentials or the host's ~/.aws)",
}

var akamaiMode = credentialMode{
	required: []string{"AKAMAI_HOST", "AKAMAI_CLIENT_TOKEN", "AKAMAI_CLIENT_SECRET", "AKAMAI_ACCESS_TOKEN"},
	refused: map[string]string{
		"AKAMAI_EDGERC_SECTION": "it selects a section of an .edgerc file on the Vault host; give AKAMAI_HOST, AKAMAI_CLIENT_TOKEN, AKAMAI_CLIENT_SECRET and AKAMAI_ACCESS_TOKEN",
	},
	mode: "EdgeGrid credentials: AKAMAI_HOST, AKAMAI_CLIENT_TOKEN, AKAMAI_CLIENT_SECRET and AKAMAI_ACCESS_TOKEN",
}

// credentialModes lists, per provider name (aliases included), the explicit
// credential mode it is held to. Checked against lego v4.35.2's providers:
// route53 and lightsail use the AWS SDK's default chain (environment, shared
// files, web identity, ECS container credentials, EC2 instance metadata);
// gcloud uses Application Default Credentials (gcloud CLI files, GCE metadata)
// unless GCE_SERVICE_ACCOUNT is set; azuredns uses DefaultAzureCredential
// (environment, workload identity, managed identity, the az CLI) unless
// AZURE_AUTH_METHOD picks one; azure falls back to managed identity and reads
// its subscription and resource group from instance metadata; alidns and
// aliesa use an ECS RAM role from instance metadata with *_RAM_ROLE;
// oraclecloud uses instance principals (metadata) or the host's ~/.oci
// config with OCI_AUTH_TYPE; ovh reads ~/.ovh.conf and /etc/ovh.conf for
// what is not given; edgedns reads an .edgerc file.
var credentialModes = map[string]credentialMode{
	"route53":   awsMode,
	"lightsail": awsMode,
	"gcloud": {
		required: []string{"GCE_SERVICE_ACCOUNT"},
		mode:     "a service account key given as GCE_SERVICE_ACCOUNT (the JSON key itself); Application Default Credentials and the metadata server are not used",
	},
	"azuredns": {
		required: []string{"AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"},
		values:   map[string][]string{"AZURE_AUTH_METHOD": {"env"}},
		env:      []string{"AZURE_AUTH_METHOD=env"},
		mode: "a service principal secret: AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID (AZURE_AUTH_METHOD=env); " +
			"the cli, msi, wli, oidc and pipeline methods run the az program or use the Vault host's identity",
	},
	"azure": {
		required: []string{"AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP"},
		refused: map[string]string{
			"AZURE_METADATA_ENDPOINT": "the provider asks it for the host's own subscription and resource group; give AZURE_SUBSCRIPTION_ID and AZURE_RESOURCE_GROUP",
		},
		mode: "a service principal secret with its subscription and resource group: AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID, AZURE_SUBSCRIPTION_ID and AZURE_RESOURCE_GROUP (no managed identity or instance metadata)",
	},
	"alidns": {
		required: []string{"ALICLOUD_ACCESS_KEY", "ALICLOUD_SECRET_KEY"},
		refused:  map[string]string{"ALICLOUD_RAM_ROLE": "it takes the ECS instance's RAM role from instance metadata; give ALICLOUD_ACCESS_KEY and ALICLOUD_SECRET_KEY"},
		mode:     "an access key: ALICLOUD_ACCESS_KEY and ALICLOUD_SECRET_KEY",
	},
	"aliesa": {
		required: []string{"ALIESA_ACCESS_KEY", "ALIESA_SECRET_KEY"},
		refused:  map[string]string{"ALIESA_RAM_ROLE": "it takes the ECS instance's RAM role from instance metadata; give ALIESA_ACCESS_KEY and ALIESA_SECRET_KEY"},
		mode:     "an access key: ALIESA_ACCESS_KEY and ALIESA_SECRET_KEY",
	},
	"oraclecloud": {
		refused: map[string]string{
			"OCI_AUTH_TYPE": "instance principals use the Vault host's instance metadata and user principals its ~/.oci configuration; leave it unset to use the API key given in the credentials",
		},
		mode: "an API key given in the credentials (OCI_AUTH_TYPE unset)",
	},
	"ovh": {
		required: []string{"OVH_ENDPOINT"},
		anyOf: [][]string{
			{"OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY"},
			{"OVH_CLIENT_ID", "OVH_CLIENT_SECRET"},
			{"OVH_ACCESS_TOKEN"},
		},
		mode: "OVH_ENDPOINT with an application key (OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET, OVH_CONSUMER_KEY), OAuth2 client (OVH_CLIENT_ID, OVH_CLIENT_SECRET) or OVH_ACCESS_TOKEN; the Vault host's ovh.conf files are not a source",
	},
	"edgedns": akamaiMode,
	"fastdns": akamaiMode,
}

// checkCredentialMode checks creds against provider's credential mode. The
// error names variables, never values.
func checkCredentialMode(provider string, creds map[string]string) error {
	m, ok := credentialModes[provider]
	if !ok {
		return nil
	}
	set := func(k string) bool { return strings.TrimSpace(creds[k]) != "" }
	var missing []string
	for _, k := range m.required {
		if !set(k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return configErrorf("provider %q needs %s set: this plugin only uses %s", provider, strings.Join(missing, ", "), m.mode)
	}
	if len(m.anyOf) > 0 {
		found := false
		for _, group := range m.anyOf {
			all := true
			for _, k := range group {
				all = all && set(k)
			}
			found = found || all
		}
		if !found {
			return configErrorf("provider %q needs explicit credentials: this plugin only uses %s", provider, m.mode)
		}
	}
	for k, allowed := range m.values {
		v, present := creds[k]
		if !present {
			continue
		}
		if !slices.Contains(allowed, strings.ToLower(strings.TrimSpace(v))) {
			return configErrorf("credential %s of provider %q must be %s or unset: this plugin only uses %s", k, provider, strings.Join(allowed, " or "), m.mode)
		}
	}
	return nil
}

// providerEnvFor returns the variables the plugin adds to provider's child
// environment to hold it to its credential mode.
func providerEnvFor(provider string) []string {
	return credentialModes[provider].env
}
