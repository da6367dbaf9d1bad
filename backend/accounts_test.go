package backend

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// The plain fake client has no account lifecycle; lifecycleCA's clients do.
func (c *fakeClient) LookupAccount(context.Context) (acme.AccountInfo, error) {
	return acme.AccountInfo{}, errors.New("fake client: no account lookup")
}
func (c *fakeClient) RolloverKey(context.Context, crypto.Signer) error {
	return errors.New("fake client: no key rollover")
}
func (c *fakeClient) Deactivate(context.Context) error {
	return errors.New("fake client: no deactivation")
}

// lifecycleCA adds accounts with keys to fakeCA: which key owns which account URL, key changes and
// deactivation. Its clients' orders fail when signed with a key that does not own the account,
// as at a real CA.
type lifecycleCA struct {
	*fakeCA
	mu            sync.Mutex
	owner         map[string]string // account URL -> fingerprint of its key
	status        map[string]string // account URL -> status
	contact       map[string][]string
	dials         int
	registrations int
	rollovers     int
	deactivations int
	// rolloverErr fails the next key change; with rolloverApplies the CA takes the key anyway
	// (its answer was lost).
	rolloverErr     error
	rolloverApplies bool
	// lookupErr fails lookups (the CA is unreachable).
	lookupErr error
}

func newLifecycleCA(t *testing.T) *lifecycleCA {
	return &lifecycleCA{fakeCA: newFakeCA(t), owner: map[string]string{}, status: map[string]string{}, contact: map[string][]string{}}
}

func fingerprint(k crypto.Signer) string {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(der)
}

type lifecycleClient struct {
	fakeClient
	lc  *lifecycleCA
	mu  sync.Mutex
	key crypto.Signer
	url string
}

func (lc *lifecycleCA) dial(a acme.Account, _ acme.Options) (ACMEClient, error) {
	lc.mu.Lock()
	lc.dials++
	lc.mu.Unlock()
	return &lifecycleClient{fakeClient: fakeClient{ca: lc.fakeCA}, lc: lc, key: a.Key, url: a.URL}, nil
}

func (c *lifecycleClient) Register(_ context.Context, reg acme.Registration) (string, string, error) {
	c.lc.mu.Lock()
	defer c.lc.mu.Unlock()
	c.lc.registrations++
	u := "https://ca.test/acct/" + strconv.Itoa(len(c.lc.owner)+1)
	c.lc.owner[u], c.lc.status[u], c.lc.contact[u] = fingerprint(c.key), "valid", reg.Contact
	c.mu.Lock()
	c.url = u
	c.mu.Unlock()
	return u, "valid", nil
}

func (c *lifecycleClient) LookupAccount(context.Context) (acme.AccountInfo, error) {
	c.lc.mu.Lock()
	defer c.lc.mu.Unlock()
	if c.lc.lookupErr != nil {
		return acme.AccountInfo{}, c.lc.lookupErr
	}
	for u, fp := range c.lc.owner {
		if fp == fingerprint(c.key) {
			c.mu.Lock()
			c.url = u
			c.mu.Unlock()
			return acme.AccountInfo{URL: u, Status: c.lc.status[u], Contact: c.lc.contact[u]}, nil
		}
	}
	return acme.AccountInfo{}, fmt.Errorf("%w: %w", acme.ErrAccountNotFound,
		&acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:accountDoesNotExist", Detail: "no account for this key"})
}

func (c *lifecycleClient) UpdateContact(_ context.Context, contact []string) error {
	c.lc.mu.Lock()
	defer c.lc.mu.Unlock()
	c.lc.contact[c.url] = contact
	return nil
}

// signer returns the client's key and account URL.
func (c *lifecycleClient) signer() (crypto.Signer, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.key, c.url
}

func (c *lifecycleClient) RolloverKey(_ context.Context, newKey crypto.Signer) error {
	key, u := c.signer()
	c.lc.mu.Lock()
	defer c.lc.mu.Unlock()
	if c.lc.owner[u] != fingerprint(key) {
		return &acme.Error{Kind: acme.ErrRejected, Detail: "JWS verification error"}
	}
	if err := c.lc.rolloverErr; err != nil {
		c.lc.rolloverErr = nil
		if c.lc.rolloverApplies {
			c.lc.owner[u] = fingerprint(newKey)
			c.lc.rollovers++
		}
		return err
	}
	c.lc.owner[u] = fingerprint(newKey)
	c.lc.rollovers++
	c.mu.Lock()
	c.key = newKey
	c.mu.Unlock()
	return nil
}

func (c *lifecycleClient) Deactivate(context.Context) error {
	_, u := c.signer()
	c.lc.mu.Lock()
	defer c.lc.mu.Unlock()
	c.lc.status[u] = "deactivated"
	c.lc.deactivations++
	return nil
}

func (c *lifecycleClient) Obtain(ctx context.Context, req acme.OrderRequest, policy acme.PollPolicy) (*acme.Certificate, error) {
	key, u := c.signer()
	c.lc.mu.Lock()
	owns, status := c.lc.owner[u] == fingerprint(key), c.lc.status[u]
	c.lc.mu.Unlock()
	if !owns {
		return nil, &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:malformed", Detail: "JWS verification error"}
	}
	if status != "valid" {
		return nil, &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:unauthorized", Detail: "account is " + status}
	}
	return c.fakeClient.Obtain(ctx, req, policy)
}

func getLifecycleBackend(t *testing.T) (*backend, logical.Storage, *lifecycleCA) {
	t.Helper()
	lc := newLifecycleCA(t)
	b := newTestBackend(t, &logical.InmemStorage{}, Options{Dial: lc.dial, Solvers: &fakeSolvers{}})
	s := b.storage
	setup(t, b, s)
	return b, s, lc
}

func loadAcct(t *testing.T, s logical.Storage, name string) *storage.AccountEntry {
	t.Helper()
	a, err := storage.LoadAccount(context.Background(), s, name)
	require.NoError(t, err)
	require.NotNil(t, a)
	return a
}

func loadCertEntry(t *testing.T, s logical.Storage, name string) *storage.CertEntry {
	t.Helper()
	c, err := storage.LoadCert(context.Background(), s, name)
	require.NoError(t, err)
	require.NotNil(t, c)
	return c
}

func issueWeb(t *testing.T, b *backend, s logical.Storage, name string) *logical.Response {
	t.Helper()
	return request(t, b, s, logical.UpdateOperation, "certs/"+name, map[string]any{"role": "web", "domains": name + ".example.com"})
}

func TestImportAccount(t *testing.T) {
	b, s, lc := getLifecycleBackend(t)
	main := loadAcct(t, s, "main")
	base := func(extra map[string]any) map[string]any {
		d := map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true, "private_key": main.PrivateKey}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}

	// The key of a known account with its URL: confirmed, nothing registered.
	resp := request(t, b, s, logical.CreateOperation, "accounts/again", base(map[string]any{"account_url": main.AccountURL}))
	require.False(t, resp.IsError(), "%v", resp.Error())
	require.Equal(t, main.AccountURL, resp.Data["account_url"])
	require.Equal(t, []string{"ops@example.com"}, resp.Data["contact"], "the CA's contact")
	require.Equal(t, 1, lc.registrations)

	// The same key with another URL: refused, saying both.
	resp = request(t, b, s, logical.CreateOperation, "accounts/wrong", base(map[string]any{"account_url": "https://ca.test/acct/99"}))
	require.True(t, resp.IsError())
	require.Contains(t, resp.Error().Error(), `the CA says this key's account is "https://ca.test/acct/1", not "https://ca.test/acct/99"`)

	// An unknown key with a URL: refused; without: registered.
	other, err := acme.EC256.Generate()
	require.NoError(t, err)
	otherPEM, _ := acme.EncodeKey(other)
	resp = request(t, b, s, logical.CreateOperation, "accounts/unknown", base(map[string]any{"private_key": otherPEM, "account_url": "https://ca.test/acct/1"}))
	require.True(t, resp.IsError())
	require.Contains(t, resp.Error().Error(), "check that private_key is this account's key")
	require.Equal(t, 1, lc.registrations)
	resp = request(t, b, s, logical.CreateOperation, "accounts/fresh", base(map[string]any{"private_key": otherPEM, "contact": "new@example.com"}))
	require.False(t, resp.IsError(), "%v", resp.Error())
	require.Equal(t, "https://ca.test/acct/2", resp.Data["account_url"])
	require.Equal(t, 2, lc.registrations)

	// A known key with a new contact: adopted, the contact updated at the CA.
	resp = request(t, b, s, logical.CreateOperation, "accounts/recontact", base(map[string]any{"contact": "changed@example.com"}))
	require.False(t, resp.IsError(), "%v", resp.Error())
	require.Equal(t, []string{"changed@example.com"}, lc.contact[main.AccountURL])
	for _, n := range []string{"wrong", "unknown"} {
		a, err := storage.LoadAccount(context.Background(), s, n)
		require.NoError(t, err)
		require.Nil(t, a, "a refused import stores nothing")
	}
}

func TestRolloverAccountKey(t *testing.T) {
	b, s, lc := getLifecycleBackend(t)
	resp := issueWeb(t, b, s, "web-a")
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])
	before := loadAcct(t, s, "main")
	client, err := b.accountClient("main", before)
	require.NoError(t, err)
	dials := lc.dials

	resp = request(t, b, s, logical.UpdateOperation, "accounts/main/rollover", map[string]any{"key_type": "ec384"})
	require.False(t, resp.IsError(), "%v", resp.Error())
	require.Equal(t, "ec384", resp.Data["key_type"])
	after := loadAcct(t, s, "main")
	require.Empty(t, after.PendingKey)
	require.Equal(t, before.AccountURL, after.AccountURL)
	newKey, err := acme.ParseKey(after.PrivateKey)
	require.NoError(t, err)
	require.Equal(t, fingerprint(newKey), lc.owner[before.AccountURL], "the stored key is the CA's")

	// The client that made the change is the account's client for the new entry and for jobs that
	// loaded the old one: nothing is dialed again, and orders go on with the new key.
	for _, a := range []*storage.AccountEntry{before, after} {
		c, err := b.accountClient("main", a)
		require.NoError(t, err)
		require.Same(t, client, c)
	}
	require.Equal(t, dials, lc.dials)
	resp = request(t, b, s, logical.UpdateOperation, "renew/web-a", map[string]any{"wait": 10})
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])
	c := loadCertEntry(t, s, "web-a")
	require.Zero(t, c.Attempts)
	require.Equal(t, 1, c.Renewals)
	resp = issueWeb(t, b, s, "web-b")
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])

	// After a restart (a new backend over the same storage) the stored key works too.
	b2 := newTestBackend(t, s, Options{Dial: lc.dial, Solvers: &fakeSolvers{}})
	resp = request(t, b2, s, logical.UpdateOperation, "renew/web-b", map[string]any{"wait": 10})
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])
}

func TestRolloverAccountKeyRefused(t *testing.T) {
	b, s, lc := getLifecycleBackend(t)
	before := loadAcct(t, s, "main")
	lc.rolloverErr = &acme.Error{Kind: acme.ErrRejected, Detail: "badPublicKey"}
	resp := request(t, b, s, logical.UpdateOperation, "accounts/main/rollover", nil)
	require.True(t, resp.IsError())
	require.Contains(t, resp.Error().Error(), "badPublicKey")
	require.Equal(t, before, loadAcct(t, s, "main"), "a refused key change leaves the account as it was, no pending key")
	resp = issueWeb(t, b, s, "web-a")
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])

	// Given up before the key change was sent (validations in flight outlasted the request).
	lc.rolloverErr = fmt.Errorf("%w: it waited: %w", acme.ErrKeyChangeNotSent, context.DeadlineExceeded)
	_, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "accounts/main/rollover", Storage: s})
	var coded logical.HTTPCodedError
	require.ErrorAs(t, err, &coded)
	require.Equal(t, http.StatusGatewayTimeout, coded.Code())
	require.Equal(t, before, loadAcct(t, s, "main"), "nothing was sent: no pending key to settle")
}

// The CA's answer to the key change is lost: the pending key stays stored, and the next issuance
// asks the CA which key owns the account and keeps that one.
func TestRolloverAccountKeyOutcomeUnknown(t *testing.T) {
	for _, applied := range []bool{true, false} {
		t.Run(fmt.Sprintf("applied=%v", applied), func(t *testing.T) {
			b, s, lc := getLifecycleBackend(t)
			before := loadAcct(t, s, "main")
			lc.rolloverErr, lc.rolloverApplies = &acme.Error{Kind: acme.ErrUnreachable}, applied
			_, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "accounts/main/rollover", Storage: s})
			var coded logical.HTTPCodedError
			require.ErrorAs(t, err, &coded)
			require.Equal(t, http.StatusBadGateway, coded.Code())
			pending := loadAcct(t, s, "main")
			require.NotEmpty(t, pending.PendingKey)
			require.Equal(t, before.PrivateKey, pending.PrivateKey)

			resp := issueWeb(t, b, s, "web-a")
			require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])
			settled := loadAcct(t, s, "main")
			require.Empty(t, settled.PendingKey)
			if applied {
				require.Equal(t, pending.PendingKey, settled.PrivateKey, "the CA holds the new key: adopted")
			} else {
				require.Equal(t, before.PrivateKey, settled.PrivateKey, "the CA kept the old key")
			}
		})
	}
}

// A crash after the CA accepted the key but before it was stored: the entry holds the pending key,
// and the first attempt afterwards adopts it. While the CA cannot be asked, the stored key is used.
func TestPendingKeyAfterCrash(t *testing.T) {
	b, s, lc := getLifecycleBackend(t)
	a := loadAcct(t, s, "main")
	newKey, err := acme.EC256.Generate()
	require.NoError(t, err)
	a.PendingKey, _ = acme.EncodeKey(newKey)
	require.NoError(t, storage.StoreAccount(context.Background(), s, "main", a))
	lc.owner[a.AccountURL] = fingerprint(newKey)

	lc.lookupErr = &acme.Error{Kind: acme.ErrUnreachable}
	_, err = b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "accounts/main/rollover", Storage: s})
	require.ErrorContains(t, err, "an earlier key rollover of account \"main\" is unfinished")
	require.Equal(t, a.PendingKey, loadAcct(t, s, "main").PendingKey)

	lc.lookupErr = nil
	b.AccountChanged("main")
	resp := issueWeb(t, b, s, "web-a")
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])
	settled := loadAcct(t, s, "main")
	require.Empty(t, settled.PendingKey)
	require.Equal(t, a.PendingKey, settled.PrivateKey)
}

func TestDeactivateAccount(t *testing.T) {
	b, s, lc := getLifecycleBackend(t)
	resp := issueWeb(t, b, s, "web-a")
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])
	orders := lc.orders.Load()

	resp = request(t, b, s, logical.UpdateOperation, "accounts/main/deactivate", nil)
	require.False(t, resp.IsError(), "%v", resp.Error())
	require.Equal(t, "deactivated", resp.Data["status"])
	require.Equal(t, 1, lc.deactivations)
	require.Equal(t, storage.AccountStatusDeactivated, loadAcct(t, s, "main").Status)

	// Issuance and renewal now fail before the CA is asked, with a last_error that says why.
	resp = request(t, b, s, logical.UpdateOperation, "renew/web-a", map[string]any{"wait": 10})
	require.Contains(t, resp.Data["last_error"], `account "main" of role "web" is deactivated at its CA: point the role at another account`)
	require.Equal(t, 1, loadCertEntry(t, s, "web-a").Attempts)
	request(t, b, s, logical.UpdateOperation, "certs/web-b", map[string]any{"role": "web", "domains": "b.example.com", "wait": 10})
	c := loadCertEntry(t, s, "web-b")
	require.Equal(t, storage.StatusFailed, c.Status)
	require.Contains(t, c.LastError, `account "main" of role "web" is deactivated at its CA`)
	require.Equal(t, orders, lc.orders.Load(), "no order")
}
