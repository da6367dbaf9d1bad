// Package paths is the plugin's HTTP API: one file per resource (accounts, config/dns, roles,
// certs) holding its framework.Path declarations, field schemas, validation, handlers and help
// text.
//
// Entries, storage keys and locks live in the storage package. paths may import acme and solvers
// for their plain types and validators, and reaches everything that does work (the CA, DNS
// solvers, the issuance workers) through the Engine interface, which the backend implements. It
// must not import the backend, nor lego.
package paths

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// operationPrefix prefixes every OpenAPI operation ID of this engine.
const operationPrefix = "letsencrypt"

// Engine is what the API needs from the backend. Implementations are safe for concurrent use.
type Engine interface {
	// RegisterAccount registers the account of a generated key at its CA and returns the account
	// URL and status (imported keys go through ImportAccount). Nothing is stored.
	RegisterAccount(ctx context.Context, acct *storage.AccountEntry, key crypto.Signer, reg acme.Registration) (url, status string, err error)
	// UpdateAccountContact changes the contact addresses of a registered account at its CA.
	UpdateAccountContact(ctx context.Context, name string, acct *storage.AccountEntry, contact []string) error
	// ImportAccount finds the account of an imported key at its CA: with acct.AccountURL set, the
	// CA must confirm the key owns it (nothing is registered); without, an account the CA knows
	// for the key is adopted and an unknown key registered. Nothing is stored.
	ImportAccount(ctx context.Context, acct *storage.AccountEntry, key crypto.Signer, reg acme.Registration) (acme.AccountInfo, error)
	// RolloverAccountKey replaces the named account's key at its CA by newKey and stores the
	// result (called with the account's lock held); orders in flight do not fail.
	RolloverAccountKey(ctx context.Context, name string, acct *storage.AccountEntry, newKey crypto.Signer) (*storage.AccountEntry, error)
	// DeactivateAccount deactivates the named account at its CA and stores its status (called
	// with the account's lock held).
	DeactivateAccount(ctx context.Context, name string, acct *storage.AccountEntry) (*storage.AccountEntry, error)
	// AccountChanged forgets anything cached for the account (its client, its directory).
	AccountChanged(name string)

	// CheckDNSConfig builds the DNS provider of cfg in isolation and returns a *solvers.ConfigError
	// when the configuration cannot work. Nothing is stored.
	CheckDNSConfig(ctx context.Context, cfg *storage.DNSConfigEntry) error
	// DNSConfigChanged stops the solver process of the named configuration.
	DNSConfigChanged(name string)

	// EnsureCertificate makes sure the certificate stored under name is issued for its current
	// specification: it starts issuance unless one is in flight or the certificate is current, and
	// waits up to wait for the result. It returns the entry as stored when it returns.
	EnsureCertificate(ctx context.Context, name string, wait time.Duration) (*storage.CertEntry, error)
	// CertificateChanged tells the engine a certificate entry was written or deleted.
	CertificateChanged(name string)
	// RenewCertificate runs the renewal of the named certificate that was marked ForceRenewal,
	// waiting up to wait, and returns the entry as stored when it returns.
	RenewCertificate(ctx context.Context, name string, wait time.Duration) (*storage.CertEntry, error)
	// RevokeCertificate revokes the entry's current certificate at its CA with an RFC 5280 reason.
	RevokeCertificate(ctx context.Context, name string, c *storage.CertEntry, reason uint) error
	// PlanRenewal sets when a certificate stored without an order (an import) is to be renewed
	// and its CA's renewal window first fetched, as for one just issued.
	PlanRenewal(c *storage.CertEntry, now time.Time)
	// CertificateSummaries returns the renewal scheduler's view of every certificate.
	CertificateSummaries() map[string]CertSummary
	// CountCertificates returns how many stored certificates use the named role.
	CountCertificates(role string) int
	// CertificateWaiting says why the named certificate's job waits (for a worker, for the
	// account's order budget), or "" when it does not.
	CertificateWaiting(name string) string
	// Metrics returns the engine's counters on this node and the plugin's version.
	Metrics() Metrics

	// WriteSafe reports whether this node may write storage and talk to CAs.
	WriteSafe() bool
	// Locks returns the mount's entry locks, shared by the API and the issuance workers.
	Locks() *storage.Locks
}

// Paths returns every path of the engine, bound to e.
func Paths(e Engine) []*framework.Path {
	var ps []*framework.Path
	ps = append(ps, accountPaths(e)...)
	ps = append(ps, dnsConfigPaths(e)...)
	ps = append(ps, rolePaths(e)...)
	ps = append(ps, certActionPaths(e)...)
	ps = append(ps, certPaths(e)...)
	ps = append(ps, statusPaths(e)...)
	ps = append(ps, metricsPaths(e)...)
	ps = append(ps, challengePaths()...)
	return ps
}

// resource describes a stored resource with list, create, update, read and delete under
// prefix: accounts, DNS configurations and roles share this shape.
type resource struct {
	engine             Engine
	prefix             string // storage and path prefix, e.g. "accounts/"
	kind               string // what an entry is called in messages, e.g. "DNS configuration"
	singular, plural   string // OpenAPI operation suffixes
	fields, readFields map[string]*framework.FieldSchema
	// write creates or updates the entry named name; it runs with the name validated and the
	// entry's lock held.
	write     func(ctx context.Context, req *logical.Request, d *framework.FieldData, name string) (*logical.Response, error)
	read, del framework.OperationFunc
	// summaries of the list, create, update, read and delete operations.
	listSum, createSum, updateSum, readSum, deleteSum string
	listSyn, listDesc, syn, desc                      string
}

// paths returns the list path and the entry path of the resource. Operations that change storage
// or talk to a CA are forwarded from performance standbys and secondaries.
func (r resource) paths() []*framework.Path {
	ok := map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: r.readFields}}}
	op := func(cb framework.OperationFunc, summary, verb string, forward bool, responses map[int][]framework.Response) *framework.PathOperation {
		return &framework.PathOperation{Callback: cb, Summary: summary, DisplayAttrs: &framework.DisplayAttributes{OperationVerb: verb},
			ForwardPerformanceStandby: forward, ForwardPerformanceSecondary: forward, Responses: responses}
	}
	return []*framework.Path{
		{
			Pattern:      r.prefix + "?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: r.plural},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: op(listEntries(r.prefix), r.listSum, "list", false, listResponses),
			},
			HelpSynopsis:    r.listSyn,
			HelpDescription: r.listDesc,
		},
		{
			Pattern:        r.prefix + framework.GenericNameRegex("name"),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: r.singular},
			Fields:         r.fields,
			ExistenceCheck: existence(r.prefix),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: op(r.lockedWrite, r.createSum, "write", true, ok),
				logical.UpdateOperation: op(r.lockedWrite, r.updateSum, "write", true, ok),
				logical.ReadOperation:   op(r.read, r.readSum, "read", false, ok),
				logical.DeleteOperation: op(r.del, r.deleteSum, "delete", true, noContent),
			},
			HelpSynopsis:    r.syn,
			HelpDescription: r.desc,
		},
	}
}

// lockedWrite is the write preamble every resource shares: it validates the name, takes the
// entry's lock and calls the resource's write.
func (r resource) lockedWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := ValidateEntryName(r.kind, name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	lock := r.engine.Locks().For(r.prefix, name)
	lock.Lock()
	defer lock.Unlock()
	return r.write(ctx, req, d, name)
}

// readEntry answers a read of the entry named by the request: load finds it, respond shapes it;
// none is a 404.
func readEntry[T any](load func(context.Context, logical.Storage, string) (*T, error), respond func(*T) map[string]any) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		v, err := load(ctx, req.Storage, d.Get("name").(string))
		if err != nil || v == nil {
			return nil, err
		}
		return &logical.Response{Data: respond(v)}, nil
	}
}

// existence returns an ExistenceCheck for entries stored under prefix+name. A name that is not
// valid does not exist; the handler then rejects it with a 400.
func existence(prefix string) framework.ExistenceFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
		name := d.Get("name").(string)
		if prefix == storage.CertPrefix && ValidateCertName(name) != nil {
			return false, nil
		}
		e, err := req.Storage.Get(ctx, prefix+name)
		if err != nil {
			return false, err
		}
		return e != nil, nil
	}
}

// listEntries answers a list request for the keys under prefix.
func listEntries(prefix string) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		keys, err := req.Storage.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		return logical.ListResponse(keys), nil
	}
}

// listResponses is the declared response of every list operation.
var listResponses = map[int][]framework.Response{
	http.StatusOK: {{
		Description: "OK",
		Fields: map[string]*framework.FieldSchema{
			"keys": {Type: framework.TypeStringSlice, Description: "Names of the entries."},
		},
	}},
}

// noContent is the declared response of a delete.
var noContent = map[int][]framework.Response{http.StatusNoContent: {{Description: "No Content"}}}

// inputError is a caller's mistake. Handlers answer it with a 400 whose message says what to fix;
// validators return it (badInput, fieldError) instead of passing messages around as strings.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

// badInput returns an inputError with a formatted message.
func badInput(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// fieldError returns err, a validator's error from acme, solvers or names.go, as an inputError
// about field (no prefix when field is empty: the message names its field already). acme's
// errors lose their package prefix.
func fieldError(field string, err error) error {
	msg := err.Error()
	var ve *acme.ValidationError
	if errors.As(err, &ve) {
		msg = ve.Reason
	}
	if field != "" {
		msg = field + ": " + msg
	}
	return &inputError{msg: msg}
}

// errorResponse answers a handler's error: an inputError is a 400 with its message, anything
// else a 500.
func errorResponse(err error) (*logical.Response, error) {
	var ie *inputError
	if errors.As(err, &ie) {
		return logical.ErrorResponse(ie.msg), nil
	}
	return nil, err
}

// ScreenSensitiveInput returns a 400 for a request to path p with a field Vault's own field parser
// would refuse with an error that quotes the value (a credential, a key, or a key sent in the wrong
// field); nil otherwise. Unknown fields named like secrets are refused too (Vault would list their
// names in a warning). The backend calls it before the
// framework parses the request, so no secret ever comes back in a "field validation failed" error.
func ScreenSensitiveInput(p *framework.Path, data map[string]any) *logical.Response {
	if p == nil {
		return nil
	}
	for name, f := range p.Fields {
		// Every field, not only the sensitive ones: a private key sent in the wrong field (or as
		// a list) would otherwise come back quoted in Vault's conversion error.
		raw, ok := data[name]
		sensitive := f.DisplayAttrs != nil && f.DisplayAttrs.Sensitive
		if !ok || !sensitive && f.Type != framework.TypeString && f.Type != framework.TypeCommaStringSlice && f.Type != framework.TypeStringSlice {
			// Numbers, durations and booleans: Vault's error quotes the value, which
			// ClipResponse shortens.
			continue
		}
		fd := &framework.FieldData{Raw: map[string]any{name: raw}, Schema: map[string]*framework.FieldSchema{name: f}}
		if _, _, err := fd.GetOkErr(name); err != nil {
			hint := "give a string"
			if f.Type == framework.TypeKVPairs {
				hint = "give NAME=value pairs (e.g. " + name + "=CLOUDFLARE_DNS_API_TOKEN=...) or a JSON object of strings"
			}
			return logical.ErrorResponse("%s is malformed: %s (the value is not shown)", name, hint)
		}
	}
	for name := range data {
		if _, known := p.Fields[name]; !known && !plainFieldName(name) {
			return logical.ErrorResponse("the request has a parameter whose name is not a field name (letters, digits and _ only, at most 64): the name is not shown, as it may be a secret sent by mistake")
		}
	}
	return nil
}

// fieldsOf returns the response schema of the given names, taken from fields.
func fieldsOf(fields map[string]*framework.FieldSchema, names ...string) map[string]*framework.FieldSchema {
	out := make(map[string]*framework.FieldSchema, len(names))
	for _, n := range names {
		out[n] = fields[n]
	}
	return out
}

// plainFieldName reports whether name looks like a field name, not like a value sent as one.
func plainFieldName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
