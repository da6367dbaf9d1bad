package storage

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// HTTPChallengePrefix is where the HTTP-01 key authorizations of orders in flight live, under
// their tokens, so that any node of a cluster can answer the CA (challenge/<token>). Not
// seal-wrapped: a key authorization is public by design (the CA fetches it over plain HTTP).
const HTTPChallengePrefix = "challenges/http-01/"

// HTTPChallengeTTL bounds how long a stored key authorization is served: one left behind by a
// crash between presenting and cleaning up is ignored after it, and removed by the next sweep.
const HTTPChallengeTTL = time.Hour

// HTTPChallengeEntry is one HTTP-01 answer in flight.
type HTTPChallengeEntry struct {
	KeyAuthorization string    `json:"key_authorization"`
	Cert             string    `json:"cert"`
	Identifier       string    `json:"identifier"`
	CreatedAt        time.Time `json:"created_at"`
}

// Expired reports whether the entry is past HTTPChallengeTTL at now.
func (e *HTTPChallengeEntry) Expired(now time.Time) bool {
	return now.Sub(e.CreatedAt) > HTTPChallengeTTL
}

// LoadHTTPChallenge returns the answer stored for token, or nil. Callers validate token first
// (it becomes a storage key).
func LoadHTTPChallenge(ctx context.Context, s logical.Storage, token string) (*HTTPChallengeEntry, error) {
	return load[HTTPChallengeEntry](ctx, s, HTTPChallengePrefix, token, "HTTP-01 challenge")
}

// StoreHTTPChallenge writes the answer for token.
func StoreHTTPChallenge(ctx context.Context, s logical.Storage, token string, e *HTTPChallengeEntry) error {
	return store(ctx, s, HTTPChallengePrefix, token, "HTTP-01 challenge", e)
}

// DeleteHTTPChallenge removes the answer for token.
func DeleteHTTPChallenge(ctx context.Context, s logical.Storage, token string) error {
	return remove(ctx, s, HTTPChallengePrefix, token, "HTTP-01 challenge")
}
