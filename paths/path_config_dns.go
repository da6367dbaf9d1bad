package paths

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

var dnsConfigFields = map[string]*framework.FieldSchema{
	"name":     {Type: framework.TypeString, Required: true, Description: "Name of the DNS configuration."},
	"provider": {Type: framework.TypeString, Description: "lego DNS provider name, e.g. rfc2136, cloudflare, route53, gcloud."},
	"credentials": {Type: framework.TypeKVPairs, Description: "Provider settings and secrets as key=value pairs under lego's documented variable names (e.g. CLOUDFLARE_DNS_API_TOKEN). Write-only; a write that gives credentials replaces all of them.",
		DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"credential_keys":     {Type: framework.TypeStringSlice, Description: "Names of the credentials that are set (values are never returned)."},
	"zones":               {Type: framework.TypeCommaStringSlice, Description: "DNS zones this configuration may answer challenges for. Empty: any."},
	"delegated_domains":   {Type: framework.TypeCommaStringSlice, Description: "Names outside zones (and the names under them) whose _acme-challenge records are CNAMEs into zones (the acme-dns pattern): their challenge records are written at the CNAME's target, which must lie in zones and be derived from the name (<name>.<zone or a name under it>, or _acme-challenge.<name>.<...>). Needs zones."},
	"resolvers":           {Type: framework.TypeCommaStringSlice, Description: "DNS servers (ip or ip:port) used to check that records have propagated and for the provider's zone lookups."},
	"propagation_timeout": {Type: framework.TypeDurationSecond, Default: int(solvers.DefaultPropagationTimeout.Seconds()), Description: "How long to wait for a record to be visible at the resolvers."},
	"polling_interval":    {Type: framework.TypeString, Default: solvers.DefaultPollingInterval.String(), Description: "First interval between propagation checks (Go duration, e.g. 500ms); grows up to 5s."},
	"ttl":                 {Type: framework.TypeInt, Description: "TTL of challenge records in seconds, when the credentials do not set the provider's own *_TTL. 0: the provider's default."},
}

var dnsConfigReadFields = fieldsOf(dnsConfigFields, "provider", "credential_keys", "zones", "delegated_domains", "resolvers", "propagation_timeout", "polling_interval", "ttl")

func dnsConfigPaths(e Engine) []*framework.Path {
	h := &dnsConfigHandler{engine: e}
	return resource{
		engine: e, prefix: storage.DNSConfigPrefix, kind: "DNS configuration", singular: "dns-config", plural: "dns-configs",
		fields: fieldsOf(dnsConfigFields, "name", "provider", "credentials", "zones", "delegated_domains", "resolvers", "propagation_timeout",
			"polling_interval", "ttl"),
		readFields: dnsConfigReadFields,
		write:      h.write, read: readEntry(storage.LoadDNSConfig, dnsConfigResponse), del: h.delete,
		listSum: "List DNS-01 configurations.", createSum: "Create a DNS-01 configuration.",
		updateSum: "Update a DNS-01 configuration.", readSum: "Read a DNS-01 configuration (credential names only).",
		deleteSum: "Delete a DNS-01 configuration.",
		listSyn:   pathDNSConfigListHelpSyn, listDesc: pathDNSConfigListHelpDesc, syn: pathDNSConfigHelpSyn, desc: pathDNSConfigHelpDesc,
	}.paths()
}

type dnsConfigHandler struct {
	engine Engine
}

func dnsConfigResponse(c *storage.DNSConfigEntry) map[string]any {
	keys := slices.Sorted(maps.Keys(c.Credentials))
	if keys == nil {
		keys = []string{}
	}
	return map[string]any{
		"provider":            c.Provider,
		"credential_keys":     keys,
		"zones":               nonNil(c.Zones),
		"delegated_domains":   nonNil(c.DelegatedDomains),
		"resolvers":           nonNil(c.Resolvers),
		"propagation_timeout": int64(c.PropagationTimeout.Seconds()),
		"polling_interval":    c.PollingInterval.String(),
		"ttl":                 c.TTL,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// write creates or updates a DNS configuration after checking it in an isolated provider process
// (resource.lockedWrite holds the configuration's lock).
func (h *dnsConfigHandler) write(ctx context.Context, req *logical.Request, d *framework.FieldData, name string) (*logical.Response, error) {
	existing, err := storage.LoadDNSConfig(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	c := &storage.DNSConfigEntry{PropagationTimeout: solvers.DefaultPropagationTimeout, PollingInterval: solvers.DefaultPollingInterval}
	if existing != nil {
		c = existing
	}
	if err := applyDNSConfigFields(c, d, existing == nil); err != nil {
		return errorResponse(err)
	}
	if err := h.engine.CheckDNSConfig(ctx, c); err != nil {
		var ce *solvers.ConfigError
		if errors.As(err, &ce) {
			return logical.ErrorResponse("DNS configuration %q cannot work: %v", name, err), nil
		}
		return nil, fmt.Errorf("check DNS configuration %q: %w", name, err)
	}
	if err := storage.StoreDNSConfig(ctx, req.Storage, name, c); err != nil {
		return nil, err
	}
	h.engine.DNSConfigChanged(name)
	return &logical.Response{Data: dnsConfigResponse(c)}, nil
}

// applyDNSConfigFields copies the request's fields into c and validates them; an unusable field is
// an inputError.
func applyDNSConfigFields(c *storage.DNSConfigEntry, d *framework.FieldData, create bool) error {
	if p, ok := d.GetOk("provider"); ok {
		c.Provider = strings.ToLower(strings.TrimSpace(p.(string)))
	}
	if c.Provider == "" {
		return badInput("provider is required: give a lego DNS provider name such as rfc2136, cloudflare or route53")
	}
	if raw, ok := d.GetOk("credentials"); ok || create {
		creds := map[string]string{}
		if ok {
			creds = raw.(map[string]string)
		}
		for k, v := range creds {
			if strings.TrimSpace(v) == "" {
				// A secret given without its NAME= parses as a name with no value: never quote it.
				return badInput("credentials: an entry has no value: give NAME=value pairs such as RFC2136_TSIG_SECRET=... (the entry is not shown, as it may be a secret)")
			}
			if err := solvers.ValidateProviderCredentialKey(c.Provider, k); err != nil {
				return fieldError("credentials", err)
			}
		}
		c.Credentials = creds
	}
	if raw, ok := d.GetOk("zones"); ok {
		zones, err := parseZones("zones", raw.([]string))
		if err != nil {
			return err
		}
		c.Zones = zones
	}
	if raw, ok := d.GetOk("delegated_domains"); ok {
		dd, err := parseZones("delegated_domains", raw.([]string))
		if err != nil {
			return err
		}
		c.DelegatedDomains = dd
	}
	if len(c.DelegatedDomains) > 0 && len(c.Zones) == 0 {
		return badInput("delegated_domains needs zones: give the zones the delegated names' _acme-challenge CNAMEs point into")
	}
	if raw, ok := d.GetOk("resolvers"); ok {
		rs, err := solvers.ParseResolvers(raw.([]string))
		if err != nil {
			return fieldError("resolvers", err)
		}
		c.Resolvers = rs
	}
	if raw, ok := d.GetOk("propagation_timeout"); ok {
		t := time.Duration(raw.(int)) * time.Second
		if t <= 0 || t > solvers.MaxPropagationTimeout {
			return badInput("propagation_timeout must be between 1s and %s", solvers.MaxPropagationTimeout)
		}
		c.PropagationTimeout = t
	}
	if raw, ok := d.GetOk("polling_interval"); ok {
		t, err := time.ParseDuration(strings.TrimSpace(raw.(string)))
		if err != nil || t < solvers.MinPollingInterval || t > solvers.MaxPollingInterval {
			return badInput("polling_interval %q must be a duration between %s and %s, e.g. 500ms", raw, solvers.MinPollingInterval, solvers.MaxPollingInterval)
		}
		c.PollingInterval = t
	}
	if raw, ok := d.GetOk("ttl"); ok {
		ttl := raw.(int)
		if ttl < 0 || ttl > 86400 {
			return badInput("ttl must be between 0 and 86400 seconds")
		}
		c.TTL = ttl
	}
	return nil
}

// parseZones canonicalizes a list of zones or base domains given in field.
func parseZones(field string, in []string) ([]string, error) {
	var out []string
	for _, z := range in {
		if strings.TrimSpace(z) == "" {
			continue
		}
		cz, err := CanonicalDomain(z)
		if err == nil && strings.HasPrefix(cz, "*.") {
			err = errors.New("a zone cannot be a wildcard")
		}
		if err != nil {
			return nil, fieldError(field, err)
		}
		out = append(out, cz)
	}
	return out, nil
}

func (h *dnsConfigHandler) delete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return deleteUnlessUsed(ctx, req, h.engine, storage.DNSConfigPrefix, d.Get("name").(string), "DNS configuration",
		func(r *storage.RoleEntry, name string) bool { return r.DNS == name }, storage.DeleteDNSConfig, h.engine.DNSConfigChanged)
}

const (
	pathDNSConfigListHelpSyn  = "List the DNS-01 configurations."
	pathDNSConfigListHelpDesc = "Lists the names of the DNS-01 solver configurations."
	pathDNSConfigHelpSyn      = "Configure a DNS-01 solver: a lego DNS provider and its credentials."
	pathDNSConfigHelpDesc     = `A DNS-01 solver configuration. provider is any lego DNS provider by its lego name; credentials are
key=value pairs under lego's documented variable names for that provider. The provider runs in a child
process of the plugin that sees only these credentials (never Vault's environment), so tenants'
configurations cannot see each other's secrets and never fall back to the host's own credentials.
Names ending in _FILE are refused. The configuration is checked on write: an unknown provider or a
missing credential is reported at once.

Reads list credential_keys, never the values. resolvers are the DNS servers that must see the challenge
record before the CA is asked to validate (and that the provider uses for zone lookups); without them,
the zone's authoritative servers are asked. zones limit which names this configuration may serve.`
)
