package storage

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// RolePrefix is where roles live. Not seal-wrapped: roles hold no secrets.
const RolePrefix = "roles/"

// RoleEntry says what certificates issued under the role may be.
type RoleEntry struct {
	Account                   string   `json:"account"`
	DNS                       string   `json:"dns"`
	AllowedDomains            []string `json:"allowed_domains"`
	AllowBareDomains          bool     `json:"allow_bare_domains"`
	AllowSubdomains           bool     `json:"allow_subdomains"`
	AllowWildcardCertificates bool     `json:"allow_wildcard_certificates"`
	AllowedCertNames          []string `json:"allowed_cert_names"`
	KeyType                   string   `json:"key_type"`
	Profile                   string   `json:"profile,omitempty"`
	// AllowedKeyTypes and AllowedProfiles are what a certificate may ask for besides the role's own
	// KeyType and Profile; "*" allows any.
	AllowedKeyTypes []string `json:"allowed_key_types,omitempty"`
	AllowedProfiles []string `json:"allowed_profiles,omitempty"`
	// ForcedRenewalSeconds is the shortest time between a certificate's issuance and a forced
	// renewal or revocation (renew/<name>, revoke/<name>); nil: DefaultForcedRenewalInterval.
	ForcedRenewalSeconds *int64 `json:"forced_renewal_interval,omitempty"`
	// MaxCertificates bounds how many certificates may use the role; 0: no bound.
	MaxCertificates int `json:"max_certificates,omitempty"`
	// OrderLimit is the role's own share of its account's new orders ("N/period"; "" or "0":
	// only the account's budget applies).
	OrderLimit string `json:"order_limit,omitempty"`
	// AllowedChallenges are the ACME challenge types certificates of the role may be proven
	// with; the first is the default. Empty: dns-01 only (roles stored before HTTP-01 existed).
	AllowedChallenges []string `json:"allowed_challenges,omitempty"`
	// AllowedIPSANs are the CIDRs IP-address identifiers (RFC 8738) must lie in; empty: none.
	AllowedIPSANs []string `json:"allowed_ip_sans,omitempty"`
	// PreferredChain is the issuer Common Name of the chain to store when the CA offers
	// alternates; empty: the CA's default chain.
	PreferredChain string `json:"preferred_chain,omitempty"`
	// RevokeOnDelete revokes a certificate at its CA before its entry is deleted.
	RevokeOnDelete bool `json:"revoke_on_delete,omitempty"`
	// AllowImports lets certificates of the role be imported (certificate + private_key) instead
	// of ordered: the engine does not prove the names of an imported certificate, so it is for
	// migrations the operator runs or trusts.
	AllowImports bool `json:"allow_imports,omitempty"`
}

// ACME challenge types.
const (
	ChallengeDNS01  = "dns-01"
	ChallengeHTTP01 = "http-01"
)

// Challenges returns the challenge types the role allows, its default first.
func (r *RoleEntry) Challenges() []string {
	if len(r.AllowedChallenges) == 0 {
		return []string{ChallengeDNS01}
	}
	return r.AllowedChallenges
}

// AllowsChallenge reports whether certificates of the role may be proven with challenge type ch.
func (r *RoleEntry) AllowsChallenge(ch string) bool {
	return slices.Contains(r.Challenges(), ch)
}

// AllowsIdentifier reports whether the canonical identifier id (a DNS name, a wildcard or an IP
// address) may appear on a certificate of this role.
func (r *RoleEntry) AllowsIdentifier(id string) bool {
	if _, err := netip.ParseAddr(id); err == nil {
		return r.AllowsIP(id)
	}
	return r.AllowsDomain(id)
}

// AllowsIP reports whether the canonical IP address ip lies in one of the role's allowed_ip_sans.
func (r *RoleEntry) AllowsIP(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, c := range r.AllowedIPSANs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

// DefaultForcedRenewalInterval bounds how often a certificate can be renewed or revoked by hand,
// so that a tenant cannot spend the shared account's orders in a loop.
const DefaultForcedRenewalInterval = time.Hour

// ForcedRenewalInterval is the role's shortest time between issuance and a forced renewal.
func (r *RoleEntry) ForcedRenewalInterval() time.Duration {
	if r.ForcedRenewalSeconds == nil {
		return DefaultForcedRenewalInterval
	}
	return time.Duration(*r.ForcedRenewalSeconds) * time.Second
}

// AllowsKeyType reports whether a certificate of this role may use key type kt: the role's own,
// or one of allowed_key_types.
func (r *RoleEntry) AllowsKeyType(kt string) bool {
	return kt == r.KeyType || allowedBy(r.AllowedKeyTypes, kt)
}

// AllowsProfile reports whether a certificate of this role may ask for profile p ("" is the CA's
// default): the role's own, or one of allowed_profiles.
func (r *RoleEntry) AllowsProfile(p string) bool {
	return p == r.Profile || allowedBy(r.AllowedProfiles, p)
}

func allowedBy(list []string, v string) bool {
	for _, a := range list {
		if a == "*" || a == v {
			return true
		}
	}
	return false
}

// AllowsDomain reports whether the canonical name d may appear on a certificate of this role.
// A wildcard *.R is decided structurally, never by testing a made-up name under R (which could
// equal an allowed bare name): it needs both allow_wildcard_certificates and allow_subdomains (it
// stands for names under R), and R must be an allowed base or lie under one.
func (r *RoleEntry) AllowsDomain(d string) bool {
	rest, wildcard := strings.CutPrefix(d, "*.")
	if !wildcard {
		return r.allowsName(d)
	}
	if !r.AllowWildcardCertificates || !r.AllowSubdomains {
		return false
	}
	for _, base := range r.AllowedDomains {
		if rest == base || strings.HasSuffix(rest, "."+base) {
			return true
		}
	}
	return false
}

func (r *RoleEntry) allowsName(d string) bool {
	for _, base := range r.AllowedDomains {
		if d == base && r.AllowBareDomains {
			return true
		}
		if r.AllowSubdomains && strings.HasSuffix(d, "."+base) {
			return true
		}
	}
	return false
}

// AllowsCertName reports whether a certificate named name may use this role. Patterns are exact
// names, or end in "*" to match every name with that prefix (as in Vault policies).
func (r *RoleEntry) AllowsCertName(name string) bool {
	for _, p := range r.AllowedCertNames {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// LoadRole returns the role stored under name, or nil.
func LoadRole(ctx context.Context, s logical.Storage, name string) (*RoleEntry, error) {
	return load[RoleEntry](ctx, s, RolePrefix, name, "role")
}

// StoreRole writes the role entry.
func StoreRole(ctx context.Context, s logical.Storage, name string, r *RoleEntry) error {
	return store(ctx, s, RolePrefix, name, "role", r)
}

// DeleteRole deletes the role entry.
func DeleteRole(ctx context.Context, s logical.Storage, name string) error {
	return remove(ctx, s, RolePrefix, name, "role")
}

// RolesUsing returns the names of the roles for which match is true.
func RolesUsing(ctx context.Context, s logical.Storage, match func(*RoleEntry) bool) ([]string, error) {
	names, err := s.List(ctx, RolePrefix)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	var out []string
	for _, n := range names {
		r, err := LoadRole(ctx, s, n)
		if err != nil {
			return nil, err
		}
		if r != nil && match(r) {
			out = append(out, n)
		}
	}
	return out, nil
}
