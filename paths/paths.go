// Package paths is the plugin's HTTP API: one file per resource (accounts, config/dns, roles,
// certs) holding its storage keys, its stored entry type, its framework.Path declarations,
// validation, handlers and help text.
//
// It may import the acme and solvers packages for their plain types and validators, and reaches
// everything that does work (the CA, DNS solvers, the issuance workers) through the Engine
// interface, which the backend implements. It must not import the backend.
package paths

import (
	"context"
	"crypto"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
)

// operationPrefix prefixes every OpenAPI operation ID of this engine.
const operationPrefix = "letsencrypt"

// Engine is what the API needs from the backend. Implementations are safe for concurrent use.
type Engine interface {
	// RegisterAccount registers (or finds, for an imported key) the account at its CA and returns
	// the account URL and status. Nothing is stored.
	RegisterAccount(ctx context.Context, acct *AccountEntry, key crypto.Signer, reg acme.Registration) (url, status string, err error)
	// UpdateAccountContact changes the contact addresses of a registered account at its CA.
	UpdateAccountContact(ctx context.Context, name string, acct *AccountEntry, contact []string) error
	// AccountChanged forgets anything cached for the account (its client, its directory).
	AccountChanged(name string)

	// CheckDNSConfig builds the DNS provider of cfg in isolation and returns a *solvers.ConfigError
	// when the configuration cannot work.
	CheckDNSConfig(ctx context.Context, cfg solvers.DNSConfig) error
	// DNSConfigChanged stops the solver process of the named configuration.
	DNSConfigChanged(name string)

	// EnsureCertificate makes sure the certificate stored under name is issued for its current
	// specification: it starts issuance unless one is in flight or the certificate is current, and
	// waits up to wait for the result. It returns the entry as stored when it returns.
	EnsureCertificate(ctx context.Context, name string, wait time.Duration) (*CertEntry, error)
	// CertificateChanged tells the engine a certificate entry was written or deleted.
	CertificateChanged(name string)
	// RenewCertificate runs the renewal of the named certificate that was marked ForceRenewal,
	// waiting up to wait, and returns the entry as stored when it returns.
	RenewCertificate(ctx context.Context, name string, wait time.Duration) (*CertEntry, error)
	// RevokeCertificate revokes the entry's current certificate at its CA with an RFC 5280 reason.
	RevokeCertificate(ctx context.Context, name string, c *CertEntry, reason uint) error
	// CertificateSummaries returns the renewal scheduler's view of every certificate.
	CertificateSummaries() map[string]CertSummary

	// WriteSafe reports whether this node may write storage and talk to CAs.
	WriteSafe() bool
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
	return ps
}

// SealWrapPrefixes lists the storage prefixes that hold keys or credentials; the backend declares
// them in PathsSpecial.SealWrapStorage.
func SealWrapPrefixes() []string {
	return []string{AccountPrefix, DNSConfigPrefix, CertPrefix}
}

// resource describes a stored resource with list, create, update, read and delete under
// prefix: accounts, DNS configurations and roles share this shape.
type resource struct {
	prefix             string // storage and path prefix, e.g. "accounts/"
	singular, plural   string // OpenAPI operation suffixes
	fields, readFields map[string]*framework.FieldSchema
	write, read, del   framework.OperationFunc
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
				logical.CreateOperation: op(r.write, r.createSum, "write", true, ok),
				logical.UpdateOperation: op(r.write, r.updateSum, "write", true, ok),
				logical.ReadOperation:   op(r.read, r.readSum, "read", false, ok),
				logical.DeleteOperation: op(r.del, r.deleteSum, "delete", true, noContent),
			},
			HelpSynopsis:    r.syn,
			HelpDescription: r.desc,
		},
	}
}

// loadEntry returns the JSON entry stored at prefix+name as a *T, or nil when there is none.
func loadEntry[T any](ctx context.Context, s logical.Storage, prefix, name, what string) (*T, error) {
	var v T
	ok, err := getEntry(ctx, s, prefix+name, &v)
	if err != nil {
		return nil, fmt.Errorf("load %s %q: %w", what, name, err)
	}
	if !ok {
		return nil, nil
	}
	return &v, nil
}

// existence returns an ExistenceCheck for entries stored under prefix+name. A name that is not
// valid does not exist; the handler then rejects it with a 400.
func existence(prefix string) framework.ExistenceFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
		name := d.Get("name").(string)
		if prefix == CertPrefix && ValidateCertName(name) != nil {
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

// getEntry loads the JSON entry stored at key into out; it reports false when there is none.
func getEntry(ctx context.Context, s logical.Storage, key string, out any) (bool, error) {
	e, err := s.Get(ctx, key)
	if err != nil || e == nil {
		return false, err
	}
	if err := e.DecodeJSON(out); err != nil {
		return false, err
	}
	return true, nil
}

// putEntry stores v as JSON at key.
func putEntry(ctx context.Context, s logical.Storage, key string, v any) error {
	e, err := logical.StorageEntryJSON(key, v)
	if err != nil {
		return err
	}
	return s.Put(ctx, e)
}

// fieldsOf returns the response schema of the given names, taken from fields.
func fieldsOf(fields map[string]*framework.FieldSchema, names ...string) map[string]*framework.FieldSchema {
	out := make(map[string]*framework.FieldSchema, len(names))
	for _, n := range names {
		out[n] = fields[n]
	}
	return out
}
