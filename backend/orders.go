package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// OrderPrefix is where an order in flight is recorded, per certificate name, from the moment the
// CA created it until its certificate is stored. Seal-wrapped: entries hold the new certificate's
// private key. After a crash, the next attempt resumes the recorded order instead of ordering again.
const OrderPrefix = "orders/"

// orderRecord is an order in flight.
type orderRecord struct {
	OrderURL   string    `json:"order_url"`
	Generation int64     `json:"generation"`
	PrivateKey string    `json:"private_key"`
	Domains    []string  `json:"domains"`
	CreatedAt  time.Time `json:"created_at"`
}

func loadOrder(ctx context.Context, s logical.Storage, name string) (*orderRecord, error) {
	e, err := s.Get(ctx, OrderPrefix+name)
	if err != nil || e == nil {
		return nil, err
	}
	var o orderRecord
	if err := e.DecodeJSON(&o); err != nil {
		return nil, fmt.Errorf("decode order of %q: %w", name, err)
	}
	return &o, nil
}

func storeOrder(ctx context.Context, s logical.Storage, name string, o *orderRecord) error {
	e, err := logical.StorageEntryJSON(OrderPrefix+name, o)
	if err != nil {
		return err
	}
	return s.Put(ctx, e)
}

func deleteOrder(ctx context.Context, s logical.Storage, name string) error {
	return s.Delete(ctx, OrderPrefix+name)
}
