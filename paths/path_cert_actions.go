package paths

import (
	"context"
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

var certActionFields = map[string]*framework.FieldSchema{
	"name":   {Type: framework.TypeString, Required: true, Description: "Name of the certificate."},
	"wait":   {Type: framework.TypeDurationSecond, Description: "How long to wait for the new certificate (default 30s, at most 60s)."},
	"reason": {Type: framework.TypeString, Default: "unspecified", Description: "Revocation reason: " + strings.Join(revocationReasonNames(), ", ") + "."},
}

func revocationReasonNames() []string {
	var names []string
	for n := range acme.RevocationReasons {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Prefixes of the actions on a certificate. They live beside certs/, not under certs/<name>/: with
// names that may contain "/", certs/team-a/revoke would also address a certificate named "team-a",
// outside a tenant's certs/team-a/*. A tenant's policy grants renew/team-a/* and revoke/team-a/*
// alongside certs/team-a/*.
const (
	renewPrefix  = "renew/"
	revokePrefix = "revoke/"
)

// certActionPaths are renew/<name> and revoke/<name>.
func certActionPaths(e Engine) []*framework.Path {
	h := &certActionHandler{engine: e}
	return []*framework.Path{
		{
			Pattern:      renewPrefix + framework.MatchAllRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "certificate"},
			Fields:       fieldsOf(certActionFields, "name", "wait"),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: h.renew, Summary: "Renew a certificate now.",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "renew"}, ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true,
					Responses: certWriteResponses},
			},
			HelpSynopsis:    pathCertRenewHelpSyn,
			HelpDescription: pathCertRenewHelpDesc,
		},
		{
			Pattern:      revokePrefix + framework.MatchAllRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "certificate"},
			Fields:       fieldsOf(certActionFields, "name", "reason"),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: h.revoke, Summary: "Revoke a certificate at its CA and issue a new one.",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "revoke"}, ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true,
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"revoked_serial_number": {Type: framework.TypeString, Description: "Serial number of the revoked certificate."},
						"status":                {Type: framework.TypeString, Description: "Status of the certificate entry (pending: a new one is being issued)."},
					}}}}},
			},
			HelpSynopsis:    pathCertRevokeHelpSyn,
			HelpDescription: pathCertRevokeHelpDesc,
		},
	}
}

type certActionHandler struct {
	engine Engine
}

func notFound(_ *logical.Request, name string) (*logical.Response, error) {
	return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("certificate %q does not exist: write certs/%s first", name, name))
}

// tooSoon returns a 429 when c was issued less than its role's forced_renewal_interval ago: a
// renewal or revocation by hand costs an order on the shared account.
func tooSoon(ctx context.Context, s logical.Storage, name string, c *storage.CertEntry, verb string) error {
	if c.Certificate == "" || c.IssuedAt.IsZero() {
		return nil
	}
	role, err := storage.LoadRole(ctx, s, c.Role)
	if err != nil || role == nil {
		return err
	}
	interval := role.ForcedRenewalInterval()
	if next := c.IssuedAt.Add(interval); time.Now().Before(next) {
		return logical.CodedError(http.StatusTooManyRequests, fmt.Sprintf(
			"certificate %q was issued at %s and role %q lets it be %s by hand once every %s (forced_renewal_interval): try again after %s",
			name, c.IssuedAt.UTC().Format(time.RFC3339), c.Role, verb, interval, next.UTC().Format(time.RFC3339)))
	}
	return nil
}

// forceRenewal marks c for renewal now and stores it. A certificate that has none issued yet (its
// issuance is failing) gets what a rewrite gets: one early retry per backoff step, its failure
// count kept, so renew/ in a loop cannot turn the backoff into a stream of attempts.
func forceRenewal(ctx context.Context, s logical.Storage, name string, c *storage.CertEntry, now time.Time) error {
	if c.Certificate == "" {
		if c.Status != storage.StatusFailed || !now.Before(c.NextAttemptAt) {
			return nil // pending or due anyway: the write's EnsureCertificate-like path below starts it
		}
		if c.EarlyRetryAttempt == c.Attempts {
			return logical.CodedError(http.StatusTooManyRequests, fmt.Sprintf(
				"certificate %q has no certificate yet and its last attempt, already an early retry, failed: the next attempt starts at %s",
				name, c.NextAttemptAt.UTC().Format(time.RFC3339)))
		}
		c.NextAttemptAt, c.EarlyRetryAttempt, c.UpdatedAt = time.Time{}, c.Attempts+1, now
		return storage.StoreCert(ctx, s, name, c)
	}
	c.ForceRenewal, c.Attempts, c.NextAttemptAt, c.UpdatedAt = true, 0, time.Time{}, now
	return storage.StoreCert(ctx, s, name, c)
}

func (h *certActionHandler) renew(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := ValidateCertName(name); err != nil {
		return errorResponse(fieldError("", err))
	}
	wait, err := waitField(d, defaultWriteWait)
	if err != nil {
		return errorResponse(err)
	}
	lock := h.engine.Locks().Cert(name)
	lock.Lock()
	c, err := storage.LoadCert(ctx, req.Storage, name)
	if err == nil && c != nil {
		if err = tooSoon(ctx, req.Storage, name, c, "renewed"); err == nil {
			err = forceRenewal(ctx, req.Storage, name, c, time.Now().UTC())
		}
	}
	lock.Unlock()
	if err != nil {
		return nil, err
	}
	if c == nil {
		return notFound(req, name)
	}
	h.engine.CertificateChanged(name)
	if c, err = h.engine.RenewCertificate(ctx, name, wait); err != nil || c == nil {
		return nil, err
	}
	resp := &logical.Response{Data: certWriteResponse(c, h.engine.CertificateWaiting(name))}
	if c.ForceRenewal || !c.Current() {
		resp.AddWarning(fmt.Sprintf("the renewal continues in the background: read certs/%s for the new certificate", name))
		return logical.RespondWithStatusCode(resp, req, http.StatusAccepted)
	}
	return resp, nil
}

func (h *certActionHandler) revoke(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := ValidateCertName(name); err != nil {
		return errorResponse(fieldError("", err))
	}
	reasonName := strings.TrimSpace(d.Get("reason").(string))
	reason, ok := acme.RevocationReasons[reasonName]
	if !ok {
		return logical.ErrorResponse("reason %q is not a revocation reason: use one of %s", reasonName, strings.Join(revocationReasonNames(), ", ")), nil
	}
	c, err := storage.LoadCert(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return notFound(req, name)
	}
	if c.Certificate == "" {
		return logical.ErrorResponse("certificate %q has no issued certificate to revoke", name), nil
	}
	if err := tooSoon(ctx, req.Storage, name, c, "revoked"); err != nil {
		return nil, err
	}
	if err := h.engine.RevokeCertificate(ctx, name, c, reason); err != nil {
		return caErrorResponse(fmt.Sprintf("revoke certificate %q", name), err)
	}

	// Forget the revoked certificate (if a renewal did not replace it meanwhile) and issue anew.
	lock := h.engine.Locks().Cert(name)
	lock.Lock()
	cur, err := storage.LoadCert(ctx, req.Storage, name)
	if err == nil && cur != nil && cur.SerialNumber == c.SerialNumber {
		cur.Certificate, cur.Chain, cur.PrivateKey, cur.IssuedGeneration = "", nil, "", 0
		cur.Status, cur.Attempts, cur.NextAttemptAt, cur.UpdatedAt = storage.StatusPending, 0, time.Time{}, time.Now().UTC()
		err = storage.StoreCert(ctx, req.Storage, name, cur)
	}
	lock.Unlock()
	if err != nil {
		return nil, err
	}
	h.engine.CertificateChanged(name)
	status := storage.StatusPending
	if cur != nil {
		status = cur.Status
	}
	return &logical.Response{Data: map[string]any{"revoked_serial_number": c.SerialNumber, "status": status}}, nil
}

// CertSummary is the renewal scheduler's view of one certificate.
type CertSummary struct {
	Role      string
	Status    string
	NotBefore time.Time
	NotAfter  time.Time
	RenewAt   time.Time
	Attempts  int
	LastError string
	NextAt    time.Time
	Waiting   string // why its job waits, if it does
}

// Expiring reports whether the certificate is expired at now, or past its planned renewal by more
// than a tenth of the time that was left then (status/certs lists it as expiring).
func (s CertSummary) Expiring(now time.Time) bool {
	return !s.NotAfter.IsZero() && (now.After(s.NotAfter) || !s.RenewAt.IsZero() && now.After(s.RenewAt.Add(s.NotAfter.Sub(s.RenewAt)/10)))
}

// Pending reports whether nothing is issued for the certificate's current specification.
func (s CertSummary) Pending() bool {
	return s.Status == storage.StatusPending || s.Status == storage.StatusFailed
}

// statusPaths is status/certs: the certificates that need attention.
func statusPaths(e Engine) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "status/certs$",
		Fields:       pageFieldSchemas("certificates needing attention"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "certificate-status"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
					after, limit, err := pageFields(d, defaultStatusLimit)
					if err != nil {
						return errorResponse(err)
					}
					return &logical.Response{Data: statusResponse(e.CertificateSummaries(), time.Now(), after, limit)}, nil
				},
				Summary:      "List certificates that are expiring, failing or pending.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"expiring":     {Type: framework.TypeStringSlice, Description: "Certificates past their planned renewal by more than a tenth of the remaining time, or expired."},
					"failing":      {Type: framework.TypeStringSlice, Description: "Certificates whose last attempt failed."},
					"pending":      {Type: framework.TypeStringSlice, Description: "Certificates with no certificate issued for their current specification."},
					"waiting":      {Type: framework.TypeStringSlice, Description: "Certificates whose job waits for a worker or for the order budget (see their waiting detail)."},
					"certificates": {Type: framework.TypeMap, Description: "Details of each listed certificate."},
					"counts":       {Type: framework.TypeMap, Description: "How many certificates the mount holds (total) and how many are expiring, failing, pending and waiting, over all pages."},
					"next_after":   {Type: framework.TypeString, Description: "When more certificates need attention than limit: give it as after to read the next page."},
				}}}},
			},
		},
		HelpSynopsis:    pathStatusHelpSyn,
		HelpDescription: pathStatusHelpDesc,
	}}
}

// defaultStatusLimit is how many certificates one page of status/certs details.
const defaultStatusLimit = 1000

// statusResponse lists the certificates that need attention, in name order, the page after after
// of at most limit names, with counts over all of them.
func statusResponse(sums map[string]CertSummary, now time.Time, after string, limit int) map[string]any {
	expiring, failing, pending, waiting := []string{}, []string{}, []string{}, []string{}
	details := map[string]any{}
	counts := map[string]any{"total": len(sums)}
	var listed []string
	for name, s := range sums {
		var kinds []string
		if s.Expiring(now) {
			kinds = append(kinds, "expiring")
		}
		if s.Attempts > 0 {
			kinds = append(kinds, "failing")
		}
		if s.Pending() {
			kinds = append(kinds, "pending")
		}
		if s.Waiting != "" {
			kinds = append(kinds, "waiting")
		}
		for _, k := range kinds {
			n, _ := counts[k].(int)
			counts[k] = n + 1
		}
		if len(kinds) > 0 {
			listed = append(listed, name)
		}
	}
	for _, k := range []string{"expiring", "failing", "pending", "waiting"} {
		if _, ok := counts[k]; !ok {
			counts[k] = 0
		}
	}
	slices.Sort(listed)
	page, next := pageOf(listed, after, limit)
	for _, name := range page {
		s := sums[name]
		if s.Expiring(now) {
			expiring = append(expiring, name)
		}
		if s.Attempts > 0 {
			failing = append(failing, name)
		}
		if s.Pending() {
			pending = append(pending, name)
		}
		if s.Waiting != "" {
			waiting = append(waiting, name)
		}
		d := map[string]any{"status": s.Status, "attempts": s.Attempts, "last_error": s.LastError}
		if s.Waiting != "" {
			d["waiting"] = s.Waiting
		}
		if !s.NotAfter.IsZero() {
			d["not_after"], d["renew_at"] = s.NotAfter.Format(time.RFC3339), s.RenewAt.Format(time.RFC3339)
		}
		if !s.NextAt.IsZero() {
			d["next_attempt_at"] = s.NextAt.Format(time.RFC3339)
		}
		details[name] = d
	}
	out := map[string]any{"expiring": expiring, "failing": failing, "pending": pending, "waiting": waiting, "certificates": details, "counts": counts}
	if next != "" {
		out["next_after"] = next
	}
	return out
}

// maxPageLimit bounds limit on paged reads and lists.
const maxPageLimit = 10000

// pageFieldSchemas are the after/limit fields of a paged read or list of what.
func pageFieldSchemas(what string) map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"after": {Type: framework.TypeString, Description: "Start after this name (the next_after of the previous page, or the last key listed)."},
		"limit": {Type: framework.TypeInt, Description: fmt.Sprintf("At most this many %s (1 to %d).", what, maxPageLimit)},
	}
}

// pageFields reads after and limit; limit defaults to def.
func pageFields(d *framework.FieldData, def int) (string, int, error) {
	after, _ := d.Get("after").(string)
	limit := def
	if v, ok := d.GetOk("limit"); ok {
		limit = v.(int)
		if limit < 1 || limit > maxPageLimit {
			return "", 0, badInput("limit must be between 1 and %d", maxPageLimit)
		}
	}
	return after, limit, nil
}

// pageOf returns the names of sorted after after, at most limit (0: all), and the last name
// returned when more follow.
func pageOf(sorted []string, after string, limit int) ([]string, string) {
	i := 0
	if after != "" {
		i, _ = slices.BinarySearch(sorted, after)
		if i < len(sorted) && sorted[i] == after {
			i++
		}
	}
	rest := sorted[i:]
	if limit > 0 && len(rest) > limit {
		return rest[:limit], rest[limit-1]
	}
	return rest, ""
}

const (
	pathCertRenewHelpSyn  = "Renew a certificate now."
	pathCertRenewHelpDesc = `renew/<name> orders a new certificate for certs/<name> now, whatever its planned renewal time, and waits up to
wait for it (202 while it continues in the background). A failure backoff in progress is cleared. The
current certificate is served until the new one is stored.`
	pathCertRevokeHelpSyn  = "Revoke a certificate at its CA and issue a new one."
	pathCertRevokeHelpDesc = `revoke/<name> revokes the current certificate of certs/<name> at the CA with the given reason (keyCompromise,
superseded, cessationOfOperation, affiliationChanged or unspecified), forgets it, and starts issuing a
new certificate with a new key. Reads fail with a retryable 503 until the new certificate is stored.`
	pathStatusHelpSyn  = "List certificates that need attention."
	pathStatusHelpDesc = `Lists the certificates that are expiring (renewal overdue or expired), failing (the last attempt
failed) or pending (nothing issued for the current specification), with their status, renewal time and
last error. Let's Encrypt no longer sends expiry e-mails: watch this instead.`
)
