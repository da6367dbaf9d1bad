package backend

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// ErrAccountURLMismatch is matched by ImportAccount's error when the CA's account for the
// imported key is not the account_url given with it.
var ErrAccountURLMismatch = errors.New("the CA's account for this private_key is not account_url")

// ImportAccount finds the account of an imported key at its CA. With a.AccountURL set (certbot's
// regr.json "uri") the CA must confirm that the key owns that URL, and nothing is registered;
// without, an account the CA knows for the key is adopted, and only a key the CA does not know is
// registered with reg. An adopted account gets reg's contact when reg has one that differs from the
// CA's; otherwise the CA's contact is returned. Nothing is stored or cached.
func (b *backend) ImportAccount(ctx context.Context, a *storage.AccountEntry, key crypto.Signer, reg acme.Registration) (acme.AccountInfo, error) {
	client, err := b.dial(acme.Account{DirectoryURL: a.DirectoryURL, CABundle: a.CABundle, Key: key}, b.clientOptions())
	if err != nil {
		return acme.AccountInfo{}, err
	}
	defer client.Close()
	info, err := client.LookupAccount(ctx)
	switch {
	case errors.Is(err, acme.ErrAccountNotFound) && a.AccountURL != "":
		return acme.AccountInfo{}, fmt.Errorf("%w (%w): check that private_key is this account's key and directory_url its CA "+
			"(certbot: accounts/<CA>/directory/<id>/private_key.json and regr.json of the same <id>)", acme.ErrAccountNotFound, err)
	case errors.Is(err, acme.ErrAccountNotFound):
		url, status, err := client.Register(ctx, reg)
		if err != nil {
			return acme.AccountInfo{}, err
		}
		return acme.AccountInfo{URL: url, Status: status, Contact: reg.Contact}, nil
	case err != nil:
		return acme.AccountInfo{}, err
	}
	if a.AccountURL != "" && info.URL != a.AccountURL {
		return acme.AccountInfo{}, fmt.Errorf("%w: the CA says this key's account is %q, not %q: give the regr.json \"uri\" "+
			"of the same certbot account as private_key, or leave account_url out", ErrAccountURLMismatch, info.URL, a.AccountURL)
	}
	if len(reg.Contact) > 0 && !sameSet(reg.Contact, info.Contact) {
		if err := client.UpdateContact(ctx, reg.Contact); err != nil {
			return acme.AccountInfo{}, fmt.Errorf("update the contact of the imported account: %w", err)
		}
		info.Contact = reg.Contact
	}
	return info, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// RolloverAccountKey replaces the key of the named account at its CA by newKey and stores it. The
// caller holds the account's lock; a is the account as stored.
//
// Storage is written so that a crash heals: newKey is stored as the account's pending key before
// the CA hears of it, and becomes the account's key (the pending key cleared) only once the CA has
// accepted it. If the process dies in between, or the CA's answer is lost, the next user of the
// account (loadAccount, or the next rollover or deactivation) asks the CA which key owns the
// account and keeps that one (settlePendingKey).
//
// The rollover runs on the account's cached client, the one every job of this account uses: the
// client changes its key in place once the CA accepted it (acme.Client.RolloverKey), so orders in
// flight go on with the new key, and the cache keeps serving it to jobs that loaded the account
// before the change.
func (b *backend) RolloverAccountKey(ctx context.Context, name string, a *storage.AccountEntry, newKey crypto.Signer) (*storage.AccountEntry, error) {
	log := b.logger.Named("accounts").With("account", name)
	a, err := b.settlePendingKey(ctx, name, a)
	if err != nil {
		return nil, fmt.Errorf("an earlier key rollover of account %q is unfinished and the CA cannot tell now which key it holds; try again later: %w", name, err)
	}
	kt, err := acme.KeyTypeOf(newKey)
	if err != nil {
		return nil, err
	}
	newPEM, err := acme.EncodeKey(newKey)
	if err != nil {
		return nil, err
	}
	client, err := b.accountClient(name, a)
	if err != nil {
		return nil, err
	}
	pending := *a
	pending.PendingKey = newPEM
	if err := storage.StoreAccount(ctx, b.storage, name, &pending); err != nil {
		return nil, err
	}
	if err := client.RolloverKey(ctx, newKey); err != nil {
		if errors.Is(err, acme.ErrRejected) || errors.Is(err, acme.ErrKeyChangeNotSent) || isValidation(err) {
			// The CA refused it for certain: nothing to settle later.
			if serr := storage.StoreAccount(context.WithoutCancel(ctx), b.storage, name, a); serr != nil {
				log.Warn("clearing the refused pending key failed; it is settled at the next use", "error", serr)
			}
		} else {
			log.Warn("key rollover outcome unknown; the pending key is settled at the next use", "error", err)
		}
		return nil, err
	}
	final := *a
	final.PrivateKey, final.KeyType, final.PendingKey = newPEM, string(kt), ""
	b.clientRekeyed(name, client, accountFingerprint(a), accountFingerprint(&final))
	if err := storage.StoreAccount(context.WithoutCancel(ctx), b.storage, name, &final); err != nil {
		return nil, fmt.Errorf("the CA accepted the new key of account %q, but storing it failed (the stored pending key is adopted at the next use): %w", name, err)
	}
	log.Info("account key rolled over", "key_type", string(kt))
	return &final, nil
}

func isValidation(err error) bool {
	var ve *acme.ValidationError
	return errors.As(err, &ve)
}

// clientRekeyed records that client, the cached client of the named account, now signs with the
// key of fingerprint fp (it had previous before).
func (b *backend) clientRekeyed(name string, client ACMEClient, previous, fp string) {
	b.clientsMu.Lock()
	defer b.clientsMu.Unlock()
	if c := b.clients[name]; c != nil && c.client == client {
		c.fingerprint, c.previous = fp, previous
	}
}

// DeactivateAccount deactivates the named account at its CA and stores its status. The caller
// holds the account's lock; a is the account as stored.
func (b *backend) DeactivateAccount(ctx context.Context, name string, a *storage.AccountEntry) (*storage.AccountEntry, error) {
	if settled, err := b.settlePendingKey(ctx, name, a); err == nil {
		a = settled
	}
	client, err := b.accountClient(name, a)
	if err != nil {
		return nil, err
	}
	if err := client.Deactivate(ctx); err != nil {
		return nil, err
	}
	updated := *a
	updated.Status = storage.AccountStatusDeactivated
	if err := storage.StoreAccount(context.WithoutCancel(ctx), b.storage, name, &updated); err != nil {
		return nil, fmt.Errorf("account %q is deactivated at its CA, but storing its status failed: %w", name, err)
	}
	b.AccountChanged(name)
	b.logger.Named("accounts").Info("account deactivated", "account", name)
	return &updated, nil
}

// loadAccount loads the named account for an issuance attempt, settling the pending key of an
// unfinished rollover first (under the account's lock, so it waits for a rollover in progress).
func (b *backend) loadAccount(ctx context.Context, name string) (*storage.AccountEntry, error) {
	a, err := storage.LoadAccount(ctx, b.storage, name)
	if err != nil || a == nil || a.PendingKey == "" {
		return a, err
	}
	lock := b.locks.For(storage.AccountPrefix, name)
	lock.Lock()
	defer lock.Unlock()
	if a, err = storage.LoadAccount(ctx, b.storage, name); err != nil || a == nil {
		return a, err
	}
	settled, err := b.settlePendingKey(ctx, name, a)
	if err != nil {
		// Go on with the stored key: if the CA holds the new one the attempt fails and is
		// retried with backoff, settling again.
		b.logger.Named("accounts").Warn("cannot settle the pending key of an unfinished key rollover yet", "account", name, "error", err)
		return a, nil
	}
	return settled, nil
}

// settlePendingKey resolves the pending key of an unfinished key rollover (see
// RolloverAccountKey): it asks the CA whether the pending key owns the account, keeps the key
// that does and stores the result. The caller holds the account's lock. An error means the CA
// could not tell; a is then unchanged.
func (b *backend) settlePendingKey(ctx context.Context, name string, a *storage.AccountEntry) (*storage.AccountEntry, error) {
	if a.PendingKey == "" {
		return a, nil
	}
	log := b.logger.Named("accounts").With("account", name)
	settled := *a
	settled.PendingKey = ""
	key, err := acme.ParseKey(a.PendingKey)
	if err == nil {
		var client ACMEClient
		if client, err = b.dial(acme.Account{DirectoryURL: a.DirectoryURL, CABundle: a.CABundle, Key: key}, b.clientOptions()); err != nil {
			return a, err
		}
		info, lerr := client.LookupAccount(ctx)
		client.Close()
		switch {
		case lerr == nil && info.URL == a.AccountURL:
			kt, _ := acme.KeyTypeOf(key)
			settled.PrivateKey, settled.KeyType = a.PendingKey, string(kt)
			log.Info("the CA holds the key of the unfinished rollover: adopted", "key_type", string(kt))
		case lerr == nil, errors.Is(lerr, acme.ErrAccountNotFound):
			log.Info("the CA did not take the key of the unfinished rollover: the account keeps its key")
		default:
			return a, lerr
		}
	}
	if err := storage.StoreAccount(ctx, b.storage, name, &settled); err != nil {
		return a, err
	}
	b.AccountChanged(name)
	return &settled, nil
}
