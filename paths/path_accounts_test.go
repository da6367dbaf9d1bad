package paths

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

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
			samePublicKey(t, key.Public(), h.e.registeredKey.Public())
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
