package backend

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/mitchellh/mapstructure"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// walKindDNSRecord marks a DNS-01 record that was presented and must be removed if the plugin
// dies before cleaning it up.
const walKindDNSRecord = "dns-record"

// walRollbackMinAge is how old a WAL entry must be before Vault's rollback manager hands it to
// walRollback. Entries of this very instance whose job still runs are kept; any other is rolled
// back, so a record left by a killed plugin process goes within a rollback tick or two.
const walRollbackMinAge = 30 * time.Second

// walStaleAge is when a record of this instance is rolled back even if it looks in use.
const walStaleAge = 45 * time.Minute

// dnsRecordWAL is the WAL entry of a presented DNS-01 record. KeyAuth is the ACME key
// authorization (token + account thumbprint): not a secret, but never logged.
type dnsRecordWAL struct {
	Cert      string `mapstructure:"cert"`
	DNSConfig string `mapstructure:"dns_config"`
	Domain    string `mapstructure:"domain"`
	Token     string `mapstructure:"token"`
	KeyAuth   string `mapstructure:"key_auth"`
	Instance  string `mapstructure:"instance"`
	CreatedAt int64  `mapstructure:"created_at"`
}

// walSolver records every presented record in the WAL and deletes the entry once the record is
// cleaned up.
type walSolver struct {
	b      *backend
	cert   string
	config string
	inner  solvers.Solver
	mu     sync.Mutex
	ids    map[string]string // domain+token → WAL id
}

func (b *backend) walSolver(cert, config string, inner solvers.Solver) solvers.Solver {
	return &walSolver{b: b, cert: cert, config: config, inner: inner, ids: map[string]string{}}
}

func (w *walSolver) Present(ctx context.Context, domain, token, keyAuth string) error {
	id, err := framework.PutWAL(ctx, w.b.storage, walKindDNSRecord, map[string]any{
		"cert": w.cert, "dns_config": w.config, "domain": domain, "token": token, "key_auth": keyAuth,
		"instance": w.b.instance, "created_at": time.Now().Unix(),
	})
	if err != nil {
		return fmt.Errorf("record the DNS record in the WAL: %w", err)
	}
	w.mu.Lock()
	w.ids[domain+"\x00"+token] = id
	w.mu.Unlock()
	return w.inner.Present(ctx, domain, token, keyAuth)
}

func (w *walSolver) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	if err := w.inner.CleanUp(ctx, domain, token, keyAuth); err != nil {
		w.b.logger.Named("dns").Warn("removing a challenge record failed; the WAL rollback retries", "cert", w.cert, "domain", domain, "error", err)
		return err
	}
	w.mu.Lock()
	id := w.ids[domain+"\x00"+token]
	delete(w.ids, domain+"\x00"+token)
	w.mu.Unlock()
	if id != "" {
		return framework.DeleteWAL(ctx, w.b.storage, id)
	}
	return nil
}

func (w *walSolver) WaitPropagation(ctx context.Context, domain, keyAuth string) error {
	return w.inner.WaitPropagation(ctx, domain, keyAuth)
}

// walRollback removes a DNS record left behind. It takes no lock: the record is identified by its
// token, which no later attempt reuses. An entry of this instance is kept while its certificate's
// job still runs (the forward path cleans up itself).
func (b *backend) walRollback(ctx context.Context, req *logical.Request, kind string, data any) error {
	if kind != walKindDNSRecord {
		return nil
	}
	var e dnsRecordWAL
	if err := mapstructure.WeakDecode(data, &e); err != nil {
		return fmt.Errorf("decode DNS record WAL entry: %w", err)
	}
	if e.Instance == b.instance && b.inFlight(e.Cert) && time.Since(time.Unix(e.CreatedAt, 0)) < walStaleAge {
		return fmt.Errorf("the record for %s is still in use", e.Domain)
	}
	cfg, err := storage.LoadDNSConfig(ctx, req.Storage, e.DNSConfig)
	if err != nil {
		return err
	}
	if cfg == nil {
		// The configuration is gone: nothing can remove the record any more.
		b.logger.Named("dns").Warn("a challenge record was left behind and its DNS configuration is deleted", "domain", e.Domain, "dns_config", e.DNSConfig)
		return nil
	}
	solver, err := b.solvers.Solver(ctx, e.DNSConfig, solverConfig(cfg))
	if err != nil {
		return err
	}
	if err := solver.CleanUp(ctx, e.Domain, e.Token, e.KeyAuth); err != nil {
		return fmt.Errorf("remove the challenge record for %s: %w", e.Domain, err)
	}
	b.logger.Named("dns").Info("removed a challenge record left behind", "domain", e.Domain, "dns_config", e.DNSConfig)
	return nil
}
