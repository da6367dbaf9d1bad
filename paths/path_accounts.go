package paths

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/budget"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

var accountFields = map[string]*framework.FieldSchema{
	"name": {Type: framework.TypeString, Required: true, Description: "Name of the account."},
	"directory_url": {Type: framework.TypeString, Description: "ACME directory URL of the CA (https), or the alias letsencrypt or letsencrypt-staging.",
		DisplayAttrs: &framework.DisplayAttributes{Name: "Directory URL"}},
	"contact":                 {Type: framework.TypeCommaStringSlice, Description: "E-mail addresses the CA may write to about this account."},
	"key_type":                {Type: framework.TypeString, Default: string(acme.DefaultKeyType), AllowedValues: anySlice(acme.KeyTypes()), Description: "Account key type: " + strings.Join(acme.KeyTypes(), ", ") + ". Ignored when private_key is given."},
	"terms_of_service_agreed": {Type: framework.TypeBool, Description: "Must be true: you agree to the CA's terms of service."},
	"eab_kid":                 {Type: framework.TypeString, Description: "External account binding key identifier, when the CA requires one (ZeroSSL, Google Trust Services)."},
	"eab_hmac_key": {Type: framework.TypeString, Description: "External account binding HMAC key (base64url). Write-only; never stored or returned.",
		DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"ca_bundle": {Type: framework.TypeString, Description: "PEM roots that sign the CA's HTTPS certificate, for a private ACME CA (Pebble, step-ca). Empty: the system roots."},
	"private_key": {Type: framework.TypeString, Description: "Existing account key to import: PEM (PKCS #8, SEC 1, PKCS #1) or a private JSON Web Key such as certbot's private_key.json. Write-only; never returned.",
		DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"order_limit":                {Type: framework.TypeString, Description: "Order budget: new orders per account, as N/period (300/3h). 0: unlimited. Default: the CA's published limit (Let's Encrypt's for its directories), else unlimited."},
	"domain_limit":               {Type: framework.TypeString, Description: "Order budget: new certificates per registered domain, renewals exempt (Let's Encrypt: 50/168h). Same format and default as order_limit."},
	"duplicate_limit":            {Type: framework.TypeString, Description: "Order budget: certificates for the exact same names (Let's Encrypt: 5/168h). Same format and default as order_limit."},
	"failed_authorization_limit": {Type: framework.TypeString, Description: "Order budget: failed validations per name before the engine waits (Let's Encrypt: 5/1h). Same format and default as order_limit."},
	"account_url":                {Type: framework.TypeString, Description: "The account's URL at the CA. Writable on create together with private_key, to import an existing account (certbot: the \"uri\" of regr.json): the CA must confirm that the key owns it, and nothing is registered."},
	"status":                     {Type: framework.TypeString, Description: "The account's status at the CA when last seen."},
	"created_at":                 {Type: framework.TypeTime, Description: "When the account was registered."},
}

var accountReadFields = fieldsOf(accountFields, "directory_url", "contact", "key_type", "terms_of_service_agreed",
	"eab_kid", "ca_bundle", "account_url", "status", "created_at", "order_limit", "domain_limit", "duplicate_limit", "failed_authorization_limit")

// limitFields are the account's order budget fields, in the order of budget.Limits.
var limitFields = []string{"order_limit", "domain_limit", "duplicate_limit", "failed_authorization_limit"}

// limitSlots returns pointers to a's stored limit strings, in the order of limitFields.
func limitSlots(a *storage.AccountEntry) []*string {
	return []*string{&a.OrderLimit, &a.DomainLimit, &a.DuplicateLimit, &a.FailedAuthzLimit}
}

// applyLimitFields copies and validates the limit fields the request gives.
func applyLimitFields(a *storage.AccountEntry, d *framework.FieldData) error {
	for i, slot := range limitSlots(a) {
		v, ok := d.GetOk(limitFields[i])
		if !ok {
			continue
		}
		raw := strings.TrimSpace(v.(string))
		if raw != "" {
			l, err := budget.ParseLimit(raw)
			if err != nil {
				return fieldError(limitFields[i], err)
			}
			raw = l.String()
		}
		*slot = raw
	}
	return nil
}

// AccountLimits returns the order budget of account a: each limit as set, or the CA's published
// limit where none is set (Let's Encrypt's for its production and staging directories, whose own
// limits are higher; none for other CAs).
func AccountLimits(a *storage.AccountEntry) budget.Limits {
	var def budget.Limits
	if a.DirectoryURL == acme.LetsEncryptURL || a.DirectoryURL == acme.LetsEncryptStagingURL {
		def = budget.LetsEncrypt()
	}
	out := def
	dst := []*budget.Limit{&out.OrdersPerAccount, &out.CertsPerDomain, &out.DuplicateCerts, &out.FailedAuthzPerIdent}
	for i, slot := range limitSlots(a) {
		if *slot == "" {
			continue
		}
		if l, err := budget.ParseLimit(*slot); err == nil {
			*dst[i] = l
		}
	}
	return out
}

func accountPaths(e Engine) []*framework.Path {
	h := &accountHandler{engine: e}
	paths := resource{
		engine: e, prefix: storage.AccountPrefix, kind: "account", singular: "account", plural: "accounts",
		fields: fieldsOf(accountFields, "name", "directory_url", "contact", "key_type", "terms_of_service_agreed",
			"eab_kid", "eab_hmac_key", "ca_bundle", "private_key", "account_url", "order_limit", "domain_limit", "duplicate_limit", "failed_authorization_limit"),
		readFields: accountReadFields,
		write:      h.write, read: readEntry(storage.LoadAccount, accountResponse), del: h.delete,
		listSum: "List ACME accounts.", createSum: "Register an ACME account at its CA.",
		updateSum: "Update an ACME account's contact, CA bundle or order budget.", readSum: "Read an ACME account (never its key).",
		deleteSum: "Delete an ACME account from Vault.",
		listSyn:   pathAccountsListHelpSyn, listDesc: pathAccountsListHelpDesc, syn: pathAccountsHelpSyn, desc: pathAccountsHelpDesc,
	}.paths()
	return append(paths, accountActionPaths(h)...)
}

// accountActionPaths are accounts/<name>/rollover and accounts/<name>/deactivate. Account names
// hold no "/" (framework.GenericNameRegex), so these never collide with accounts/<name>.
func accountActionPaths(h *accountHandler) []*framework.Path {
	ok := map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: accountReadFields}}}
	action := func(cb framework.OperationFunc, summary, verb string) map[logical.Operation]framework.OperationHandler {
		return map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: cb, Summary: summary,
				DisplayAttrs:              &framework.DisplayAttributes{OperationVerb: verb},
				ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true, Responses: ok},
		}
	}
	return []*framework.Path{
		{
			Pattern:         storage.AccountPrefix + framework.GenericNameRegex("name") + "/rollover",
			DisplayAttrs:    &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "account-key"},
			Fields:          accountRolloverFields,
			Operations:      action(h.rollover, "Replace the account's key at its CA (RFC 8555 key change).", "rollover"),
			HelpSynopsis:    pathAccountRolloverHelpSyn,
			HelpDescription: pathAccountRolloverHelpDesc,
		},
		{
			Pattern:         storage.AccountPrefix + framework.GenericNameRegex("name") + "/deactivate",
			DisplayAttrs:    &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "account"},
			Fields:          fieldsOf(accountFields, "name"),
			Operations:      action(h.deactivate, "Deactivate the account at its CA.", "deactivate"),
			HelpSynopsis:    pathAccountDeactivateHelpSyn,
			HelpDescription: pathAccountDeactivateHelpDesc,
		},
	}
}

var accountRolloverFields = map[string]*framework.FieldSchema{
	"name": accountFields["name"],
	"key_type": {Type: framework.TypeString, AllowedValues: anySlice(acme.KeyTypes()),
		Description: "Type of the new account key: " + strings.Join(acme.KeyTypes(), ", ") + ". Default: the current key's type."},
}

type accountHandler struct {
	engine Engine
}

func accountResponse(a *storage.AccountEntry) map[string]any {
	lim := AccountLimits(a)
	contact := a.Contact
	if contact == nil {
		contact = []string{}
	}
	return map[string]any{
		"directory_url":              a.DirectoryURL,
		"contact":                    contact,
		"key_type":                   a.KeyType,
		"terms_of_service_agreed":    a.TermsOfServiceAgreed,
		"eab_kid":                    a.EABKeyID,
		"ca_bundle":                  a.CABundle,
		"account_url":                a.AccountURL,
		"status":                     a.Status,
		"created_at":                 a.CreatedAt,
		"order_limit":                lim.OrdersPerAccount.String(),
		"domain_limit":               lim.CertsPerDomain.String(),
		"duplicate_limit":            lim.DuplicateCerts.String(),
		"failed_authorization_limit": lim.FailedAuthzPerIdent.String(),
	}
}

// write registers a new account at its CA or updates an existing one (resource.lockedWrite holds
// the account's lock).
func (h *accountHandler) write(ctx context.Context, req *logical.Request, d *framework.FieldData, name string) (*logical.Response, error) {
	existing, err := storage.LoadAccount(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return h.update(ctx, req, d, name, existing)
	}

	a, reg, key, err := parseNewAccount(d)
	if err != nil {
		return errorResponse(err)
	}
	if strings.TrimSpace(d.Get("private_key").(string)) != "" {
		// An imported key: its account is looked up (or, with account_url, confirmed) first.
		info, err := h.engine.ImportAccount(ctx, a, key, reg)
		if err != nil {
			return caErrorResponse(fmt.Sprintf("import account %q from %s", name, a.DirectoryURL), err)
		}
		a.AccountURL, a.Status, a.Contact, a.CreatedAt = info.URL, info.Status, info.Contact, time.Now().UTC()
	} else {
		url, status, err := h.engine.RegisterAccount(ctx, a, key, reg)
		if err != nil {
			return caErrorResponse(fmt.Sprintf("register account %q at %s", name, a.DirectoryURL), err)
		}
		a.AccountURL, a.Status, a.CreatedAt = url, status, time.Now().UTC()
	}
	if err := storage.StoreAccount(ctx, req.Storage, name, a); err != nil {
		return nil, err
	}
	h.engine.AccountChanged(name)
	return &logical.Response{Data: accountResponse(a)}, nil
}

// parseNewAccount validates a create request; a caller's mistake is an inputError.
func parseNewAccount(d *framework.FieldData) (*storage.AccountEntry, acme.Registration, crypto.Signer, error) {
	var reg acme.Registration
	dir, err := acme.ResolveDirectoryURL(d.Get("directory_url").(string))
	if err != nil {
		return nil, reg, nil, fieldError("", err)
	}
	agreed, ok := d.GetOk("terms_of_service_agreed")
	if !ok || !agreed.(bool) {
		return nil, reg, nil, badInput("terms_of_service_agreed must be true: read the CA's terms of service and set terms_of_service_agreed=true")
	}
	contact, err := parseContact(d.Get("contact").([]string))
	if err != nil {
		return nil, reg, nil, err
	}
	if _, err := acme.ParseCABundle(d.Get("ca_bundle").(string)); err != nil {
		return nil, reg, nil, fieldError("", err)
	}
	kid, hmac := strings.TrimSpace(d.Get("eab_kid").(string)), strings.TrimSpace(d.Get("eab_hmac_key").(string))
	if (kid == "") != (hmac == "") {
		return nil, reg, nil, badInput("eab_kid and eab_hmac_key go together: give both (external account binding) or neither")
	}
	if hmac != "" {
		if err := acme.ValidateEABKey(hmac); err != nil {
			return nil, reg, nil, fieldError("", err)
		}
	}
	key, keyType, err := accountKey(d)
	if err != nil {
		return nil, reg, nil, err
	}
	accountURL, err := parseAccountURL(d)
	if err != nil {
		return nil, reg, nil, err
	}
	pemKey, err := acme.EncodeKey(key)
	if err != nil {
		return nil, reg, nil, err
	}
	reg = acme.Registration{Contact: contact, TermsOfServiceAgreed: true, EABKeyID: kid, EABHMACKey: hmac}
	a := &storage.AccountEntry{
		DirectoryURL: dir, Contact: contact, KeyType: string(keyType), TermsOfServiceAgreed: true,
		EABKeyID: kid, CABundle: d.Get("ca_bundle").(string), PrivateKey: pemKey, AccountURL: accountURL,
	}
	if err := applyLimitFields(a, d); err != nil {
		return nil, reg, nil, err
	}
	return a, reg, key, nil
}

// maxAccountURLLen bounds account_url; CAs' account URLs are well under 200 characters.
const maxAccountURLLen = 2048

// parseAccountURL validates account_url, which a create may give only with private_key.
func parseAccountURL(d *framework.FieldData) (string, error) {
	raw := strings.TrimSpace(d.Get("account_url").(string))
	if raw == "" {
		return "", nil
	}
	if strings.TrimSpace(d.Get("private_key").(string)) == "" {
		return "", badInput("account_url goes with private_key: give the existing account's key too (certbot: private_key.json), or leave account_url out to register a new account")
	}
	if len(raw) > maxAccountURLLen {
		return "", badInput("account_url is longer than %d characters: give the account's URL at the CA (certbot: the \"uri\" of regr.json)", maxAccountURLLen)
	}
	u, err := url.Parse(raw)
	if err == nil && u.User != nil {
		// Not echoed: it holds what may be a password.
		return "", badInput("account_url must not hold a user name or password: give the account's URL at the CA (certbot: the \"uri\" of regr.json)")
	}
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", badInput("account_url %q is not an https URL: give the account's URL at the CA (certbot: the \"uri\" of regr.json)", raw)
	}
	return u.String(), nil
}

// accountKey imports the given private key or generates one of key_type.
func accountKey(d *framework.FieldData) (crypto.Signer, acme.KeyType, error) {
	rawType, typeGiven := d.GetOk("key_type")
	kt, err := acme.ParseKeyType(fmt.Sprint(d.Get("key_type")))
	if err != nil {
		return nil, "", fieldError("key_type", err)
	}
	if pemKey := d.Get("private_key").(string); strings.TrimSpace(pemKey) != "" {
		key, err := acme.ParseAccountKey(pemKey)
		if err != nil {
			return nil, "", fieldError("private_key", err)
		}
		actual, _ := acme.KeyTypeOf(key)
		if typeGiven && rawType.(string) != "" && actual != kt {
			return nil, "", badInput("key_type %q does not match the imported private_key, which is %s: leave key_type out", kt, actual)
		}
		return key, actual, nil
	}
	key, err := kt.Generate()
	if err != nil {
		return nil, "", fmt.Errorf("generate the account key: %w", err)
	}
	return key, kt, nil
}

// Bounds of an account's contact list: an e-mail address has at most 254 characters (RFC 5321 with
// its erratum); CAs keep few addresses per account.
const (
	maxContactLen = 254
	maxContacts   = 10
)

// parseContact validates e-mail contacts, accepting an optional "mailto:" prefix.
func parseContact(in []string) ([]string, error) {
	var out []string
	for _, c := range in {
		c = strings.TrimPrefix(strings.TrimSpace(c), "mailto:")
		if c == "" {
			continue
		}
		if len(c) > maxContactLen {
			return nil, badInput("contact %q is longer than %d characters: give a plain e-mail address", c, maxContactLen)
		}
		if len(out) == maxContacts {
			return nil, badInput("contact has more than %d addresses", maxContacts)
		}
		addr, err := mail.ParseAddress(c)
		if err != nil || addr.Address != c || addr.Name != "" {
			return nil, badInput("contact %q is not an e-mail address: give plain addresses like admin@example.com", c)
		}
		out = append(out, c)
	}
	return out, nil
}

// update applies the changes an existing account allows: contact and ca_bundle.
func (h *accountHandler) update(ctx context.Context, req *logical.Request, d *framework.FieldData, name string, a *storage.AccountEntry) (*logical.Response, error) {
	for _, f := range []string{"directory_url", "key_type", "private_key", "eab_kid", "eab_hmac_key", "account_url"} {
		if v, ok := d.GetOk(f); ok && fmt.Sprint(v) != "" && !sameAccountValue(a, f, fmt.Sprint(v)) {
			if f == "key_type" || f == "private_key" {
				return logical.ErrorResponse("%s of existing account %q cannot change here: write accounts/%s/rollover for a new key (key_type=...)", f, name, name), nil
			}
			return logical.ErrorResponse("%s of existing account %q cannot change: delete it and create a new account, or use another name", f, name), nil
		}
	}
	if v, ok := d.GetOk("terms_of_service_agreed"); ok && !v.(bool) {
		return logical.ErrorResponse("terms_of_service_agreed cannot be withdrawn: delete the account instead"), nil
	}
	// Validate every field before the CA hears of a change: a refused update changes nothing.
	updated := *a
	contact := a.Contact
	if raw, ok := d.GetOk("contact"); ok {
		var err error
		if contact, err = parseContact(raw.([]string)); err != nil {
			return errorResponse(err)
		}
	}
	if raw, ok := d.GetOk("ca_bundle"); ok {
		if _, err := acme.ParseCABundle(raw.(string)); err != nil {
			return errorResponse(fieldError("", err))
		}
		updated.CABundle = raw.(string)
	}
	if err := applyLimitFields(&updated, d); err != nil {
		return errorResponse(err)
	}
	if !slices.Equal(contact, a.Contact) {
		if a.Status == storage.AccountStatusDeactivated {
			return logical.ErrorResponse("account %q is deactivated at its CA: its contact cannot change any more", name), nil
		}
		if err := h.engine.UpdateAccountContact(ctx, name, a, contact); err != nil {
			return caErrorResponse(fmt.Sprintf("update contact of account %q", name), err)
		}
		updated.Contact = contact
	}
	if err := storage.StoreAccount(ctx, req.Storage, name, &updated); err != nil {
		return nil, err
	}
	h.engine.AccountChanged(name)
	return &logical.Response{Data: accountResponse(&updated)}, nil
}

func sameAccountValue(a *storage.AccountEntry, field, v string) bool {
	switch field {
	case "directory_url":
		dir, err := acme.ResolveDirectoryURL(v)
		return err == nil && dir == a.DirectoryURL
	case "key_type":
		return strings.EqualFold(v, a.KeyType)
	case "eab_kid":
		return v == a.EABKeyID
	case "account_url":
		return strings.TrimSpace(v) == a.AccountURL
	}
	return false
}

// lockedAccount validates the request's account name, takes the account's lock and loads it; a
// missing account is a 404. unlock is nil when resp or err is set.
func (h *accountHandler) lockedAccount(ctx context.Context, req *logical.Request, d *framework.FieldData) (name string, a *storage.AccountEntry, unlock func(), resp *logical.Response, err error) {
	name = d.Get("name").(string)
	if err := ValidateEntryName("account", name); err != nil {
		return name, nil, nil, logical.ErrorResponse(err.Error()), nil
	}
	lock := h.engine.Locks().For(storage.AccountPrefix, name)
	lock.Lock()
	a, err = storage.LoadAccount(ctx, req.Storage, name)
	if err == nil && a == nil {
		err = logical.CodedError(http.StatusNotFound, fmt.Sprintf("account %q does not exist: write accounts/%s first", name, name))
	}
	if err != nil {
		lock.Unlock()
		return name, nil, nil, nil, err
	}
	return name, a, lock.Unlock, nil, nil
}

// rollover replaces the account's key at its CA with a new key of key_type (default: the
// current type). Renewals in flight on the account do not fail (Engine.RolloverAccountKey).
func (h *accountHandler) rollover(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, a, unlock, resp, err := h.lockedAccount(ctx, req, d)
	if unlock == nil {
		return resp, err
	}
	defer unlock()
	if a.Status == storage.AccountStatusDeactivated {
		return logical.ErrorResponse("account %q is deactivated at its CA: its key cannot change; create a new account", name), nil
	}
	raw := a.KeyType
	if v, ok := d.GetOk("key_type"); ok && strings.TrimSpace(v.(string)) != "" {
		raw = v.(string)
	}
	kt, err := acme.ParseKeyType(raw)
	if err != nil {
		return errorResponse(fieldError("key_type", err))
	}
	key, err := kt.Generate()
	if err != nil {
		return nil, fmt.Errorf("generate the new account key: %w", err)
	}
	updated, err := h.engine.RolloverAccountKey(ctx, name, a, key)
	if err != nil {
		return caErrorResponse(fmt.Sprintf("roll over the key of account %q", name), err)
	}
	return &logical.Response{Data: accountResponse(updated)}, nil
}

// deactivate deactivates the account at its CA (for good: ACME has no reactivation). Issuance for
// the roles that use it then fails before the CA is asked. Deactivating a deactivated account
// changes nothing.
func (h *accountHandler) deactivate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, a, unlock, resp, err := h.lockedAccount(ctx, req, d)
	if unlock == nil {
		return resp, err
	}
	defer unlock()
	if a.Status != storage.AccountStatusDeactivated {
		if a, err = h.engine.DeactivateAccount(ctx, name, a); err != nil {
			return caErrorResponse(fmt.Sprintf("deactivate account %q", name), err)
		}
	}
	resp = &logical.Response{Data: accountResponse(a)}
	users, err := storage.RolesUsing(ctx, req.Storage, func(r *storage.RoleEntry) bool { return r.Account == name })
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		resp.AddWarning(fmt.Sprintf("role(s) %s use account %q: their certificates can no longer be issued or renewed; point them at another account",
			strings.Join(users, ", "), name))
	}
	return resp, nil
}

func (h *accountHandler) delete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return deleteUnlessUsed(ctx, req, h.engine, storage.AccountPrefix, d.Get("name").(string), "account",
		func(r *storage.RoleEntry, name string) bool { return r.Account == name }, storage.DeleteAccount, h.engine.AccountChanged)
}

// caErrorResponse turns a failure talking to the CA into a response: the CA's refusal or an
// untrusted CA certificate is the caller's to fix (400); an unreachable or failing CA is 502.
func caErrorResponse(what string, err error) (*logical.Response, error) {
	switch {
	case errors.Is(err, acme.ErrRateLimited):
		msg := fmt.Sprintf("%s: %v", what, err)
		if d, ok := acme.RetryAfter(err); ok {
			msg += fmt.Sprintf("; retry after %s", d.Round(time.Second))
		}
		return nil, fmt.Errorf("%s: %w", msg, logical.ErrUpstreamRateLimited)
	case errors.Is(err, acme.ErrUnreachable):
		return nil, logical.CodedError(http.StatusBadGateway, fmt.Sprintf("%s: %v", what, err))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return nil, logical.CodedError(http.StatusGatewayTimeout, fmt.Sprintf("%s: %v", what, err))
	}
	return logical.ErrorResponse("%s: %v", what, err), nil
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

const (
	pathAccountsListHelpSyn  = "List the ACME accounts."
	pathAccountsListHelpDesc = "Lists the names of the ACME accounts registered through this engine."
	pathAccountsHelpSyn      = "Register and manage an ACME account."
	pathAccountsHelpDesc     = `An ACME account at a CA (Let's Encrypt or any RFC 8555 CA). Writing a new account registers it
at the CA during the request; nothing is stored if the CA refuses. The account key is generated
(key_type) or imported (private_key: PEM, or certbot's private_key.json). An imported key's account is
looked up at the CA and registered only if the CA does not know the key; with account_url (certbot's
regr.json "uri") the CA must confirm that the key owns that URL and nothing is registered. ca_bundle
holds the PEM roots of a private CA's HTTPS endpoint and applies to this account only. Reads never
return the account key or the EAB HMAC key. An existing account may change its contact, ca_bundle and
order budget; its key changes with accounts/<name>/rollover; anything else needs a new account.`
	pathAccountRolloverHelpSyn  = "Replace an ACME account's key at its CA."
	pathAccountRolloverHelpDesc = `Generates a new account key (key_type, default the current key's type) and replaces the
account's key at its CA with an RFC 8555 key change. The new key is the account's once the CA has
accepted it; if the CA refuses, the account keeps its key. Certificates being issued or renewed on the
account meanwhile do not fail: the key change waits until the challenges they answered are validated,
and their later requests are signed with the new key.`
	pathAccountDeactivateHelpSyn  = "Deactivate an ACME account at its CA."
	pathAccountDeactivateHelpDesc = `Deactivates the account at its CA (RFC 8555 §7.3.6); this cannot be undone. The account's
status becomes deactivated, and certificates of roles using it are no longer issued or renewed: their
attempts fail with a last_error saying so, without contacting the CA. Point those roles at another
account. The entry stays until you delete it.`
)
