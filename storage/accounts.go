package storage

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// AccountPrefix is where ACME accounts live, one entry per name. Seal-wrapped: entries hold the
// account's private key.
const AccountPrefix = "accounts/"

// AccountEntry is an ACME account as stored.
type AccountEntry struct {
	DirectoryURL         string    `json:"directory_url"`
	Contact              []string  `json:"contact,omitempty"`
	KeyType              string    `json:"key_type"`
	TermsOfServiceAgreed bool      `json:"terms_of_service_agreed"`
	EABKeyID             string    `json:"eab_kid,omitempty"`
	CABundle             string    `json:"ca_bundle,omitempty"`
	AccountURL           string    `json:"account_url"`
	Status               string    `json:"status"`
	CreatedAt            time.Time `json:"created_at"`
	// Order budget limits ("N/period", "0" unlimited, "" the CA's published limits): new orders
	// per account, certificates per registered domain, duplicate certificates, failed
	// authorizations per identifier.
	OrderLimit       string `json:"order_limit,omitempty"`
	DomainLimit      string `json:"domain_limit,omitempty"`
	DuplicateLimit   string `json:"duplicate_limit,omitempty"`
	FailedAuthzLimit string `json:"failed_authorization_limit,omitempty"`
	// PrivateKey is the PKCS #8 PEM account key. It never leaves storage.
	PrivateKey string `json:"private_key"`
	// PendingKey is the PKCS #8 PEM key of a key rollover that was sent to the CA but whose
	// outcome is not stored yet: it is written before the key change is sent and cleared after,
	// so that a crash in between loses neither key. Whoever next finds it set asks the CA which
	// key owns the account and keeps that one. It never leaves storage.
	PendingKey string `json:"pending_key,omitempty"`
}

// Account statuses, as the CA reports them (RFC 8555 §7.1.2).
const (
	AccountStatusValid       = "valid"
	AccountStatusDeactivated = "deactivated"
)

// LoadAccount returns the account stored under name, or nil.
func LoadAccount(ctx context.Context, s logical.Storage, name string) (*AccountEntry, error) {
	return load[AccountEntry](ctx, s, AccountPrefix, name, "account")
}

// StoreAccount writes the account entry.
func StoreAccount(ctx context.Context, s logical.Storage, name string, a *AccountEntry) error {
	return store(ctx, s, AccountPrefix, name, "account", a)
}

// DeleteAccount deletes the account entry.
func DeleteAccount(ctx context.Context, s logical.Storage, name string) error {
	return remove(ctx, s, AccountPrefix, name, "account")
}
