package paths

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// caPEM returns a self-signed CA certificate (PEM), as a private CA's ca_bundle.
func caPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "test root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// keyPEM returns a new private key of type kt and its PEM (PKCS #8).
func keyPEM(t *testing.T, kt acme.KeyType) (crypto.Signer, string) {
	t.Helper()
	key, err := kt.Generate()
	require.NoError(t, err)
	p, err := acme.EncodeKey(key)
	require.NoError(t, err)
	return key, p
}

func samePublicKey(t *testing.T, a, b crypto.PublicKey) {
	t.Helper()
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	require.True(t, ok)
	require.True(t, eq.Equal(b), "different keys")
}

func loadAccount(t *testing.T, h *harness, name string) *storage.AccountEntry {
	t.Helper()
	a, err := storage.LoadAccount(context.Background(), h.s, name)
	require.NoError(t, err)
	return a
}

func TestAccountCreateReadList(t *testing.T) {
	h := newHarness(t)
	resp := h.ok(logical.CreateOperation, "accounts/main", map[string]any{
		"directory_url": "letsencrypt-staging", "terms_of_service_agreed": true,
		"contact": "mailto:ops@example.com, admin@example.com", "eab_kid": "kid-1", "eab_hmac_key": secret,
	})
	want := map[string]any{
		"directory_url": acme.LetsEncryptStagingURL, "contact": []string{"ops@example.com", "admin@example.com"},
		"key_type": "ec256", "terms_of_service_agreed": true, "eab_kid": "kid-1", "ca_bundle": "",
		"account_url": "https://ca.test/acct/1", "status": "valid",
		// Let's Encrypt's published limits by default for its directories.
		"order_limit": "300/3h", "domain_limit": "50/168h", "duplicate_limit": "5/168h", "failed_authorization_limit": "5/1h",
	}
	created := resp.Data["created_at"].(time.Time)
	require.WithinDuration(t, time.Now(), created, time.Minute)
	delete(resp.Data, "created_at")
	require.Equal(t, want, resp.Data)

	// The CA saw the registration, with the EAB HMAC key and a generated EC P-256 key.
	require.Equal(t, []string{acme.LetsEncryptStagingURL}, h.e.names("RegisterAccount"))
	require.Equal(t, acme.Registration{Contact: []string{"ops@example.com", "admin@example.com"}, TermsOfServiceAgreed: true,
		EABKeyID: "kid-1", EABHMACKey: secret}, h.e.registeredReg)
	kt, err := acme.KeyTypeOf(h.e.registeredKey)
	require.NoError(t, err)
	require.Equal(t, acme.EC256, kt)
	require.Equal(t, []string{"main"}, h.e.names("AccountChanged"))

	// The stored key is the registered key; the EAB HMAC key is stored nowhere.
	a := loadAccount(t, h, "main")
	key, err := acme.ParseKey(a.PrivateKey)
	require.NoError(t, err)
	samePublicKey(t, h.e.registeredKey.Public(), key.Public())
	require.Equal(t, "https://ca.test/acct/1", a.AccountURL)
	for k, v := range h.dump() {
		require.NotContains(t, v, secret, "%s stores the EAB HMAC key", k)
	}

	// A read returns the same fields, never the key.
	read := h.ok(logical.ReadOperation, "accounts/main", nil)
	require.NotContains(t, read.Data, "private_key")
	require.NotContains(t, read.Data, "eab_hmac_key")
	require.True(t, created.Equal(read.Data["created_at"].(time.Time)))
	delete(read.Data, "created_at")
	require.Equal(t, want, read.Data)

	h.account("second")
	list := h.ok(logical.ListOperation, "accounts/", nil)
	require.Equal(t, []string{"main", "second"}, list.Data["keys"])

	resp, err = h.do(logical.ReadOperation, "accounts/missing", nil)
	require.NoError(t, err)
	require.Nil(t, resp, "a missing account reads as 404")
}

func TestAccountImportKey(t *testing.T) {
	key, p := keyPEM(t, acme.EC384)
	for _, keyType := range []string{"", "EC384"} {
		t.Run("key_type="+keyType, func(t *testing.T) {
			h := newHarness(t)
			data := map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true, "private_key": p}
			if keyType != "" {
				data["key_type"] = keyType
			}
			resp := h.ok(logical.CreateOperation, "accounts/imported", data)
			require.Equal(t, "ec384", resp.Data["key_type"], "the key type is the imported key's")
			require.Equal(t, []string{"https://ca.test/dir"}, h.e.names("ImportAccount"), "an imported key is looked up, not registered blindly")
			require.Empty(t, h.e.names("RegisterAccount"))
			samePublicKey(t, key.Public(), h.e.lifecycle.importedKey.Public())
			stored, err := acme.ParseKey(loadAccount(t, h, "imported").PrivateKey)
			require.NoError(t, err)
			samePublicKey(t, key.Public(), stored.Public())
			require.NotContains(t, h.ok(logical.ReadOperation, "accounts/imported", nil).Data, "private_key")
		})
	}
	t.Run("key_type mismatch", func(t *testing.T) {
		h := newHarness(t)
		h.bad(nil, logical.CreateOperation, "accounts/imported", map[string]any{"directory_url": "https://ca.test/dir",
			"terms_of_service_agreed": true, "private_key": p, "key_type": "ec256"},
			`key_type "ec256" does not match the imported private_key, which is ec384`)
	})
}

func TestAccountCreateRefused(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true}
	}
	cases := []struct {
		name  string
		path  string
		set   map[string]any
		unset []string
		wants []string
	}{
		{name: "name too long", path: "accounts/" + strings.Repeat("a", 129), wants: []string{"account name is longer than 128"}},
		{name: "no directory_url", unset: []string{"directory_url"}, wants: []string{"directory_url is required"}},
		{name: "http directory_url", set: map[string]any{"directory_url": "http://ca.test/dir"}, wants: []string{`directory_url "http://ca.test/dir" is not an https URL`}},
		{name: "password in directory_url", set: map[string]any{"directory_url": "https://user:" + secret + "@ca.test/dir"},
			wants: []string{"directory_url must not hold a user name or password"}},
		{name: "terms missing", unset: []string{"terms_of_service_agreed"}, wants: []string{"terms_of_service_agreed must be true"}},
		{name: "terms false", set: map[string]any{"terms_of_service_agreed": false}, wants: []string{"terms_of_service_agreed must be true"}},
		{name: "contact not an address", set: map[string]any{"contact": "ops@example.com,not-an-email"},
			wants: []string{`contact "not-an-email" is not an e-mail address`}},
		{name: "contact with display name", set: map[string]any{"contact": "Ops <ops@example.com>"}, wants: []string{"is not an e-mail address"}},
		{name: "contact of 255 characters", set: map[string]any{"contact": strings.Repeat("a", 255-len("@example.com")) + "@example.com"}, wants: []string{"longer than 254"}},
		{name: "contact of 500 kB", set: map[string]any{"contact": strings.Repeat("a", 500_000) + "@example.com"}, wants: []string{"longer than 254"}},
		{name: "eleven contacts", set: map[string]any{"contact": strings.TrimSuffix(strings.Repeat("ops@example.com,", 11), ",")}, wants: []string{"more than 10"}},
		{name: "eab_kid alone", set: map[string]any{"eab_kid": "kid-1"}, wants: []string{"eab_kid and eab_hmac_key go together"}},
		{name: "eab_hmac_key alone", set: map[string]any{"eab_hmac_key": secret}, wants: []string{"eab_kid and eab_hmac_key go together"}},
		{name: "eab_hmac_key not base64url", set: map[string]any{"eab_kid": "kid-1", "eab_hmac_key": secret + "!*"},
			wants: []string{"eab_hmac_key is not base64url-encoded"}},
		{name: "unknown key_type", set: map[string]any{"key_type": "ec521"}, wants: []string{`key_type: unknown key type "ec521"`, "ec256"}},
		{name: "private_key not a key", set: map[string]any{"private_key": "-----BEGIN EC PRIVATE KEY-----\n" + secret + "\n-----END EC PRIVATE KEY-----\n"},
			wants: []string{"private_key: not a PEM-encoded private key"}},
		{name: "ca_bundle not PEM", set: map[string]any{"ca_bundle": "not a certificate"}, wants: []string{"ca_bundle is not a list of PEM certificates"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			data := base()
			for k, v := range tc.set {
				data[k] = v
			}
			for _, k := range tc.unset {
				delete(data, k)
			}
			path := tc.path
			if path == "" {
				path = "accounts/main"
			}
			h.bad(nil, logical.CreateOperation, path, data, tc.wants...)
			require.Empty(t, h.keys())
		})
	}

	t.Run("name of 128 characters", func(t *testing.T) {
		h := newHarness(t)
		name := strings.Repeat("a", 128)
		h.ok(logical.CreateOperation, "accounts/"+name, base())
		require.Equal(t, []string{"accounts/" + name}, h.keys())
	})
}

func TestAccountCAErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
		// code is the HTTP status of the error; 400 means a 400 response.
		code  int
		wants []string
	}{
		{name: "rejected", err: &acme.Error{Kind: acme.ErrRejected, Detail: "contact domain is invalid"}, code: http.StatusBadRequest,
			wants: []string{`register account "main" at https://ca.test/dir`, "contact domain is invalid"}},
		{name: "untrusted CA", err: &acme.Error{Kind: acme.ErrUntrustedCA}, code: http.StatusBadRequest, wants: []string{"not trusted"}},
		{name: "rate limited", err: &acme.Error{Kind: acme.ErrRateLimited, Detail: "too many new registrations", RetryAfter: 90 * time.Second},
			code: http.StatusInternalServerError, wants: []string{"too many new registrations", "retry after 1m30s"}},
		{name: "unreachable", err: &acme.Error{Kind: acme.ErrUnreachable, Detail: "503"}, code: http.StatusBadGateway, wants: []string{`register account "main"`}},
		{name: "deadline", err: fmt.Errorf("register: %w", context.DeadlineExceeded), code: http.StatusGatewayTimeout},
		{name: "canceled", err: context.Canceled, code: http.StatusGatewayTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.e.registerErr = tc.err
			data := map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true, "eab_kid": "k", "eab_hmac_key": secret}
			if tc.code == http.StatusBadRequest {
				h.bad([]string{"RegisterAccount"}, logical.CreateOperation, "accounts/main", data, tc.wants...)
			} else {
				err := h.fails(logical.CreateOperation, "accounts/main", data)
				require.Equal(t, tc.code, codeOf(err), err.Error())
				for _, w := range tc.wants {
					require.Contains(t, err.Error(), w)
				}
				if tc.name == "rate limited" {
					require.ErrorIs(t, err, logical.ErrUpstreamRateLimited)
				}
			}
			require.Empty(t, h.keys(), "nothing is stored when the CA refuses")
			require.Empty(t, h.e.names("AccountChanged"))
			require.Len(t, h.e.names("RegisterAccount"), 1)
		})
	}
}

func TestAccountUpdate(t *testing.T) {
	bundle := caPEM(t)
	newAccount := func(t *testing.T) *harness {
		h := newHarness(t)
		h.ok(logical.CreateOperation, "accounts/main", map[string]any{"directory_url": "https://ca.test/directory",
			"terms_of_service_agreed": true, "contact": "ops@example.com", "eab_kid": "kid-1", "eab_hmac_key": secret})
		h.e.reset()
		return h
	}

	t.Run("contact", func(t *testing.T) {
		h := newAccount(t)
		before := loadAccount(t, h, "main")
		resp := h.ok(logical.UpdateOperation, "accounts/main", map[string]any{"contact": "new@example.com,mailto:two@example.com"})
		require.Equal(t, []string{"new@example.com", "two@example.com"}, resp.Data["contact"])
		require.Equal(t, []string{"main"}, h.e.names("UpdateAccountContact"))
		require.Equal(t, [][]string{{"new@example.com", "two@example.com"}}, h.e.contacts)
		require.Equal(t, []string{"main"}, h.e.names("AccountChanged"))
		after := loadAccount(t, h, "main")
		require.Equal(t, []string{"new@example.com", "two@example.com"}, after.Contact)
		after.Contact = before.Contact
		require.Equal(t, before, after, "only the contact changed")
		require.Empty(t, h.e.names("RegisterAccount"))
	})

	t.Run("same contact is not sent to the CA", func(t *testing.T) {
		h := newAccount(t)
		h.ok(logical.UpdateOperation, "accounts/main", map[string]any{"contact": "mailto:ops@example.com"})
		require.Empty(t, h.e.names("UpdateAccountContact"))
	})

	t.Run("ca_bundle", func(t *testing.T) {
		h := newAccount(t)
		resp := h.ok(logical.UpdateOperation, "accounts/main", map[string]any{"ca_bundle": bundle})
		require.Equal(t, bundle, resp.Data["ca_bundle"])
		require.Equal(t, bundle, loadAccount(t, h, "main").CABundle)
		require.Empty(t, h.e.names("UpdateAccountContact"))
		require.Equal(t, []string{"main"}, h.e.names("AccountChanged"), "the account's client must be rebuilt with the new roots")
	})

	t.Run("unchanged values of fixed fields are accepted", func(t *testing.T) {
		h := newAccount(t)
		before := loadAccount(t, h, "main")
		h.ok(logical.UpdateOperation, "accounts/main", map[string]any{"directory_url": "https://ca.test/directory",
			"key_type": "EC256", "eab_kid": "kid-1", "terms_of_service_agreed": true})
		require.Equal(t, before, loadAccount(t, h, "main"))
	})

	_, otherKey := keyPEM(t, acme.EC256)
	refused := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{name: "directory_url", data: map[string]any{"directory_url": "letsencrypt"},
			wants: []string{`directory_url of existing account "main" cannot change`, "create a new account"}},
		{name: "key_type", data: map[string]any{"key_type": "ec384"}, wants: []string{`key_type of existing account "main" cannot change`}},
		{name: "private_key", data: map[string]any{"private_key": otherKey}, wants: []string{`private_key of existing account "main" cannot change`}},
		{name: "eab_kid", data: map[string]any{"eab_kid": "kid-2"}, wants: []string{`eab_kid of existing account "main" cannot change`}},
		{name: "eab_hmac_key", data: map[string]any{"eab_hmac_key": secret}, wants: []string{`eab_hmac_key of existing account "main" cannot change`}},
		{name: "terms withdrawn", data: map[string]any{"terms_of_service_agreed": false}, wants: []string{"terms_of_service_agreed cannot be withdrawn"}},
		{name: "bad contact", data: map[string]any{"contact": "nobody"}, wants: []string{`contact "nobody" is not an e-mail address`}},
		{name: "bad ca_bundle", data: map[string]any{"ca_bundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
			wants: []string{"ca_bundle certificate 1 does not parse"}},
		{name: "contact with a fixed field", data: map[string]any{"contact": "new@example.com", "key_type": "rsa2048"},
			wants: []string{"key_type of existing account"}},
	}
	for _, tc := range refused {
		t.Run("refused "+tc.name, func(t *testing.T) {
			h := newAccount(t)
			h.bad(nil, logical.UpdateOperation, "accounts/main", tc.data, tc.wants...)
		})
	}

	t.Run("CA refuses the contact", func(t *testing.T) {
		h := newAccount(t)
		h.e.contactErr = &acme.Error{Kind: acme.ErrRejected, Detail: "invalidContact"}
		h.bad([]string{"UpdateAccountContact"}, logical.UpdateOperation, "accounts/main", map[string]any{"contact": "new@example.com"},
			`update contact of account "main"`, "invalidContact")
	})

	t.Run("CA unreachable", func(t *testing.T) {
		h := newAccount(t)
		h.e.contactErr = &acme.Error{Kind: acme.ErrUnreachable}
		err := h.fails(logical.UpdateOperation, "accounts/main", map[string]any{"contact": "new@example.com"})
		require.Equal(t, http.StatusBadGateway, codeOf(err))
		require.Empty(t, h.e.names("AccountChanged"))
	})

	t.Run("invalid ca_bundle with a new contact", func(t *testing.T) {
		h := newAccount(t)
		h.bad(nil, logical.UpdateOperation, "accounts/main",
			map[string]any{"contact": "new@example.com", "ca_bundle": "garbage"}, "ca_bundle")
		// Regression: update() sent the new contact to the CA before it validated ca_bundle, so a
		// request answered with a 400 (and nothing stored) had changed the account at the CA.
		require.Empty(t, h.e.names("UpdateAccountContact"), "a refused update must not change the account at the CA")
	})
}

func TestAccountDelete(t *testing.T) {
	h := newHarness(t)
	h.fixtures()
	h.account("spare")
	h.role("web2", nil)
	h.e.reset()

	h.bad(nil, logical.DeleteOperation, "accounts/acme", nil, `account "acme" is used by role(s) web, web2`, "change or delete them first")
	require.NotNil(t, loadAccount(t, h, "acme"))

	// An unused account goes at once, and the engine forgets its client.
	resp := h.ok(logical.DeleteOperation, "accounts/spare", nil)
	require.Nil(t, resp)
	require.Nil(t, loadAccount(t, h, "spare"))
	require.Equal(t, []string{"spare"}, h.e.names("AccountChanged"))

	h.ok(logical.DeleteOperation, "roles/web", nil)
	h.bad(nil, logical.DeleteOperation, "accounts/acme", nil, "used by role(s) web2")
	h.ok(logical.DeleteOperation, "roles/web2", nil)
	h.e.reset()
	h.ok(logical.DeleteOperation, "accounts/acme", nil)
	require.Equal(t, []string{"acme"}, h.e.names("AccountChanged"))
	require.Equal(t, []string{"config/dns/ns"}, h.keys())
	list := h.ok(logical.ListOperation, "accounts/", nil)
	require.Empty(t, list.Data["keys"])

	// Deleting what does not exist is not an error.
	h.ok(logical.DeleteOperation, "accounts/never", nil)
}

func TestCAErrorResponse(t *testing.T) {
	_, err := caErrorResponse("x", errors.New("plain"))
	require.NoError(t, err, "an unclassified error is the caller's (400)")
	resp, err := caErrorResponse("x", &acme.Error{Kind: acme.ErrRateLimited, Detail: "slow down"})
	require.Nil(t, resp)
	require.ErrorIs(t, err, logical.ErrUpstreamRateLimited)
	require.NotContains(t, err.Error(), "retry after", "no retry hint without a Retry-After")
}

// The order budget: Let's Encrypt's published limits for its directories, none for other CAs,
// each settable (N/period, 0 unlimited) on create and update; bad values are 400s that change
// nothing.
func TestAccountOrderBudget(t *testing.T) {
	h := newHarness(t)
	h.ok(logical.CreateOperation, "accounts/private", map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true})
	read := h.ok(logical.ReadOperation, "accounts/private", nil)
	for _, f := range limitFields {
		require.Equal(t, "0", read.Data[f], "%s: no limit for a CA that publishes none", f)
	}
	resp := h.ok(logical.UpdateOperation, "accounts/private", map[string]any{"order_limit": "10/30m", "failed_authorization_limit": "3/60m"})
	require.Equal(t, "10/30m", resp.Data["order_limit"])
	require.Equal(t, "3/1h", resp.Data["failed_authorization_limit"])
	require.Equal(t, "0", resp.Data["domain_limit"])
	lim := AccountLimits(loadAccount(t, h, "private"))
	require.Equal(t, 10, lim.OrdersPerAccount.Count)
	require.Equal(t, 30*time.Minute, lim.OrdersPerAccount.Period)

	h.ok(logical.CreateOperation, "accounts/le", map[string]any{"directory_url": "letsencrypt", "terms_of_service_agreed": true, "order_limit": "0"})
	read = h.ok(logical.ReadOperation, "accounts/le", nil)
	require.Equal(t, "0", read.Data["order_limit"], "explicitly unlimited")
	require.Equal(t, "50/168h", read.Data["domain_limit"], "the rest keep Let's Encrypt's")

	for _, bad := range []string{"-1/1h", "5/0s", "5/9000h", "100001/1h", "5 per hour", "5/1h/x", strings.Repeat("9", 10_000) + "/1h"} {
		resp, err := h.do(logical.UpdateOperation, "accounts/private", map[string]any{"order_limit": bad})
		require.NoError(t, err)
		require.True(t, resp.IsError(), "%.20q: a 400", bad)
		require.Contains(t, resp.Error().Error(), "order_limit")
		require.Less(t, len(resp.Error().Error()), 300)
		require.Equal(t, "10/30m", loadAccount(t, h, "private").OrderLimit, "unchanged")
	}
}

// accountLifecycleFake is the fake engine's part for ImportAccount, RolloverAccountKey and
// DeactivateAccount. The fake engine's lock guards it.
type accountLifecycleFake struct {
	// ImportAccount answers importInfo (nil: the registerURL account, valid, with the request's
	// contact) or importErr.
	importInfo  *acme.AccountInfo
	importErr   error
	imported    *storage.AccountEntry
	importedKey crypto.Signer
	importedReg acme.Registration

	rolloverErr   error
	rolledKeys    []crypto.Signer
	deactivateErr error
	// lockHeld records, per rollover or deactivation, whether the account's lock was held.
	lockHeld []bool
}

func (e *fakeEngine) ImportAccount(_ context.Context, acct *storage.AccountEntry, key crypto.Signer, reg acme.Registration) (acme.AccountInfo, error) {
	e.record("ImportAccount", acct.DirectoryURL)
	e.mu.Lock()
	defer e.mu.Unlock()
	a := *acct
	f := &e.lifecycle
	f.imported, f.importedKey, f.importedReg = &a, key, reg
	if f.importErr != nil {
		return acme.AccountInfo{}, f.importErr
	}
	if f.importInfo != nil {
		return *f.importInfo, nil
	}
	return acme.AccountInfo{URL: e.registerURL, Status: "valid", Contact: reg.Contact}, nil
}

// accountLocked reports whether the account's lock is held (by the handler that called us).
func (e *fakeEngine) accountLocked(name string) bool {
	l := e.locks.For(storage.AccountPrefix, name)
	if l.TryLock() {
		l.Unlock()
		return false
	}
	return true
}

func (e *fakeEngine) RolloverAccountKey(ctx context.Context, name string, acct *storage.AccountEntry, newKey crypto.Signer) (*storage.AccountEntry, error) {
	e.record("RolloverAccountKey", name)
	held := e.accountLocked(name)
	e.mu.Lock()
	f := &e.lifecycle
	f.lockHeld = append(f.lockHeld, held)
	f.rolledKeys = append(f.rolledKeys, newKey)
	err := f.rolloverErr
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	updated := *acct
	kt, err := acme.KeyTypeOf(newKey)
	if err != nil {
		return nil, err
	}
	if updated.PrivateKey, err = acme.EncodeKey(newKey); err != nil {
		return nil, err
	}
	updated.KeyType = string(kt)
	return &updated, storage.StoreAccount(ctx, e.s, name, &updated)
}

func (e *fakeEngine) DeactivateAccount(ctx context.Context, name string, acct *storage.AccountEntry) (*storage.AccountEntry, error) {
	e.record("DeactivateAccount", name)
	held := e.accountLocked(name)
	e.mu.Lock()
	e.lifecycle.lockHeld = append(e.lifecycle.lockHeld, held)
	err := e.lifecycle.deactivateErr
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	updated := *acct
	updated.Status = storage.AccountStatusDeactivated
	return &updated, storage.StoreAccount(ctx, e.s, name, &updated)
}

// certbotJWK returns key as certbot's private_key.json (a private JWK, as josepy writes it).
func certbotJWK(t *testing.T, key crypto.Signer) string {
	t.Helper()
	raw, err := (&jose.JSONWebKey{Key: key}).MarshalJSON()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	out, err := json.MarshalIndent(m, "", "  ")
	require.NoError(t, err)
	return string(out)
}

// Import of a certbot account: private_key.json (JWK) and regr.json's uri as account_url.
func TestAccountImportCertbot(t *testing.T) {
	for _, kt := range []acme.KeyType{acme.RSA2048, acme.EC256, acme.EC384} {
		t.Run(string(kt), func(t *testing.T) {
			h := newHarness(t)
			key, err := kt.Generate()
			require.NoError(t, err)
			h.e.lifecycle.importInfo = &acme.AccountInfo{URL: "https://ca.test/acct/42", Status: "valid", Contact: []string{"certbot@example.com"}}
			resp := h.ok(logical.CreateOperation, "accounts/certbot", map[string]any{
				"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true,
				"private_key": certbotJWK(t, key), "account_url": " https://ca.test/acct/42 ",
			})
			require.Equal(t, "https://ca.test/acct/42", resp.Data["account_url"])
			require.Equal(t, string(kt), resp.Data["key_type"])
			require.Equal(t, []string{"certbot@example.com"}, resp.Data["contact"], "the CA's contact when the request gives none")
			require.Equal(t, "https://ca.test/acct/42", h.e.lifecycle.imported.AccountURL, "the engine checks the URL with the CA")
			samePublicKey(t, key.Public(), h.e.lifecycle.importedKey.Public())
			require.Empty(t, h.e.names("RegisterAccount"))

			// Stored as PKCS #8 PEM, like every account key.
			a := loadAccount(t, h, "certbot")
			require.True(t, strings.HasPrefix(a.PrivateKey, "-----BEGIN PRIVATE KEY-----"))
			stored, err := acme.ParseKey(a.PrivateKey)
			require.NoError(t, err)
			samePublicKey(t, key.Public(), stored.Public())
			require.Equal(t, []string{"certbot@example.com"}, a.Contact)

			read := h.ok(logical.ReadOperation, "accounts/certbot", nil)
			require.NotContains(t, read.Data, "private_key")
			// account_url is fixed once the account exists.
			h.ok(logical.UpdateOperation, "accounts/certbot", map[string]any{"account_url": "https://ca.test/acct/42"})
			h.bad(nil, logical.UpdateOperation, "accounts/certbot", map[string]any{"account_url": "https://ca.test/acct/43"},
				`account_url of existing account "certbot" cannot change`)
		})
	}
	t.Run("contact given is passed on", func(t *testing.T) {
		h := newHarness(t)
		key, _ := acme.EC256.Generate()
		resp := h.ok(logical.CreateOperation, "accounts/certbot", map[string]any{"directory_url": "https://ca.test/dir",
			"terms_of_service_agreed": true, "private_key": certbotJWK(t, key), "contact": "ops@example.com"})
		require.Equal(t, []string{"ops@example.com"}, h.e.lifecycle.importedReg.Contact)
		require.Equal(t, []string{"ops@example.com"}, resp.Data["contact"])
		require.Equal(t, "", h.e.lifecycle.imported.AccountURL, "without account_url the engine looks the key up")
	})
}

func TestAccountImportRefused(t *testing.T) {
	key, _ := acme.EC256.Generate()
	jwk := certbotJWK(t, key)
	var pub map[string]any
	require.NoError(t, json.Unmarshal([]byte(jwk), &pub))
	delete(pub, "d")
	pubJSON, _ := json.Marshal(pub)
	base := func() map[string]any {
		return map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true, "private_key": jwk}
	}
	cases := []struct {
		name  string
		set   map[string]any
		unset []string
		wants []string
	}{
		{name: "account_url without private_key", set: map[string]any{"account_url": "https://ca.test/acct/1"}, unset: []string{"private_key"},
			wants: []string{"account_url goes with private_key"}},
		{name: "account_url over http", set: map[string]any{"account_url": "http://ca.test/acct/1"}, wants: []string{`account_url "http://ca.test/acct/1" is not an https URL`, "regr.json"}},
		{name: "account_url with a password", set: map[string]any{"account_url": "https://u:" + secret + "@ca.test/acct/1"}, wants: []string{"must not hold a user name or password"}},
		{name: "account_url of 3000 characters", set: map[string]any{"account_url": "https://ca.test/" + strings.Repeat("a", 3000)}, wants: []string{"longer than 2048"}},
		{name: "public JWK", set: map[string]any{"private_key": string(pubJSON)}, wants: []string{"private_key: the JSON Web Key is a public key"}},
		{name: "broken JWK", set: map[string]any{"private_key": `{"kty":"EC","d":"` + secret}, wants: []string{"private_key: starts like a JSON Web Key"}},
		{name: "symmetric JWK", set: map[string]any{"private_key": `{"kty":"oct","k":"` + secret + `"}`}, wants: []string{`private_key: the JSON Web Key is of type "oct"`}},
		{name: "neither PEM nor JWK", set: map[string]any{"private_key": secret}, wants: []string{"private_key: not a PEM private key", "private_key.json"}},
		{name: "key_type mismatch", set: map[string]any{"key_type": "rsa2048"}, wants: []string{`key_type "rsa2048" does not match the imported private_key, which is ec256`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			data := base()
			for k, v := range tc.set {
				data[k] = v
			}
			for _, k := range tc.unset {
				delete(data, k)
			}
			msg := h.bad(nil, logical.CreateOperation, "accounts/main", data, tc.wants...)
			require.Less(t, len(msg), 400)
			require.Empty(t, h.keys())
		})
	}

	// The CA's answers.
	caCases := []struct {
		name  string
		err   error
		code  int
		wants []string
	}{
		{name: "another account", err: fmt.Errorf("%w: the CA says this key's account is %q, not %q", errors.New("the CA's account for this private_key is not account_url"),
			"https://ca.test/acct/7", "https://ca.test/acct/8"), code: http.StatusBadRequest, wants: []string{`import account "main" from https://ca.test/dir`, "acct/7", "acct/8"}},
		{name: "unknown key", err: &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:accountDoesNotExist", Detail: "no account for this key"},
			code: http.StatusBadRequest, wants: []string{"no account for this key"}},
		{name: "unreachable", err: &acme.Error{Kind: acme.ErrUnreachable}, code: http.StatusBadGateway},
	}
	for _, tc := range caCases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.e.lifecycle.importErr = tc.err
			data := base()
			data["account_url"] = "https://ca.test/acct/8"
			if tc.code == http.StatusBadRequest {
				h.bad([]string{"ImportAccount"}, logical.CreateOperation, "accounts/main", data, tc.wants...)
			} else {
				err := h.fails(logical.CreateOperation, "accounts/main", data)
				require.Equal(t, tc.code, codeOf(err))
			}
			require.Empty(t, h.keys(), "nothing is stored when the CA does not confirm the account")
		})
	}
}

func TestAccountRollover(t *testing.T) {
	h := newHarness(t)
	h.fixtures()
	before := loadAccount(t, h, "acme")

	// Default: a new key of the same type.
	resp := h.ok(logical.UpdateOperation, "accounts/acme/rollover", nil)
	require.Equal(t, "ec256", resp.Data["key_type"])
	require.Equal(t, before.AccountURL, resp.Data["account_url"])
	require.NotContains(t, resp.Data, "private_key")
	require.Equal(t, []string{"acme"}, h.e.names("RolloverAccountKey"))
	require.Equal(t, []bool{true}, h.e.lifecycle.lockHeld, "the engine runs with the account's lock held")
	after := loadAccount(t, h, "acme")
	require.NotEqual(t, before.PrivateKey, after.PrivateKey)
	stored, err := acme.ParseKey(after.PrivateKey)
	require.NoError(t, err)
	samePublicKey(t, h.e.lifecycle.rolledKeys[0].Public(), stored.Public())

	// Another type.
	resp = h.ok(logical.UpdateOperation, "accounts/acme/rollover", map[string]any{"key_type": "RSA2048"})
	require.Equal(t, "rsa2048", resp.Data["key_type"])
	kt, err := acme.KeyTypeOf(h.e.lifecycle.rolledKeys[1])
	require.NoError(t, err)
	require.Equal(t, acme.RSA2048, kt)

	// The path is not the account's: accounts/acme/rollover does not address an account named
	// "acme/rollover", and a read of it is not supported.
	_, err = h.do(logical.ReadOperation, "accounts/acme/rollover", nil)
	require.Error(t, err)
	h.ok(logical.ReadOperation, "accounts/acme", nil)

	h.bad(nil, logical.UpdateOperation, "accounts/acme/rollover", map[string]any{"key_type": "ed25519"}, `key_type: unknown key type "ed25519"`)

	err = h.fails(logical.UpdateOperation, "accounts/missing/rollover", nil)
	require.Equal(t, http.StatusNotFound, codeOf(err))
	require.Contains(t, err.Error(), `account "missing" does not exist`)

	h.e.lifecycle.rolloverErr = &acme.Error{Kind: acme.ErrRejected, Detail: "badPublicKey"}
	h.bad([]string{"RolloverAccountKey"}, logical.UpdateOperation, "accounts/acme/rollover", nil, `roll over the key of account "acme"`, "badPublicKey")
	h.e.lifecycle.rolloverErr = &acme.Error{Kind: acme.ErrUnreachable}
	err = h.fails(logical.UpdateOperation, "accounts/acme/rollover", nil)
	require.Equal(t, http.StatusBadGateway, codeOf(err))
	h.e.lifecycle.rolloverErr = fmt.Errorf("waiting: %w", context.DeadlineExceeded)
	err = h.fails(logical.UpdateOperation, "accounts/acme/rollover", nil)
	require.Equal(t, http.StatusGatewayTimeout, codeOf(err))

	// The key does not change through the account's own path, which says where it does.
	h.bad(nil, logical.UpdateOperation, "accounts/acme", map[string]any{"key_type": "ec384"}, "write accounts/acme/rollover")
}

func TestAccountDeactivate(t *testing.T) {
	h := newHarness(t)
	h.fixtures()
	h.account("spare")
	h.e.reset()

	resp := h.ok(logical.UpdateOperation, "accounts/acme/deactivate", nil)
	require.Equal(t, "deactivated", resp.Data["status"])
	require.Equal(t, []string{"acme"}, h.e.names("DeactivateAccount"))
	require.Equal(t, []bool{true}, h.e.lifecycle.lockHeld)
	require.Len(t, resp.Warnings, 1)
	require.Contains(t, resp.Warnings[0], `role(s) web use account "acme"`)
	require.Equal(t, storage.AccountStatusDeactivated, loadAccount(t, h, "acme").Status)
	require.Equal(t, "deactivated", h.ok(logical.ReadOperation, "accounts/acme", nil).Data["status"])

	// Again: nothing more to do at the CA.
	h.e.reset()
	h.ok(logical.UpdateOperation, "accounts/acme/deactivate", nil)
	require.Empty(t, h.e.names("DeactivateAccount"))

	// A deactivated account keeps its key and contact; the CA would refuse both changes.
	h.bad(nil, logical.UpdateOperation, "accounts/acme/rollover", nil, `account "acme" is deactivated at its CA: its key cannot change`)
	h.bad(nil, logical.UpdateOperation, "accounts/acme", map[string]any{"contact": "new@example.com"}, `account "acme" is deactivated at its CA: its contact cannot change`)
	h.ok(logical.UpdateOperation, "accounts/acme", map[string]any{"order_limit": "10/1h"})

	// No roles: no warning.
	resp = h.ok(logical.UpdateOperation, "accounts/spare/deactivate", nil)
	require.Empty(t, resp.Warnings)

	err := h.fails(logical.UpdateOperation, "accounts/missing/deactivate", nil)
	require.Equal(t, http.StatusNotFound, codeOf(err))

	h.account("third")
	h.e.lifecycle.deactivateErr = &acme.Error{Kind: acme.ErrRejected, Detail: "unauthorized"}
	h.bad([]string{"DeactivateAccount"}, logical.UpdateOperation, "accounts/third/deactivate", nil, `deactivate account "third"`, "unauthorized")
	require.Equal(t, "valid", loadAccount(t, h, "third").Status)
}
