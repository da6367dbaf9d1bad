package backend

import (
	"context"
	"time"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// httpSolver answers HTTP-01 challenges from Vault itself: it stores each key authorization under
// its token (storage.HTTPChallengePrefix), where the unauthenticated challenge/<token> path of
// any node of the cluster finds it for the reverse proxy that forwards
// /.well-known/acme-challenge/ to Vault.
type httpSolver struct {
	b    *backend
	cert string
}

func (s *httpSolver) Present(ctx context.Context, identifier, token, keyAuth string) error {
	return storage.StoreHTTPChallenge(ctx, s.b.storage, token, &storage.HTTPChallengeEntry{
		KeyAuthorization: keyAuth, Cert: s.cert, Identifier: identifier, CreatedAt: time.Now().UTC(),
	})
}

func (s *httpSolver) CleanUp(ctx context.Context, _, token string) error {
	return storage.DeleteHTTPChallenge(ctx, s.b.storage, token)
}

// sweepHTTPChallenges removes key authorizations older than storage.HTTPChallengeTTL: answers
// left behind when the plugin stopped between presenting and cleaning up.
func (b *backend) sweepHTTPChallenges(ctx context.Context, now time.Time) {
	tokens, err := b.storage.List(ctx, storage.HTTPChallengePrefix)
	if err != nil {
		return
	}
	for _, t := range tokens {
		e, err := storage.LoadHTTPChallenge(ctx, b.storage, t)
		if err == nil && e != nil && e.Expired(now) {
			_ = storage.DeleteHTTPChallenge(ctx, b.storage, t)
		}
	}
}
