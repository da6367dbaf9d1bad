package backend

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/vault/sdk/helper/useragent"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// cachedClient is an ACME client for one stored account, valid while the account's fingerprint
// (directory, roots, key, URL) is unchanged.
type cachedClient struct {
	fingerprint string
	client      ACMEClient
	// previous is the fingerprint the client had before a key rollover it made (which changed
	// its key in place): a job that loaded the account before the rollover gets the same client.
	previous string
}

func accountFingerprint(a *storage.AccountEntry) string {
	h := sha256.New()
	for _, s := range []string{a.DirectoryURL, a.CABundle, a.AccountURL, a.PrivateKey} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// clientOptions are the options of every ACME client of this mount. The User-Agent names Vault's
// version and this plugin's (useragent.PluginString), as CAs ask clients to identify themselves.
func (b *backend) clientOptions() acme.Options {
	b.userAgentOnce.Do(func() {
		plugin := "vault-plugin-secrets-letsencrypt/" + Version
		b.userAgent = plugin
		if env, err := b.System().PluginEnv(b.ctx); err == nil {
			if ua := useragent.PluginString(env, plugin); ua != "" {
				b.userAgent = ua
			}
		}
	})
	return acme.Options{UserAgent: b.userAgent}
}

// accountClient returns the cached client of the named account, dialing the CA when needed.
func (b *backend) accountClient(name string, a *storage.AccountEntry) (ACMEClient, error) {
	fp := accountFingerprint(a)
	b.clientsMu.Lock()
	if c := b.clients[name]; c != nil && (c.fingerprint == fp || c.previous == fp) {
		b.clientsMu.Unlock()
		return c.client, nil
	}
	b.clientsMu.Unlock()

	key, err := acme.ParseKey(a.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("account %q: stored key: %w", name, err)
	}
	client, err := b.dial(acme.Account{DirectoryURL: a.DirectoryURL, CABundle: a.CABundle, Key: key, URL: a.AccountURL}, b.clientOptions())
	if err != nil {
		return nil, err
	}
	b.clientsMu.Lock()
	defer b.clientsMu.Unlock()
	if old := b.clients[name]; old != nil {
		if old.fingerprint == fp {
			client.Close()
			return old.client, nil
		}
		old.client.Close()
	}
	b.clients[name] = &cachedClient{fingerprint: fp, client: client}
	return client, nil
}

// RegisterAccount registers a new account at its CA. Nothing is cached or stored.
func (b *backend) RegisterAccount(ctx context.Context, a *storage.AccountEntry, key crypto.Signer, reg acme.Registration) (string, string, error) {
	client, err := b.dial(acme.Account{DirectoryURL: a.DirectoryURL, CABundle: a.CABundle, Key: key}, b.clientOptions())
	if err != nil {
		return "", "", err
	}
	defer client.Close()
	return client.Register(ctx, reg)
}

// UpdateAccountContact changes a registered account's contact at its CA.
func (b *backend) UpdateAccountContact(ctx context.Context, name string, a *storage.AccountEntry, contact []string) error {
	client, err := b.accountClient(name, a)
	if err != nil {
		return err
	}
	return client.UpdateContact(ctx, contact)
}

// AccountChanged forgets the cached client of the named account.
func (b *backend) AccountChanged(name string) {
	b.clientsMu.Lock()
	c := b.clients[name]
	delete(b.clients, name)
	b.clientsMu.Unlock()
	if c != nil {
		c.client.Close()
	}
}

// CheckDNSConfig builds the provider of cfg in isolation to report configuration errors.
func (b *backend) CheckDNSConfig(ctx context.Context, cfg *storage.DNSConfigEntry) error {
	return b.solvers.Check(ctx, solverConfig(cfg))
}

// solverConfig returns a stored DNS configuration in the form the solvers package takes.
func solverConfig(c *storage.DNSConfigEntry) solvers.DNSConfig {
	return solvers.DNSConfig{
		Provider: c.Provider, Credentials: maps.Clone(c.Credentials), Resolvers: slices.Clone(c.Resolvers), Zones: slices.Clone(c.Zones), DelegatedDomains: slices.Clone(c.DelegatedDomains),
		PropagationTimeout: c.PropagationTimeout, PollingInterval: c.PollingInterval, TTL: c.TTL,
	}
}

// DNSConfigChanged stops the solver process of the named configuration.
func (b *backend) DNSConfigChanged(name string) { b.solvers.Evict(name) }
