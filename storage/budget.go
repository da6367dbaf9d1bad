package storage

import (
	"context"
	"encoding/json"

	"github.com/hashicorp/vault/sdk/logical"
)

// BudgetKey holds the mount's order budget (what the CA's limits have left), so a restart does
// not forget the orders just placed. The value is the budget package's State as JSON; storage
// does not interpret it. Not seal-wrapped: it holds counts and names, no secrets.
const BudgetKey = "budget/state"

// LoadBudget returns the stored order budget state, or nil.
func LoadBudget(ctx context.Context, s logical.Storage) (json.RawMessage, error) {
	raw, err := load[json.RawMessage](ctx, s, BudgetKey, "", "order budget")
	if raw == nil || err != nil {
		return nil, err
	}
	return *raw, nil
}

// StoreBudget writes the order budget state.
func StoreBudget(ctx context.Context, s logical.Storage, state any) error {
	return store(ctx, s, BudgetKey, "", "order budget", state)
}
