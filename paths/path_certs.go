package paths

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// Bounds of how long a request waits for issuance. Vault cuts requests at 90 s.
const (
	defaultWriteWait = 30 * time.Second
	defaultReadWait  = 30 * time.Second
	maxWait          = 60 * time.Second
)

var certFields = map[string]*framework.FieldSchema{
	"name":    {Type: framework.TypeString, Required: true, Description: "Name of the certificate; may contain / (tenant prefixes such as team-a/www)."},
	"role":    {Type: framework.TypeString, Description: "Role the certificate is issued under."},
	"domains": {Type: framework.TypeCommaStringSlice, Description: "DNS names of the certificate; the first is the subject. Up to 100."},
	"key_type": {Type: framework.TypeString, AllowedValues: anySlice(acme.KeyTypes()),
		Description: "Certificate key type: " + strings.Join(acme.KeyTypes(), ", ") + ". Default: the role's."},
	"profile":    {Type: framework.TypeString, Description: "CA certificate profile to ask for (e.g. Let's Encrypt's shortlived or tlsserver). Default: the role's."},
	"ip_sans":    {Type: framework.TypeCommaStringSlice, Description: "IP addresses of the certificate (RFC 8738; proven with http-01; the role's allowed_ip_sans must hold them). May also be given among domains."},
	"challenge":  {Type: framework.TypeString, Description: "ACME challenge type that proves the names: dns-01 or http-01. Default: the role's first allowed challenge that can prove them (http-01 for IP addresses, dns-01 for wildcards)."},
	"csr":        {Type: framework.TypeString, Description: "A PEM certificate request defining the certificate: its names are checked against the role, it is sent as it is at every issuance and renewal, and no private key is made, stored or returned. Write it again (or another) to change the certificate; csr=\"\" returns to keys made by Vault."},
	"chain":      {Type: framework.TypeString, Description: "Import: the chain of the imported certificate (PEM), when certificate does not already hold it."},
	"key_source": {Type: framework.TypeString, Description: "Where the current certificate's key comes from: vault (made by the engine at each issuance), csr (the CSR's key, reused at every renewal) or imported (until the first renewal)."},
	"key_reused": {Type: framework.TypeBool, Description: "Whether renewals keep the same key (true for a certificate defined by a CSR)."},
	"wait":       {Type: framework.TypeDurationSecond, Description: "How long the request waits for issuance before answering 202 pending (default 30s, at most 60s; 0 answers at once)."},

	"certificate":      {Type: framework.TypeString, Description: "The certificate (PEM). On write: import this existing certificate (with private_key, and its chain after it or in chain), served at once and renewed when due, without an order."},
	"private_key":      {Type: framework.TypeString, Description: "The certificate's private key (PEM; absent for a certificate defined by a CSR). On write: the imported certificate's key.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"private_key_type": {Type: framework.TypeString, Description: "ec or rsa."},
	"issuing_ca":       {Type: framework.TypeString, Description: "The certificate's issuer (PEM)."},
	"ca_chain":         {Type: framework.TypeStringSlice, Description: "The issuer chain, issuer first (PEM each)."},
	"serial_number":    {Type: framework.TypeString, Description: "Serial number, colon-separated hex."},
	"expiration":       {Type: framework.TypeInt64, Description: "Expiry as unix seconds."},
	"not_before":       {Type: framework.TypeTime, Description: "Start of validity."},
	"not_after":        {Type: framework.TypeTime, Description: "End of validity."},
	"issued_at":        {Type: framework.TypeTime, Description: "When the current certificate was stored."},
	"status":           {Type: framework.TypeString, Description: "pending, valid or failed."},
	"last_error":       {Type: framework.TypeString, Description: "Why the last attempt failed, if it did: what failed, for which name, and a reference the operator finds in the plugin log."},
	"waiting":          {Type: framework.TypeString, Description: "Why issuance or renewal is waiting (queued for a worker, or for the account's order budget), if it is."},
	"next_attempt_at":  {Type: framework.TypeTime, Description: "After a failure, when the next attempt may start."},
	"renew_at":         {Type: framework.TypeTime, Description: "When the certificate is to be renewed (ARI window when the CA offers one)."},
	"attempts":         {Type: framework.TypeInt, Description: "Consecutive failed attempts."},
	"renewals":         {Type: framework.TypeInt, Description: "How many times the certificate was renewed."},
	"ttl":              {Type: framework.TypeInt64, Description: "Seconds until the reader should read again: the next planned renewal, at most 4 hours."},
	"rotation_period":  {Type: framework.TypeInt64, Description: "Seconds between renewals of this certificate (its planned renewal interval)."},
}

var certReadFields = fieldsOf(certFields, "certificate", "private_key", "private_key_type", "issuing_ca", "ca_chain",
	"serial_number", "expiration", "not_before", "not_after", "issued_at", "domains", "ip_sans", "role", "key_type", "profile", "challenge", "key_source", "key_reused", "csr",
	"status", "last_error", "waiting", "next_attempt_at", "renew_at", "attempts", "renewals", "ttl", "rotation_period")

var certWriteFields = fieldsOf(certFields, "role", "domains", "ip_sans", "key_type", "profile", "challenge", "key_source", "status", "last_error", "waiting", "serial_number", "expiration", "not_after")

func certPaths(e Engine) []*framework.Path {
	h := &certHandler{engine: e}
	return []*framework.Path{
		{
			Pattern:      storage.CertPrefix + "(?P<prefix>(.+/)?)$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "certificates"},
			Fields: func() map[string]*framework.FieldSchema {
				f := pageFieldSchemas("keys")
				f["prefix"] = &framework.FieldSchema{Type: framework.TypeString, Description: "Folder of certificate names to list, ending in /."}
				return f
			}(),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: h.list, Summary: "List certificates (one folder level at a time).",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"}, Responses: listResponses},
			},
			HelpSynopsis:    pathCertsListHelpSyn,
			HelpDescription: pathCertsListHelpDesc,
		},
		{
			// Names ending in "/" (folders) are taken by the list path above, declared first.
			Pattern:        storage.CertPrefix + framework.MatchAllRegex("name"),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "certificate"},
			Fields:         fieldsOf(certFields, "name", "role", "domains", "ip_sans", "key_type", "profile", "challenge", "csr", "certificate", "private_key", "chain", "wait"),
			ExistenceCheck: existence(storage.CertPrefix),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{Callback: h.write, Summary: "Declare a certificate and issue it.",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "write"}, ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true,
					Responses: certWriteResponses},
				logical.UpdateOperation: &framework.PathOperation{Callback: h.write, Summary: "Change a certificate; reissues when its names or key type change.",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "write"}, ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true,
					Responses: certWriteResponses},
				logical.ReadOperation: &framework.PathOperation{Callback: h.read, Summary: "Read the current certificate, its key and chain.",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
					Responses:    map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: certReadFields}}}},
				logical.DeleteOperation: &framework.PathOperation{Callback: h.delete, Summary: "Delete a certificate from Vault.",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "delete"}, ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true,
					Responses: noContent},
			},
			HelpSynopsis:    pathCertsHelpSyn,
			HelpDescription: pathCertsHelpDesc,
		},
	}
}

var certWriteResponses = map[int][]framework.Response{
	http.StatusOK:       {{Description: "Issued within the wait.", Fields: certWriteFields}},
	http.StatusAccepted: {{Description: "Issuance continues in the background; read the certificate later.", Fields: certWriteFields}},
}

type certHandler struct {
	engine Engine
}

// list lists one folder of certificate names; after and limit page through a large one (no limit:
// the whole folder).
func (h *certHandler) list(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	after, limit, err := pageFields(d, 0)
	if err != nil {
		return errorResponse(err)
	}
	keys, err := req.Storage.List(ctx, storage.CertPrefix+d.Get("prefix").(string))
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	page, _ := pageOf(keys, after, limit)
	return logical.ListResponse(page), nil
}

func (h *certHandler) write(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := ValidateCertName(name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	wait, err := waitField(d, defaultWriteWait)
	if err != nil {
		return errorResponse(err)
	}

	lock := h.engine.Locks().Cert(name)
	lock.Lock()
	existing, err := storage.LoadCert(ctx, req.Storage, name)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	spec, err := certSpec(ctx, req.Storage, name, d, existing)
	if err != nil {
		lock.Unlock()
		return errorResponse(err)
	}
	entry, changed := applyCertSpec(existing, spec, time.Now().UTC(), h.engine.PlanRenewal)
	if changed {
		if resp, err := h.storeCounted(ctx, req, name, existing, entry); resp != nil || err != nil {
			lock.Unlock()
			return resp, err
		}
	}
	lock.Unlock()

	if !entry.Current() {
		if entry, err = h.engine.EnsureCertificate(ctx, name, wait); err != nil {
			return nil, err
		}
		if entry == nil {
			return nil, fmt.Errorf("certificate %q was deleted while it was being issued", name)
		}
	}
	resp := &logical.Response{Data: certWriteResponse(entry, h.engine.CertificateWaiting(name))}
	if spec.Certificate != "" && len(entry.Chain) == 0 {
		resp.AddWarning("imported without its chain: ca_chain and issuing_ca stay empty until the first renewal; write it again with chain=@chain.pem (or certificate=@fullchain.pem)")
	}
	if !entry.Current() && entry.Status == storage.StatusFailed && entry.EarlyRetryAttempt == entry.Attempts && time.Now().Before(entry.NextAttemptAt) {
		resp.AddWarning(fmt.Sprintf("not retried now: this backoff step's early retry was used; the next attempt starts at %s",
			entry.NextAttemptAt.UTC().Format(time.RFC3339)))
	}
	if !entry.Current() {
		if entry.Status == storage.StatusPending {
			resp.AddWarning(fmt.Sprintf("issuance continues in the background: read certs/%s for the certificate", name))
		}
		return logical.RespondWithStatusCode(resp, req, http.StatusAccepted)
	}
	return resp, nil
}

// storeCounted stores entry and tells the engine, unless that would give its role more
// certificates than the role's max_certificates (a 400). A certificate joining a capped role is
// counted and stored under the role's lock, and the engine learns of it before the lock is
// released, so two writes cannot both take the last place. Lock order: the certificate's lock,
// then the role's.
func (h *certHandler) storeCounted(ctx context.Context, req *logical.Request, name string, existing, entry *storage.CertEntry) (*logical.Response, error) {
	if existing == nil || existing.Role != entry.Role {
		role, err := storage.LoadRole(ctx, req.Storage, entry.Role)
		if err != nil {
			return nil, err
		}
		if role != nil && role.MaxCertificates > 0 {
			rl := h.engine.Locks().For(storage.RolePrefix, entry.Role)
			rl.Lock()
			defer rl.Unlock()
			if n := h.engine.CountCertificates(entry.Role); n >= role.MaxCertificates {
				return logical.ErrorResponse("role %q allows at most %d certificates and has %d: delete one, or ask the operator to raise the role's max_certificates",
					entry.Role, role.MaxCertificates, n), nil
			}
		}
	}
	if err := storage.StoreCert(ctx, req.Storage, name, entry); err != nil {
		return nil, err
	}
	h.engine.CertificateChanged(name)
	return nil, nil
}

// waitField reads the "wait" field, bounded by maxWait.
func waitField(d *framework.FieldData, def time.Duration) (time.Duration, error) {
	raw, ok := d.GetOk("wait")
	if !ok {
		return def, nil
	}
	w := time.Duration(raw.(int)) * time.Second
	if w < 0 || w > maxWait {
		return 0, badInput("wait must be between 0s and %s", maxWait)
	}
	return w, nil
}

// certSpec validates the requested specification against the role; a caller's mistake is an
// inputError. Unset fields keep the existing entry's values. An import (certificate given) comes
// back with the certificate's fields set.
func certSpec(ctx context.Context, s logical.Storage, name string, d *framework.FieldData, existing *storage.CertEntry) (*storage.CertEntry, error) {
	spec := &storage.CertEntry{}
	if existing != nil {
		spec.Role, spec.Domains, spec.KeyType, spec.Profile = existing.Role, existing.Domains, existing.KeyType, existing.Profile
		spec.Challenge, spec.CSR = existing.Challenge, existing.CSR
	}
	roleGiven := false
	if v, ok := d.GetOk("role"); ok {
		spec.Role, roleGiven = strings.TrimSpace(v.(string)), true
	}
	if spec.Role == "" {
		return nil, badInput("role is required: give the role to issue under (roles/<name>)")
	}
	role, err := storage.LoadRole(ctx, s, spec.Role)
	if err != nil {
		return nil, err
	}
	if role == nil || !role.AllowsCertName(name) {
		// One answer for both, so that a tenant cannot learn which roles exist.
		return nil, badInput("role %q does not exist or may not be used for certificate %q (its allowed_cert_names do not match this name): name a role the operator set up for it", spec.Role, name)
	}
	roleChanged := existing == nil || roleGiven && spec.Role != existing.Role

	// The names: from an imported certificate, a CSR, or domains and ip_sans.
	certText, _ := d.Get("certificate").(string)
	csrText, csrGiven := d.GetOk("csr")
	var source []string // names the CSR or the certificate fixes
	sourceField := ""
	fixedKey := acme.KeyType("")
	switch {
	case strings.TrimSpace(certText) != "":
		if csrGiven && strings.TrimSpace(csrText.(string)) != "" {
			return nil, badInput("give either csr (a request to sign) or certificate (an existing certificate to import), not both")
		}
		if !role.AllowImports {
			return nil, badInput("role %q does not allow imports: write role and domains to have the certificate issued, or ask the operator for a role with allow_imports=true", spec.Role)
		}
		keyText, _ := d.Get("private_key").(string)
		chainText, _ := d.Get("chain").(string)
		imp, err := parseImport(certText, keyText, chainText, time.Now())
		if err != nil {
			return nil, err
		}
		cert := imp.entry
		spec.Certificate, spec.Chain, spec.PrivateKey, spec.SerialNumber = cert.Certificate, cert.Chain, cert.PrivateKey, cert.SerialNumber
		spec.NotBefore, spec.NotAfter, spec.KeySource = cert.NotBefore, cert.NotAfter, cert.KeySource
		spec.CSR, source, sourceField, fixedKey = "", imp.names, "certificate", imp.keyType
	case csrGiven && strings.TrimSpace(csrText.(string)) != "":
		csr, err := acme.ParseCSR(csrText.(string))
		if err != nil {
			return nil, fieldError("", err)
		}
		if err := canonicalCSRNames(csr); err != nil {
			return nil, err
		}
		// Stored as the request alone, re-encoded: nothing sent around it is kept.
		spec.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.DER}))
		source, sourceField, fixedKey = csr.Names, "csr", csr.KeyType
	case csrGiven:
		spec.CSR = "" // back to keys made by Vault
	default:
		if _, ok := d.GetOk("private_key"); ok {
			return nil, badInput("private_key is only taken with certificate (an import): give both, or neither")
		}
		if _, ok := d.GetOk("chain"); ok {
			return nil, badInput("chain is only taken with certificate (an import)")
		}
		if spec.CSR != "" {
			fixedKey = acme.KeyType(spec.KeyType)
		}
	}
	raw, namesGiven, err := requestedIdentifiers(d)
	if err != nil {
		return nil, err
	}
	switch {
	case source != nil:
		ids, err := CanonicalIdentifiers(source)
		if err != nil {
			return nil, badInput("%s: %v", sourceField, err)
		}
		if namesGiven {
			given, err := CanonicalIdentifiers(raw)
			if err != nil {
				return nil, fieldError("", err)
			}
			if !sameSet(given, ids) {
				return nil, badInput("domains and ip_sans must name exactly what the %s names (%d names), or be left out", sourceField, len(ids))
			}
		}
		spec.Domains = ids
	case namesGiven || existing == nil:
		ids, err := CanonicalIdentifiers(raw)
		if err != nil {
			return nil, fieldError("", err)
		}
		if spec.CSR != "" && !sameSet(ids, spec.Domains) {
			return nil, badInput("certificate %q is defined by its csr: write a new csr to change its names (or csr=\"\" to have Vault make the keys)", name)
		}
		spec.Domains = ids
	}
	if err := checkIdentifiers(ctx, s, spec.Role, role, spec.Domains); err != nil {
		return nil, err
	}

	if v, ok := d.GetOk("key_type"); ok && v.(string) != "" {
		kt, err := acme.ParseKeyType(v.(string))
		if err != nil {
			return nil, fieldError("key_type", err)
		}
		if fixedKey != "" && kt != fixedKey {
			return nil, badInput("key_type %s does not match the key of the %s (%s): leave key_type out", kt, orField(sourceField, "csr"), fixedKey)
		}
		spec.KeyType = string(kt)
	} else if roleChanged {
		spec.KeyType = role.KeyType
	}
	if fixedKey != "" {
		spec.KeyType = string(fixedKey)
	}
	if spec.KeyType == "" {
		spec.KeyType = string(acme.DefaultKeyType)
	}
	if v, ok := d.GetOk("profile"); ok {
		spec.Profile = strings.TrimSpace(v.(string))
	} else if existing == nil {
		spec.Profile = role.Profile
	}
	if err := validateProfile(spec.Profile); err != nil {
		return nil, fieldError("", err)
	}
	if err := pickChallenge(d, spec, role, roleChanged); err != nil {
		return nil, err
	}
	if !role.AllowsKeyType(spec.KeyType) {
		return nil, badInput("role %q does not allow key type %q: use %s, or ask the operator to add it to the role's allowed_key_types", spec.Role, spec.KeyType, role.KeyType)
	}
	if !role.AllowsProfile(spec.Profile) {
		return nil, badInput("role %q does not allow profile %q: use %s, or ask the operator to add it to the role's allowed_profiles", spec.Role, spec.Profile, profileName(role.Profile))
	}
	return spec, nil
}

// canonicalCSRNames refuses a CSR whose names a CA would refuse as written (the CSR is sent as it
// is, so each such name would cost an order): DNS names not in canonical form (upper case, a
// trailing dot, Unicode), an IP address written as a DNS name.
func canonicalCSRNames(csr *acme.CSR) error {
	for _, n := range csr.DNSNames {
		if looksLikeIP(n) {
			return badInput("csr: the DNS name %q is an IP address: put it in the request's IP address SANs", n)
		}
		c, err := CanonicalDomain(n)
		if err != nil {
			return badInput("csr: %v", err)
		}
		if c != n {
			return badInput("csr: the name %q is not in canonical form: write it as %q in the request", n, c)
		}
	}
	return nil
}

func orField(f, def string) string {
	if f == "" {
		return def
	}
	return f
}

// requestedIdentifiers returns the names the request gives in domains and ip_sans, and whether it
// gives either.
func requestedIdentifiers(d *framework.FieldData) ([]string, bool, error) {
	var raw []string
	given := false
	for _, f := range []string{"domains", "ip_sans"} {
		if v, ok := d.GetOk(f); ok {
			for _, n := range v.([]string) {
				if f == "ip_sans" && !looksLikeIP(n) {
					return nil, false, badInput("ip_sans: %q is not an IP address: give DNS names in domains", n)
				}
			}
			raw = append(raw, v.([]string)...)
			given = true
		}
	}
	return raw, given, nil
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// checkIdentifiers checks every identifier against the role; IP addresses also against what the
// role's CA issues for (a public CA only publicly routable addresses).
func checkIdentifiers(ctx context.Context, s logical.Storage, roleName string, role *storage.RoleEntry, ids []string) error {
	var acct *storage.AccountEntry
	for _, id := range ids {
		if !role.AllowsIdentifier(id) {
			if looksLikeIP(id) {
				return badInput("role %q does not allow the IP address %q: ask for addresses inside the role's allowed_ip_sans", roleName, id)
			}
			return badInput("role %q does not allow %q: ask for names the role allows", roleName, id)
		}
		if !looksLikeIP(id) || PublicIP(id) {
			continue
		}
		if acct == nil {
			a, err := storage.LoadAccount(ctx, s, role.Account)
			if err != nil {
				return err
			}
			if a == nil {
				return badInput("role %q's account no longer exists: ask the operator", roleName)
			}
			acct = a
		}
		if PublicCA(acct) {
			return badInput("%q is not a publicly routable address: a public CA (account without ca_bundle) does not certify private, loopback, link-local or reserved addresses", id)
		}
	}
	return nil
}

// PublicCA reports whether the account's CA is a public one (reached through the system's roots,
// as Let's Encrypt is), which certifies public IP addresses only. An account with its own
// ca_bundle uses a private CA (step-ca, Pebble), which may certify any address.
func PublicCA(a *storage.AccountEntry) bool { return strings.TrimSpace(a.CABundle) == "" }

// pickChallenge sets spec.Challenge: the one asked for, or (new certificates and role changes) the
// role's first allowed challenge that can prove spec's identifiers; and checks it can.
func pickChallenge(d *framework.FieldData, spec *storage.CertEntry, role *storage.RoleEntry, roleChanged bool) error {
	hasIP, hasWildcard := false, false
	for _, id := range spec.Domains {
		hasIP = hasIP || looksLikeIP(id)
		hasWildcard = hasWildcard || strings.HasPrefix(id, "*.")
	}
	if v, ok := d.GetOk("challenge"); ok && strings.TrimSpace(v.(string)) != "" {
		ch := strings.ToLower(strings.TrimSpace(v.(string)))
		if ch != storage.ChallengeDNS01 && ch != storage.ChallengeHTTP01 {
			return badInput("challenge %q is not one this engine answers: use dns-01 or http-01", v.(string))
		}
		spec.Challenge = ch
	} else if roleChanged || !role.AllowsChallenge(spec.ChallengeType()) {
		spec.Challenge = role.Challenges()[0]
		for _, ch := range role.Challenges() {
			if ch == storage.ChallengeHTTP01 && !hasWildcard || ch == storage.ChallengeDNS01 && !hasIP {
				spec.Challenge = ch
				break
			}
		}
	}
	switch ch := spec.ChallengeType(); {
	case !role.AllowsChallenge(ch):
		return badInput("role %q does not allow the %s challenge: use %s", spec.Role, ch, strings.Join(role.Challenges(), " or "))
	case hasIP && ch != storage.ChallengeHTTP01:
		return badInput("IP addresses can only be proven with http-01: set challenge=http-01 (the role must allow it)")
	case hasWildcard && ch != storage.ChallengeDNS01:
		return badInput("wildcard names can only be proven with dns-01: set challenge=dns-01 (the role must allow it)")
	}
	if spec.Challenge == storage.ChallengeDNS01 {
		spec.Challenge = "" // the default, as entries stored before there was a choice
	}
	return nil
}

// applyCertSpec merges spec into existing (or a new entry) and reports whether anything must be
// stored. A changed specification starts a new generation; writing a failed certificate again
// asks for an attempt now. An import (spec holds a certificate) is stored as issued, its renewal
// planned by plan.
func applyCertSpec(existing, spec *storage.CertEntry, now time.Time, plan func(*storage.CertEntry, time.Time)) (*storage.CertEntry, bool) {
	if spec.Certificate != "" {
		return applyImport(existing, spec, now, plan)
	}
	if existing == nil {
		spec.Generation, spec.Status, spec.CreatedAt, spec.UpdatedAt = 1, storage.StatusPending, now, now
		return spec, true
	}
	e := *existing
	sameCert := slices.Equal(e.Domains, spec.Domains) && e.KeyType == spec.KeyType && e.Profile == spec.Profile && e.CSR == spec.CSR
	if sameCert && e.Role == spec.Role && e.Challenge == spec.Challenge {
		// Writing a failed certificate again retries at once, but only once per backoff step:
		// rewriting in a loop must not turn the backoff into a stream of orders.
		if e.Status == storage.StatusFailed && !e.Current() && e.EarlyRetryAttempt != e.Attempts && now.Before(e.NextAttemptAt) {
			e.NextAttemptAt, e.EarlyRetryAttempt, e.UpdatedAt = time.Time{}, e.Attempts+1, now
			return &e, true
		}
		return &e, false
	}
	if sameCert {
		// Only the role or the challenge changes: the certificate already carries these names (the
		// new role allows them, certSpec checked), so nothing is reissued; renewals use the new
		// role's account and challenge. Switching roles is no way around forced_renewal_interval.
		e.Role, e.Challenge, e.UpdatedAt = spec.Role, spec.Challenge, now
		return &e, true
	}
	e.Role, e.Domains, e.KeyType, e.Profile, e.Challenge, e.CSR = spec.Role, spec.Domains, spec.KeyType, spec.Profile, spec.Challenge, spec.CSR
	e.Generation++
	e.Status, e.LastError, e.Attempts, e.NextAttemptAt, e.UpdatedAt = storage.StatusPending, "", 0, time.Time{}, now
	return &e, true
}

// applyImport stores an imported certificate as the entry's current one, at a new generation,
// without an order. Importing the same certificate and key again changes nothing (but the role or
// challenge, when those change).
func applyImport(existing, spec *storage.CertEntry, now time.Time, plan func(*storage.CertEntry, time.Time)) (*storage.CertEntry, bool) {
	if existing != nil && existing.Certificate == spec.Certificate && existing.PrivateKey == spec.PrivateKey && existing.Current() {
		e := *existing
		if e.Role == spec.Role && e.Challenge == spec.Challenge {
			return &e, false
		}
		e.Role, e.Challenge, e.UpdatedAt = spec.Role, spec.Challenge, now
		return &e, true
	}
	e := storage.CertEntry{Generation: 1, CreatedAt: now}
	if existing != nil {
		e.Generation, e.CreatedAt, e.Renewals = existing.Generation+1, existing.CreatedAt, existing.Renewals
	}
	e.Role, e.Domains, e.KeyType, e.Profile, e.Challenge = spec.Role, spec.Domains, spec.KeyType, spec.Profile, spec.Challenge
	e.Certificate, e.Chain, e.PrivateKey, e.SerialNumber = spec.Certificate, spec.Chain, spec.PrivateKey, spec.SerialNumber
	e.NotBefore, e.NotAfter, e.KeySource = spec.NotBefore, spec.NotAfter, storage.KeySourceImported
	e.IssuedAt, e.IssuedGeneration, e.Status, e.UpdatedAt = now, e.Generation, storage.StatusValid, now
	plan(&e, now)
	return &e, true
}

func certWriteResponse(c *storage.CertEntry, waiting string) map[string]any {
	dns, ips := splitIdentifiers(c.Domains)
	data := map[string]any{
		"waiting":    waiting,
		"role":       c.Role,
		"domains":    dns,
		"ip_sans":    ips,
		"key_type":   c.KeyType,
		"profile":    c.Profile,
		"challenge":  c.ChallengeType(),
		"key_source": keySource(c),
		"status":     c.Status,
		"last_error": c.LastError,
	}
	if c.Certificate != "" {
		data["serial_number"] = c.SerialNumber
		data["expiration"] = c.NotAfter.Unix()
		data["not_after"] = c.NotAfter
	}
	return data
}

func (h *certHandler) read(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := ValidateCertName(name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	// Shared (decoded once per cached entry; the hot path of every template): only read below.
	c, err := storage.LoadCertShared(ctx, req.Storage, name)
	if err != nil || c == nil {
		return nil, err
	}
	if !c.Current() {
		if !h.engine.WriteSafe() {
			// A performance standby cannot issue: let Vault forward the request to the active node.
			if c.Certificate == "" {
				return nil, logical.ErrReadOnly
			}
		} else {
			wait := time.Duration(0)
			if c.Certificate == "" {
				wait = defaultReadWait
			}
			if c, err = h.engine.EnsureCertificate(ctx, name, wait); err != nil || c == nil {
				return nil, err
			}
		}
	}
	if c.Certificate == "" {
		return nil, notIssuedError(name, c, h.engine.CertificateWaiting(name))
	}
	data := certReadResponse(c)
	data["waiting"] = h.engine.CertificateWaiting(name)
	return &logical.Response{Data: data}, nil
}

// notIssuedError is the retryable error of a read that finds no certificate yet.
func notIssuedError(name string, c *storage.CertEntry, waiting string) error {
	if waiting != "" {
		return logical.CodedError(http.StatusServiceUnavailable,
			fmt.Sprintf("certificate %q is not issued yet (status %s): %s; retry later", name, c.Status, waiting))
	}
	if c.Status == storage.StatusFailed {
		msg := fmt.Sprintf("certificate %q is not issued: the last attempt failed: %s", name, c.LastError)
		if !c.NextAttemptAt.IsZero() {
			msg += fmt.Sprintf("; the next attempt starts at %s, or write certs/%s again to retry now", c.NextAttemptAt.Format(time.RFC3339), name)
		}
		return logical.CodedError(http.StatusServiceUnavailable, msg)
	}
	return logical.CodedError(http.StatusServiceUnavailable,
		fmt.Sprintf("certificate %q is not issued yet (status %s): issuance is in progress, retry in a few seconds", name, c.Status))
}

func certReadResponse(c *storage.CertEntry) map[string]any {
	issuing := ""
	if len(c.Chain) > 0 {
		issuing = c.Chain[0]
	}
	chain := c.Chain
	if chain == nil {
		chain = []string{}
	}
	kt, _ := acme.ParseKeyType(c.KeyType)
	ids, keyType := c.Domains, c.KeyType
	if !c.Current() {
		// A new specification (names, key type) is being issued while this certificate is served:
		// describe the certificate and key served, not the ones requested, so that a template
		// choosing on private_key_type or domains gets what certificate and private_key hold.
		if leaf, err := c.Leaf(); err == nil {
			ids = certIdentifiers(leaf)
			if t, err := acme.PublicKeyType(leaf.PublicKey); err == nil {
				kt, keyType = t, string(t)
			}
		}
	}
	dns, ips := splitIdentifiers(ids)
	data := map[string]any{
		"certificate":      c.Certificate,
		"private_key_type": kt.Family(),
		"ip_sans":          ips,
		"challenge":        c.ChallengeType(),
		"key_source":       keySource(c),
		"key_reused":       c.CSR != "",
		"issuing_ca":       issuing,
		"ca_chain":         chain,
		"serial_number":    c.SerialNumber,
		"expiration":       c.NotAfter.Unix(),
		"not_before":       c.NotBefore,
		"not_after":        c.NotAfter,
		"issued_at":        c.IssuedAt,
		"domains":          dns,
		"role":             c.Role,
		"key_type":         keyType,
		"profile":          c.Profile,
		"status":           c.Status,
		"last_error":       c.LastError,
		"attempts":         c.Attempts,
		"renewals":         c.Renewals,
		"renew_at":         c.RenewAt,
	}
	if c.PrivateKey != "" {
		data["private_key"] = c.PrivateKey
	}
	if c.CSR != "" {
		data["csr"] = c.CSR
	}
	if !c.NextAttemptAt.IsZero() {
		data["next_attempt_at"] = c.NextAttemptAt
	}
	data["ttl"], data["rotation_period"] = readTTL(c, time.Now())
	return data
}

// splitIdentifiers separates a certificate's DNS names from its IP addresses, for reads.
func splitIdentifiers(ids []string) (dns, ips []string) {
	dns, ips = []string{}, []string{}
	for _, id := range ids {
		if looksLikeIP(id) {
			ips = append(ips, id)
		} else {
			dns = append(dns, id)
		}
	}
	return dns, ips
}

// keySource names where the current certificate's key came from (vault for entries stored before
// the field existed).
func keySource(c *storage.CertEntry) string {
	switch {
	case c.KeySource != "":
		return c.KeySource
	case c.CSR != "":
		return storage.KeySourceCSR
	}
	return storage.KeySourceVault
}

// maxReadTTL caps the ttl a read reports, so readers come back at least this often.
const maxReadTTL = 4 * time.Hour

// minReadTTL is the ttl while a renewal is due or under way: readers poll until the new
// certificate is stored. consul-template and Vault Agent come back after ttl + 1 s, so a renewal
// reaches their files about 4 s after it is stored at worst.
const minReadTTL = 3 * time.Second

// readTTL returns the seconds until the reader should read again (the next planned renewal, the
// next attempt after a failure, or just after the next ARI check, which may move the renewal
// earlier) and the certificate's renewal interval. consul-template and
// Vault Agent re-read a secret carrying rotation_period after ttl seconds, so they pick up a
// renewal right after it happens instead of at 90% of the old certificate's life.
func readTTL(c *storage.CertEntry, now time.Time) (ttl, rotation int64) {
	next := c.RenewAt
	if c.Attempts > 0 && c.NextAttemptAt.After(next) {
		next = c.NextAttemptAt
	}
	if !c.ARICheckAt.IsZero() && c.ARICheckAt.Before(next) {
		// The CA's renewal window may move the renewal earlier: come back right after the check.
		next = c.ARICheckAt.Add(time.Second)
	}
	d := next.Sub(now)
	if c.ForceRenewal || d < minReadTTL {
		d = minReadTTL
	}
	d = min(d, maxReadTTL)
	rot := c.RenewAt.Sub(c.NotBefore)
	if rot <= 0 {
		rot = c.NotAfter.Sub(c.NotBefore)
	}
	return int64(d.Seconds()), int64(rot.Seconds())
}

// validateProfile checks a CA profile name's form; the CA decides whether it knows it.
// profileName names a profile in a message ("" is the CA's default).
func profileName(p string) string {
	if p == "" {
		return "the CA's default profile (no profile)"
	}
	return fmt.Sprintf("profile %q", p)
}

func validateProfile(p string) error {
	if len(p) > 64 {
		return fmt.Errorf("profile is longer than 64 characters")
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("profile %q has the character %q: use letters, digits, '-', '_' and '.'", p, string(c))
		}
	}
	return nil
}

func (h *certHandler) delete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := ValidateCertName(name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	lock := h.engine.Locks().Cert(name)
	lock.Lock()
	warning, resp, err := h.revokeOnDelete(ctx, req, name)
	if resp != nil || err != nil {
		lock.Unlock()
		return resp, err
	}
	err = storage.DeleteCert(ctx, req.Storage, name)
	lock.Unlock()
	if err != nil {
		return nil, err
	}
	h.engine.CertificateChanged(name)
	if warning != "" {
		resp := &logical.Response{}
		resp.AddWarning(warning)
		return resp, nil
	}
	return nil, nil
}

// revokeOnDelete revokes the certificate at its CA before it is deleted, when its role says so
// (revoke_on_delete) and it has an unexpired certificate. A failure is answered (502) and nothing
// is deleted, so the delete can be retried. Callers hold the certificate's lock.
//
// Only a CA that could not be asked blocks the delete (unreachable, rate limited, timed out): when
// the CA answered that it will not revoke the certificate (it did not issue it — an import from
// elsewhere —, it is revoked already, the account may not), the entry is deleted with a warning
// saying so, so that no entry becomes undeletable.
func (h *certHandler) revokeOnDelete(ctx context.Context, req *logical.Request, name string) (string, *logical.Response, error) {
	c, err := storage.LoadCert(ctx, req.Storage, name)
	if err != nil || c == nil || c.Certificate == "" || !time.Now().Before(c.NotAfter) {
		return "", nil, err
	}
	role, err := storage.LoadRole(ctx, req.Storage, c.Role)
	if err != nil || role == nil || !role.RevokeOnDelete {
		return "", nil, err
	}
	err = h.engine.RevokeCertificate(ctx, name, c, acme.RevocationReasons["cessationOfOperation"])
	switch {
	case err == nil:
		return "", nil, nil
	case errors.Is(err, acme.ErrUnreachable), errors.Is(err, acme.ErrRateLimited), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		resp, err := caErrorResponse(fmt.Sprintf("certificate %q was not deleted: its role revokes certificates on delete, and the CA could not be asked (retry the delete)", name), err)
		return "", resp, err
	}
	return fmt.Sprintf("certificate %q was deleted without being revoked: the CA refused the revocation (%s)", name, revokeRefusal(err)), nil, nil
}

// revokeRefusal names why a CA refused a revocation, in words safe for a tenant: the CA's problem
// type, or that the engine could not act for the certificate.
func revokeRefusal(err error) string {
	var ae *acme.Error
	if errors.As(err, &ae) && ae.ProblemType != "" {
		return "problem " + ae.ProblemType
	}
	return "the certificate's role, account or CA could not revoke it"
}

const (
	pathCertsListHelpSyn  = "List certificates."
	pathCertsListHelpDesc = "Lists certificate names one folder at a time: certs/ lists team-a/, certs/team-a/ lists the names under it."
	pathCertsHelpSyn      = "Declare, read and delete a certificate issued through ACME."
	pathCertsHelpDesc     = `A named certificate. Writing role and domains validates every name against the role, stores the
certificate's specification and starts issuance in the background (ACME order, DNS-01 through the role's
DNS configuration). The write waits up to wait (default 30s) and answers 200 with the certificate's
status when it was issued, or 202 pending while the work continues. Writing the same thing again orders
nothing. Reading returns certificate, private_key, issuing_ca and ca_chain shaped like Vault PKI's output,
plus serial_number, expiration, not_before, not_after and status. A read of a certificate with none
issued yet starts issuance when none is in flight and waits a bounded time; it never returns an empty
certificate but fails with a retryable 503 instead.`
)

// certPattern is the pattern of certs/<name>.
var certPattern = storage.CertPrefix + framework.MatchAllRegex("name")

// ReadCertDirect answers a plain read of certs/<name> (no parameters) with the path's own read
// handler, without the framework's request handling around it. That handling adds nothing to
// such a read — the name is the whole rest of the path, ValidateCertName checks it, and the read
// is not marked for forwarding — but it asks Vault for the replication state on every request: a
// second gRPC round trip, which at thousands of template reads a second costs a third of the
// throughput. route is the path the framework routes req to; handled is false when req is
// anything else, for the framework to handle.
func ReadCertDirect(ctx context.Context, route *framework.Path, req *logical.Request) (resp *logical.Response, handled bool, err error) {
	// The framework anchors patterns in place (^…$) when it first routes.
	if route == nil || strings.TrimSuffix(strings.TrimPrefix(route.Pattern, "^"), "$") != certPattern ||
		req.Operation != logical.ReadOperation || len(req.Data) != 0 {
		return nil, false, nil
	}
	op, found := route.Operations[logical.ReadOperation]
	if !found {
		return nil, false, nil
	}
	fd := &framework.FieldData{Raw: map[string]any{"name": strings.TrimPrefix(req.Path, storage.CertPrefix)}, Schema: route.Fields}
	resp, err = op.Handler()(ctx, req, fd)
	return resp, true, err
}
