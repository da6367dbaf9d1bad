package storage

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// OrderPrefix is where an order in flight is recorded, per certificate name, from the moment the
// CA created it until its certificate is stored. Seal-wrapped: entries hold the new certificate's
// private key. After a crash, the next attempt resumes the recorded order instead of ordering
// again. The certificate's lock (Locks.Cert) guards it.
const OrderPrefix = "orders/"

// OrderEntry is an order in flight.
type OrderEntry struct {
	OrderURL   string    `json:"order_url"`
	Generation int64     `json:"generation"`
	PrivateKey string    `json:"private_key"`
	Domains    []string  `json:"domains"`
	CreatedAt  time.Time `json:"created_at"`
}

// LoadOrder returns the order in flight of the named certificate, or nil.
func LoadOrder(ctx context.Context, s logical.Storage, name string) (*OrderEntry, error) {
	return load[OrderEntry](ctx, s, OrderPrefix, name, "order of certificate")
}

// StoreOrder records the order in flight of the named certificate.
func StoreOrder(ctx context.Context, s logical.Storage, name string, o *OrderEntry) error {
	return store(ctx, s, OrderPrefix, name, "order of certificate", o)
}

// DeleteOrder forgets the order in flight of the named certificate; none is fine.
func DeleteOrder(ctx context.Context, s logical.Storage, name string) error {
	return remove(ctx, s, OrderPrefix, name, "order of certificate")
}
