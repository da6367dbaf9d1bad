package storage

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/helper/certutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// CertPrefix is where certificates live, under their names (which may contain "/"). Seal-wrapped:
// entries hold the certificate's private key.
const CertPrefix = "certs/"

// Certificate statuses.
const (
	// StatusPending: the certificate's current specification has not been issued yet; work is
	// under way or will start on the next read or renewal tick.
	StatusPending = "pending"
	// StatusValid: the stored certificate matches the specification.
	StatusValid = "valid"
	// StatusFailed: the last attempt failed; see last_error and next_attempt_at.
	StatusFailed = "failed"
)

// Key sources of a certificate.
const (
	KeySourceVault    = "vault"
	KeySourceCSR      = "csr"
	KeySourceImported = "imported"
)

// CertEntry is a named certificate: its specification, the state of its issuance and the current
// certificate with its key.
type CertEntry struct {
	Role    string   `json:"role"`
	Domains []string `json:"domains"`
	KeyType string   `json:"key_type"`
	Profile string   `json:"profile,omitempty"`
	// Challenge is the ACME challenge type that proves the names (dns-01 when empty).
	Challenge string `json:"challenge,omitempty"`
	// CSR, when set, defines the certificate: the PEM request is sent as it is at every issuance
	// and renewal, and no private key is made or stored (KeySource "csr").
	CSR string `json:"csr,omitempty"`
	// KeySource says where the current certificate's key comes from: KeySourceVault (made by the
	// engine; "" in entries stored before there was a choice), KeySourceCSR or KeySourceImported.
	KeySource string `json:"key_source,omitempty"`
	// Generation increases whenever the specification (role, domains, key type) changes.
	Generation int64 `json:"generation"`

	Status    string `json:"status"`
	LastError string `json:"last_error,omitempty"`
	Attempts  int    `json:"attempts,omitempty"`
	// EarlyRetryAttempt is the number of the attempt a rewrite of the certificate last started
	// before its backoff ended: when that attempt fails too, the next rewrite waits for the backoff
	// (one early retry per backoff step).
	EarlyRetryAttempt int       `json:"early_retry_attempt,omitempty"`
	NextAttemptAt     time.Time `json:"next_attempt_at,omitzero"`

	// The current certificate, from IssuedGeneration of the specification.
	Certificate      string    `json:"certificate,omitempty"`
	Chain            []string  `json:"chain,omitempty"`
	PrivateKey       string    `json:"private_key,omitempty"`
	SerialNumber     string    `json:"serial_number,omitempty"`
	NotBefore        time.Time `json:"not_before,omitzero"`
	NotAfter         time.Time `json:"not_after,omitzero"`
	IssuedAt         time.Time `json:"issued_at,omitzero"`
	IssuedGeneration int64     `json:"issued_generation,omitempty"`
	OrderURL         string    `json:"order_url,omitempty"`
	CertURL          string    `json:"cert_url,omitempty"`

	// RenewAt is when the current certificate is to be renewed: inside the CA's ARI window when it
	// offers one, else with a third of its lifetime left (half, under ten days), with jitter.
	RenewAt time.Time `json:"renew_at,omitzero"`
	// ARICheckAt is when the CA's renewal window is to be fetched next; zero without ARI.
	ARICheckAt time.Time `json:"ari_check_at,omitzero"`
	// ARIWindowStart and ARIWindowEnd are the window last accepted from the CA.
	ARIWindowStart time.Time `json:"ari_window_start,omitzero"`
	ARIWindowEnd   time.Time `json:"ari_window_end,omitzero"`
	// LastEarlyRenewal is when an ARI window last moved a renewal earlier than planned; a second
	// early window soon after is ignored, so a hostile or broken CA cannot cause a renewal loop.
	LastEarlyRenewal time.Time `json:"last_early_renewal,omitzero"`
	// ForceRenewal asks for a renewal now, whatever renew_at says (certs/<name>/renew).
	ForceRenewal bool `json:"force_renewal,omitempty"`
	// Renewals counts certificates issued for this entry after the first.
	Renewals int `json:"renewals,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Current reports whether the stored certificate was issued for the current specification.
func (c *CertEntry) Current() bool {
	return c.Certificate != "" && c.IssuedGeneration == c.Generation
}

// ChallengeType returns the certificate's challenge type (dns-01 when unset).
func (c *CertEntry) ChallengeType() string {
	if c.Challenge == "" {
		return ChallengeDNS01
	}
	return c.Challenge
}

// SameSpec reports whether c is the same specification of the same entry as o: an entry deleted
// and written anew under the same name is not, even at the same generation.
func (c *CertEntry) SameSpec(o *CertEntry) bool {
	return c.Generation == o.Generation && c.CreatedAt.Equal(o.CreatedAt)
}

// LoadCert returns the certificate stored under name, or nil.
func LoadCert(ctx context.Context, s logical.Storage, name string) (*CertEntry, error) {
	return load[CertEntry](ctx, s, CertPrefix, name, "certificate")
}

// LoadCertShared is LoadCert for reads that change nothing: the entry may be shared with other
// callers (storage.LoadShared) and must not be modified.
func LoadCertShared(ctx context.Context, s logical.Storage, name string) (*CertEntry, error) {
	return LoadShared[CertEntry](ctx, s, CertPrefix, name, "certificate")
}

// StoreCert writes the certificate entry. Callers hold the certificate's lock (Locks.Cert).
func StoreCert(ctx context.Context, s logical.Storage, name string, c *CertEntry) error {
	return store(ctx, s, CertPrefix, name, "certificate", c)
}

// DeleteCert deletes the certificate entry and then its order record, if any. Callers hold the
// certificate's lock. A crash between the two leaves an order record without a certificate, which
// the next write of the same name resumes or replaces and a later delete removes.
func DeleteCert(ctx context.Context, s logical.Storage, name string) error {
	if err := remove(ctx, s, CertPrefix, name, "certificate"); err != nil {
		return err
	}
	return DeleteOrder(ctx, s, name)
}

// CertNames returns the names of every stored certificate, at any folder depth.
func CertNames(ctx context.Context, s logical.Storage) ([]string, error) {
	names, err := logical.CollectKeys(ctx, logical.NewStorageView(s, CertPrefix))
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	return names, nil
}

// Leaf parses the entry's current certificate (the leaf of Certificate).
func (c *CertEntry) Leaf() (*x509.Certificate, error) {
	bundle, err := certutil.ParsePEMBundle(c.Certificate)
	if err != nil || bundle.Certificate == nil {
		return nil, fmt.Errorf("stored certificate is not a PEM certificate: %v", err)
	}
	return bundle.Certificate, nil
}
