package storage

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// DNSConfigPrefix is where DNS-01 solver configurations live. Seal-wrapped: entries hold DNS
// provider credentials.
const DNSConfigPrefix = "config/dns/"

// DNSConfigEntry is a DNS-01 solver configuration as stored.
type DNSConfigEntry struct {
	Provider string `json:"provider"`
	// Credentials are passed to the provider's isolated process under these names. Never returned.
	Credentials map[string]string `json:"credentials,omitempty"`
	Zones       []string          `json:"zones,omitempty"`
	// DelegatedDomains are names (and the names under them) outside Zones whose
	// _acme-challenge records are CNAMEs into Zones (the acme-dns pattern): the record is written
	// at the CNAME's target, which must lie in Zones.
	DelegatedDomains   []string      `json:"delegated_domains,omitempty"`
	Resolvers          []string      `json:"resolvers,omitempty"`
	PropagationTimeout time.Duration `json:"propagation_timeout"`
	PollingInterval    time.Duration `json:"polling_interval"`
	TTL                int           `json:"ttl,omitempty"`
}

// Covers reports whether domain (canonical, possibly a wildcard) lies in one of the configuration's
// zones or delegated domains. A configuration without zones covers every name.
func (c *DNSConfigEntry) Covers(domain string) bool {
	if len(c.Zones) == 0 {
		return true
	}
	domain = strings.TrimPrefix(domain, "*.")
	return under(domain, c.Zones) || under(domain, c.DelegatedDomains)
}

// under reports whether domain is one of bases or lies under one.
func under(domain string, bases []string) bool {
	for _, z := range bases {
		if domain == z || strings.HasSuffix(domain, "."+z) {
			return true
		}
	}
	return false
}

// LoadDNSConfig returns the DNS configuration stored under name, or nil.
func LoadDNSConfig(ctx context.Context, s logical.Storage, name string) (*DNSConfigEntry, error) {
	return load[DNSConfigEntry](ctx, s, DNSConfigPrefix, name, "DNS configuration")
}

// StoreDNSConfig writes the DNS configuration entry.
func StoreDNSConfig(ctx context.Context, s logical.Storage, name string, c *DNSConfigEntry) error {
	return store(ctx, s, DNSConfigPrefix, name, "DNS configuration", c)
}

// DeleteDNSConfig deletes the DNS configuration entry.
func DeleteDNSConfig(ctx context.Context, s logical.Storage, name string) error {
	return remove(ctx, s, DNSConfigPrefix, name, "DNS configuration")
}
