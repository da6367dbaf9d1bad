package paths

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/budget"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// deleteUnlessUsed deletes the entry named name under prefix (with del) unless a role uses it
// (usedBy), and then tells the engine (changed). A used entry gets a 400 naming the roles. The
// entry's lock is held throughout, so a concurrent write cannot recreate it half-way.
func deleteUnlessUsed(ctx context.Context, req *logical.Request, e Engine, prefix, name, what string,
	usedBy func(r *storage.RoleEntry, name string) bool,
	del func(ctx context.Context, s logical.Storage, name string) error, changed func(name string),
) (*logical.Response, error) {
	lock := e.Locks().For(prefix, name)
	lock.Lock()
	defer lock.Unlock()
	users, err := storage.RolesUsing(ctx, req.Storage, func(r *storage.RoleEntry) bool { return usedBy(r, name) })
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		return logical.ErrorResponse("%s %q is used by role(s) %s: change or delete them first", what, name, strings.Join(users, ", ")), nil
	}
	if err := del(ctx, req.Storage, name); err != nil {
		return nil, err
	}
	changed(name)
	return nil, nil
}

var roleFields = map[string]*framework.FieldSchema{
	"name":                        {Type: framework.TypeString, Required: true, Description: "Name of the role."},
	"account":                     {Type: framework.TypeString, Description: "ACME account (accounts/<name>) that orders certificates of this role."},
	"dns":                         {Type: framework.TypeString, Description: "DNS-01 configuration (config/dns/<name>) that answers the challenges."},
	"allowed_domains":             {Type: framework.TypeCommaStringSlice, Description: "Base domains the role may issue for."},
	"allow_bare_domains":          {Type: framework.TypeBool, Description: "Allow the allowed_domains themselves (example.com)."},
	"allow_subdomains":            {Type: framework.TypeBool, Description: "Allow names under the allowed_domains, at any depth (www.example.com)."},
	"allow_wildcard_certificates": {Type: framework.TypeBool, Description: "Allow wildcard names *.X where X is an allowed domain or under one; needs allow_subdomains (a wildcard stands for names under X)."},
	"allowed_cert_names":          {Type: framework.TypeCommaStringSlice, Description: "Certificate names (certs/<name>) that may use the role: exact names, or prefixes ending in * such as team-a/*. Use * for any."},
	"profile":                     {Type: framework.TypeString, Description: "Default CA certificate profile of certificates (e.g. Let's Encrypt's shortlived). Empty: the CA's default."},
	"key_type":                    {Type: framework.TypeString, Default: string(acme.DefaultKeyType), AllowedValues: anySlice(acme.KeyTypes()), Description: "Default key type of certificates: " + strings.Join(acme.KeyTypes(), ", ") + "."},
	"allowed_key_types":           {Type: framework.TypeCommaStringSlice, Description: "Key types a certificate may ask for besides key_type; * for any. Default: only key_type."},
	"forced_renewal_interval":     {Type: framework.TypeDurationSecond, Default: int(storage.DefaultForcedRenewalInterval.Seconds()), Description: "Shortest time between a certificate's issuance and a renewal or revocation by hand (renew/<name>, revoke/<name>), so a tenant cannot spend the shared account's orders in a loop. 0: no limit. Default 1h."},
	"order_limit":                 {Type: framework.TypeString, Description: "The role's own limit on new orders, as N/period (e.g. 50/3h), on top of its account's order budget, so one tenant cannot spend a shared account's budget alone. Empty or 0: only the account's budget. ARI renewals are exempt."},
	"max_certificates":            {Type: framework.TypeInt, Description: "How many certificates may use the role at most (a tenant's quota); 0: no limit. Lowering it below the current count refuses only new certificates."},
	"allowed_challenges":          {Type: framework.TypeCommaStringSlice, Description: "ACME challenge types certificates may be proven with: dns-01 (through the role's dns configuration) and/or http-01 (answered by this mount's unauthenticated challenge/<token> path behind your reverse proxy). The first is the default. Default: dns-01."},
	"allowed_ip_sans":             {Type: framework.TypeCommaStringSlice, Description: "CIDRs (or single addresses) IP-address certificates (RFC 8738, proven with http-01) may name, e.g. 203.0.113.0/24. Default: none. Through an account without ca_bundle (a public CA such as Let's Encrypt) only publicly routable addresses are issued."},
	"preferred_chain":             {Type: framework.TypeString, Description: "Issuer Common Name of the chain to store when the CA offers alternate chains (e.g. ISRG Root X1). Empty: the CA's default chain."},
	"allow_imports":               {Type: framework.TypeBool, Description: "Allow importing existing certificates (certificate + private_key) under this role instead of ordering them, e.g. to migrate from certbot or lecertvend. The engine checks the names against the role but cannot prove them: grant it to migrations you trust. Default false."},
	"revoke_on_delete":            {Type: framework.TypeBool, Description: "Deleting a certificate of this role revokes it at the CA first (reason cessationOfOperation); if the CA cannot be reached the delete fails and nothing is deleted."},
	"allowed_profiles":            {Type: framework.TypeCommaStringSlice, Description: "CA profiles a certificate may ask for besides profile; * for any. Default: only profile (a tenant cannot pick e.g. shortlived, which multiplies orders)."},
}

var roleReadFields = fieldsOf(roleFields, "account", "dns", "allowed_domains", "allow_bare_domains", "allow_subdomains",
	"allow_wildcard_certificates", "allowed_cert_names", "key_type", "profile", "allowed_key_types", "allowed_profiles", "forced_renewal_interval", "max_certificates", "order_limit",
	"allowed_challenges", "allowed_ip_sans", "preferred_chain", "revoke_on_delete", "allow_imports")

func rolePaths(e Engine) []*framework.Path {
	h := &roleHandler{engine: e}
	return resource{
		engine: e, prefix: storage.RolePrefix, kind: "role", singular: "role", plural: "roles",
		fields: roleFields, readFields: roleReadFields,
		write: h.write, read: readEntry(storage.LoadRole, roleResponse), del: h.delete,
		listSum: "List roles.", createSum: "Create a role.", updateSum: "Update a role.", readSum: "Read a role.", deleteSum: "Delete a role.",
		listSyn: pathRolesListHelpSyn, listDesc: pathRolesListHelpDesc, syn: pathRolesHelpSyn, desc: pathRolesHelpDesc,
	}.paths()
}

type roleHandler struct {
	engine Engine
}

func roleResponse(r *storage.RoleEntry) map[string]any {
	return map[string]any{
		"account":                     r.Account,
		"dns":                         r.DNS,
		"allowed_domains":             nonNil(r.AllowedDomains),
		"allow_bare_domains":          r.AllowBareDomains,
		"allow_subdomains":            r.AllowSubdomains,
		"allow_wildcard_certificates": r.AllowWildcardCertificates,
		"allowed_cert_names":          nonNil(r.AllowedCertNames),
		"key_type":                    r.KeyType,
		"profile":                     r.Profile,
		"allowed_key_types":           nonNil(r.AllowedKeyTypes),
		"allowed_profiles":            nonNil(r.AllowedProfiles),
		"forced_renewal_interval":     int64(r.ForcedRenewalInterval().Seconds()),
		"max_certificates":            r.MaxCertificates,
		"order_limit":                 r.OrderLimit,
		"allowed_challenges":          r.Challenges(),
		"allowed_ip_sans":             nonNil(r.AllowedIPSANs),
		"preferred_chain":             r.PreferredChain,
		"revoke_on_delete":            r.RevokeOnDelete,
		"allow_imports":               r.AllowImports,
	}
}

// write creates or updates a role (resource.lockedWrite holds the role's lock).
func (h *roleHandler) write(ctx context.Context, req *logical.Request, d *framework.FieldData, name string) (*logical.Response, error) {
	r, err := storage.LoadRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = &storage.RoleEntry{KeyType: string(acme.DefaultKeyType)}
	}
	if err := applyRoleFields(r, d); err != nil {
		return errorResponse(err)
	}
	// Hold the referenced account and DNS configuration (shared) until the role is stored: their
	// delete takes the same locks exclusively and checks for roles using them, so it can neither
	// slip in between the check and the store nor delete them under a stored role.
	for _, l := range []*locksutil.LockEntry{
		h.engine.Locks().For(storage.AccountPrefix, r.Account), h.engine.Locks().For(storage.DNSConfigPrefix, r.DNS),
	} {
		l.RLock()
		defer l.RUnlock()
	}
	if err := checkRoleReferences(ctx, req.Storage, r); err != nil {
		return errorResponse(err)
	}
	if err := storage.StoreRole(ctx, req.Storage, name, r); err != nil {
		return nil, err
	}
	return &logical.Response{Data: roleResponse(r)}, nil
}

// maxRoleCertificates bounds max_certificates.
const maxRoleCertificates = 1_000_000

// maxForcedRenewalSeconds bounds forced_renewal_interval (30 days).
const maxForcedRenewalSeconds = 30 * 86400

// applyRoleFields copies the request's fields into r and validates them; an unusable field is an
// inputError.
func applyRoleFields(r *storage.RoleEntry, d *framework.FieldData) error {
	if v, ok := d.GetOk("account"); ok {
		r.Account = strings.TrimSpace(v.(string))
	}
	if v, ok := d.GetOk("dns"); ok {
		r.DNS = strings.TrimSpace(v.(string))
	}
	for field, dst := range map[string]*bool{"allow_bare_domains": &r.AllowBareDomains, "allow_subdomains": &r.AllowSubdomains,
		"allow_wildcard_certificates": &r.AllowWildcardCertificates} {
		if v, ok := d.GetOk(field); ok {
			*dst = v.(bool)
		}
	}
	if v, ok := d.GetOk("allowed_domains"); ok {
		zones, err := parseZones("allowed_domains", v.([]string))
		if err != nil {
			return err
		}
		r.AllowedDomains = zones
	}
	if v, ok := d.GetOk("allowed_cert_names"); ok {
		var pats []string
		for _, p := range v.([]string) {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if err := validateCertNamePattern(p); err != nil {
				return fieldError("allowed_cert_names", err)
			}
			pats = append(pats, p)
		}
		r.AllowedCertNames = pats
	}
	if v, ok := d.GetOk("key_type"); ok {
		kt, err := acme.ParseKeyType(v.(string))
		if err != nil {
			return fieldError("key_type", err)
		}
		r.KeyType = string(kt)
	}
	if v, ok := d.GetOk("profile"); ok {
		r.Profile = strings.TrimSpace(v.(string))
		if err := validateProfile(r.Profile); err != nil {
			return fieldError("", err)
		}
	}
	if v, ok := d.GetOk("allowed_key_types"); ok {
		var kts []string
		for _, k := range v.([]string) {
			switch k = strings.TrimSpace(k); k {
			case "":
				continue
			case "*":
			default:
				kt, err := acme.ParseKeyType(k)
				if err != nil {
					return fieldError("allowed_key_types", err)
				}
				k = string(kt)
			}
			if !slices.Contains(kts, k) {
				kts = append(kts, k)
			}
		}
		r.AllowedKeyTypes = kts
	}
	if v, ok := d.GetOk("forced_renewal_interval"); ok {
		secs := int64(v.(int))
		if secs < 0 || secs > maxForcedRenewalSeconds {
			return badInput("forced_renewal_interval must be between 0 and %d days", maxForcedRenewalSeconds/86400)
		}
		r.ForcedRenewalSeconds = &secs
	}
	if v, ok := d.GetOk("order_limit"); ok {
		raw := strings.TrimSpace(v.(string))
		if raw != "" {
			l, err := budget.ParseLimit(raw)
			if err != nil {
				return fieldError("order_limit", err)
			}
			raw = l.String()
		}
		r.OrderLimit = raw
	}
	if v, ok := d.GetOk("max_certificates"); ok {
		n := v.(int)
		if n < 0 || n > maxRoleCertificates {
			return badInput("max_certificates must be between 0 (no limit) and %d", maxRoleCertificates)
		}
		r.MaxCertificates = n
	}
	if v, ok := d.GetOk("allowed_profiles"); ok {
		var ps []string
		for _, p := range v.([]string) {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if p != "*" {
				if err := validateProfile(p); err != nil {
					return fieldError("allowed_profiles", err)
				}
			}
			if !slices.Contains(ps, p) {
				ps = append(ps, p)
			}
		}
		r.AllowedProfiles = ps
	}
	if v, ok := d.GetOk("allowed_challenges"); ok {
		var chs []string
		for _, c := range v.([]string) {
			switch c = strings.ToLower(strings.TrimSpace(c)); c {
			case "":
				continue
			case storage.ChallengeDNS01, storage.ChallengeHTTP01:
			default:
				return badInput("allowed_challenges: %q is not a challenge type this engine answers: use dns-01 and/or http-01", c)
			}
			if !slices.Contains(chs, c) {
				chs = append(chs, c)
			}
		}
		if len(chs) == 0 {
			return badInput("allowed_challenges is empty: give dns-01 and/or http-01")
		}
		r.AllowedChallenges = chs
	}
	if v, ok := d.GetOk("allowed_ip_sans"); ok {
		var cidrs []string
		for _, c := range v.([]string) {
			if c = strings.TrimSpace(c); c == "" {
				continue
			}
			p, err := parseIPRange(c)
			if err != nil {
				return fieldError("allowed_ip_sans", err)
			}
			if !slices.Contains(cidrs, p) {
				cidrs = append(cidrs, p)
			}
		}
		r.AllowedIPSANs = cidrs
	}
	if v, ok := d.GetOk("preferred_chain"); ok {
		pc := strings.TrimSpace(v.(string))
		if len(pc) > 64 || strings.ContainsFunc(pc, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
			return badInput("preferred_chain must be an issuer Common Name of at most 64 printable characters, e.g. ISRG Root X1")
		}
		r.PreferredChain = pc
	}
	if v, ok := d.GetOk("revoke_on_delete"); ok {
		r.RevokeOnDelete = v.(bool)
	}
	if v, ok := d.GetOk("allow_imports"); ok {
		r.AllowImports = v.(bool)
	}
	switch {
	case r.Account == "":
		return badInput("account is required: give the name of an ACME account (accounts/<name>)")
	case r.DNS == "" && r.AllowsChallenge(storage.ChallengeDNS01):
		return badInput("dns is required for dns-01: give the name of a DNS-01 configuration (config/dns/<name>), or allowed_challenges=http-01")
	case len(r.AllowedDomains) == 0 && len(r.AllowedIPSANs) == 0:
		return badInput("allowed_domains is required: give the base domains this role may issue for, e.g. allowed_domains=example.com (or allowed_ip_sans for IP-address certificates)")
	case len(r.AllowedIPSANs) > 0 && !r.AllowsChallenge(storage.ChallengeHTTP01):
		return badInput("allowed_ip_sans needs http-01 in allowed_challenges: IP addresses cannot be proven with dns-01")
	case len(r.AllowedDomains) > 0 && !r.AllowBareDomains && !r.AllowSubdomains:
		return badInput("the role allows no names: set allow_bare_domains=true (example.com itself) and/or allow_subdomains=true (names under it)")
	case len(r.AllowedCertNames) == 0:
		return badInput("allowed_cert_names is required: give the certificate names that may use this role, e.g. team-a/* (or * for any)")
	}
	return nil
}

// validateCertNamePattern accepts "*", an exact certificate name, or a prefix ending in "*". A
// prefix's complete segments must be valid certificate-name segments (no "", "." or ".."); its last,
// partial segment (before the "*") may be empty or the start of a valid segment.
func validateCertNamePattern(p string) error {
	if p == "*" {
		return nil
	}
	prefix, glob := strings.CutSuffix(p, "*")
	if strings.Contains(prefix, "*") {
		return fmt.Errorf("pattern %q may only have * at its end", p)
	}
	if !glob {
		if err := ValidateCertName(prefix); err != nil {
			return fmt.Errorf("pattern %q: %v", p, err)
		}
		return nil
	}
	dir, partial, hasDir := "", prefix, false
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir, partial, hasDir = prefix[:i], prefix[i+1:], true
	}
	if partial == "." || partial == ".." {
		return fmt.Errorf("pattern %q has a %q segment: name the folder, e.g. team-a/*", p, partial)
	}
	if hasDir {
		if err := ValidateCertName(dir); err != nil {
			return fmt.Errorf("pattern %q: %v", p, err)
		}
	}
	if partial != "" {
		// The partial segment's characters must be allowed in a name; "x" completes it.
		if err := ValidateCertName(partial + "x"); err != nil {
			return fmt.Errorf("pattern %q: %v", p, err)
		}
	}
	return nil
}

// checkRoleReferences checks that the role's account and DNS configuration exist and that the DNS
// configuration's zones cover the role's domains; a broken reference is an inputError.
func checkRoleReferences(ctx context.Context, s logical.Storage, r *storage.RoleEntry) error {
	acct, err := storage.LoadAccount(ctx, s, r.Account)
	if err != nil {
		return err
	}
	if acct == nil {
		return badInput("account %q does not exist: create accounts/%s first or name another account", r.Account, r.Account)
	}
	if r.DNS == "" {
		return nil // http-01 only (applyRoleFields checked)
	}
	dns, err := storage.LoadDNSConfig(ctx, s, r.DNS)
	if err != nil {
		return err
	}
	if dns == nil {
		return badInput("DNS configuration %q does not exist: create config/dns/%s first or name another one", r.DNS, r.DNS)
	}
	if !r.AllowsChallenge(storage.ChallengeDNS01) {
		return nil
	}
	for _, d := range r.AllowedDomains {
		if !dns.Covers(d) {
			return badInput("allowed domain %q is outside the zones and delegated_domains of DNS configuration %q (%s)", d, r.DNS, strings.Join(append(slices.Clone(dns.Zones), dns.DelegatedDomains...), ", "))
		}
	}
	return nil
}

// parseIPRange returns the canonical CIDR of a range of allowed_ip_sans; a single address is
// its own /32 or /128.
func parseIPRange(s string) (string, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Zone() != "" {
			return "", fmt.Errorf("%q has an IPv6 zone", s)
		}
		return p.Masked().String(), nil
	}
	a, err := CanonicalIP(s)
	if err != nil {
		return "", fmt.Errorf("%q is neither a CIDR (203.0.113.0/24) nor an IP address", s)
	}
	ip := netip.MustParseAddr(a)
	return netip.PrefixFrom(ip, ip.BitLen()).String(), nil
}

func (h *roleHandler) delete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	lock := h.engine.Locks().For(storage.RolePrefix, name)
	lock.Lock()
	defer lock.Unlock()
	return nil, storage.DeleteRole(ctx, req.Storage, name)
}

const (
	pathRolesListHelpSyn  = "List the roles."
	pathRolesListHelpDesc = "Lists the names of the roles."
	pathRolesHelpSyn      = "Manage a role: which account, DNS configuration, domains and certificate names a certificate may use."
	pathRolesHelpDesc     = `A role binds an ACME account and a DNS-01 configuration to the names certificates may carry and to
the certificate names (certs/<name>) that may use it. Every name on a certificate is checked against the
role before any order: allowed_domains are base domains; allow_bare_domains allows them as they are,
allow_subdomains allows names under them, allow_wildcard_certificates (with allow_subdomains) allows *.X
when X is an allowed domain or lies under one. allowed_cert_names (required) confines the role to certificate names such as team-a/*, so a
Vault policy on certs/team-a/* is all a tenant needs.`
)
