package backend

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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/certutil"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/helper/testhelpers/schema"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// fakeCA signs CSRs in-process; it stands in for the ACME client in unit tests.
type fakeCA struct {
	key     *ecdsa.PrivateKey
	cert    *x509.Certificate
	pem     []byte
	orders  atomic.Int64
	delay   time.Duration
	fail    error
	mu      sync.Mutex
	regs    []acme.Registration
	window  *acme.RenewalWindow
	revoked atomic.Int64
	// replaces records the ReplacesCertID of every order.
	replaces []string
	// onObtain, when set, sees every order request.
	onObtain func(acme.OrderRequest)
	// refuseReplaces makes every new order that names a certificate it replaces fail (before any
	// order exists), as Pebble does when it cannot find the replaced certificate's order.
	refuseReplaces bool
}

func newFakeCA(t *testing.T) *fakeCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour * 24)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &fakeCA{key: key, cert: cert, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (f *fakeCA) dial(acme.Account, acme.Options) (ACMEClient, error) { return &fakeClient{ca: f}, nil }

type fakeClient struct{ ca *fakeCA }

func (c *fakeClient) Register(_ context.Context, reg acme.Registration) (string, string, error) {
	c.ca.mu.Lock()
	defer c.ca.mu.Unlock()
	if c.ca.fail != nil {
		return "", "", c.ca.fail
	}
	c.ca.regs = append(c.ca.regs, reg)
	return "https://ca.test/acct/1", "valid", nil
}

func (c *fakeClient) UpdateContact(context.Context, []string) error { return nil }
func (c *fakeClient) Close()                                        {}
func (c *fakeClient) SupportsRenewalInfo() bool                     { return c.ca.window != nil }
func (c *fakeClient) Revoke(context.Context, []byte, uint) error {
	c.ca.revoked.Add(1)
	return nil
}

func (c *fakeClient) RenewalInfo(context.Context, *x509.Certificate) (*acme.RenewalWindow, error) {
	c.ca.mu.Lock()
	defer c.ca.mu.Unlock()
	if c.ca.window == nil {
		return nil, acme.ErrNoRenewalInfo
	}
	w := *c.ca.window
	return &w, nil
}

func (c *fakeClient) Obtain(ctx context.Context, req acme.OrderRequest, _ acme.PollPolicy) (*acme.Certificate, error) {
	n := c.ca.orders.Add(1)
	if c.ca.onObtain != nil {
		c.ca.onObtain(req)
	}
	c.ca.mu.Lock()
	c.ca.replaces = append(c.ca.replaces, req.ReplacesCertID)
	c.ca.mu.Unlock()
	if errors.Is(c.ca.fail, acme.ErrRateLimited) {
		return nil, c.ca.fail // the CA refuses the new order itself: no order exists
	}
	if req.ReplacesCertID != "" && c.ca.refuseReplaces {
		return nil, &acme.Error{Kind: acme.ErrUnreachable, ProblemType: "urn:ietf:params:acme:error:serverInternal",
			Detail: "could not find an order for the given certificate"}
	}
	if req.OnOrder != nil {
		if err := req.OnOrder("https://ca.test/order/" + big.NewInt(n).String()); err != nil {
			return nil, err
		}
	}
	select {
	case <-time.After(c.ca.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c.ca.fail != nil {
		return nil, c.ca.fail
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1000 + n), DNSNames: csr.DNSNames,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca.cert, csr.PublicKey, c.ca.key)
	if err != nil {
		return nil, err
	}
	return &acme.Certificate{OrderURL: "https://ca.test/order", CertURL: "https://ca.test/cert",
		CertificatePEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), IssuerPEM: c.ca.pem}, nil
}

// fakeSolvers accepts every configuration except provider "nope".
type fakeSolvers struct{ evicted []string }

func (f *fakeSolvers) Check(_ context.Context, cfg solvers.DNSConfig) error {
	if cfg.Provider == "nope" {
		return &solvers.ConfigError{}
	}
	return nil
}
func (f *fakeSolvers) Solver(context.Context, string, solvers.DNSConfig) (solvers.Solver, error) {
	return nil, nil
}
func (f *fakeSolvers) Evict(key string) { f.evicted = append(f.evicted, key) }
func (f *fakeSolvers) Close()           {}

func getTestBackend(t *testing.T) (*backend, logical.Storage, *fakeCA) {
	t.Helper()
	ca := newFakeCA(t)
	b := newTestBackend(t, &logical.InmemStorage{}, Options{Dial: ca.dial, Solvers: &fakeSolvers{}})
	// The mount's own (cached) view: what the test writes, the backend sees, as on one Vault node.
	return b, b.storage, ca
}

// newTestBackend builds a backend over s with opts; Clean runs when the test ends.
func newTestBackend(t *testing.T, s logical.Storage, opts Options) *backend {
	t.Helper()
	conf := logical.TestBackendConfig()
	conf.StorageView = s
	conf.Logger = hclog.NewNullLogger()
	b, err := New(context.Background(), conf, opts)
	require.NoError(t, err)
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	return b.(*backend)
}

// request runs one request and checks every successful response against the path's declared
// OpenAPI response schema.
func request(t *testing.T, b *backend, s logical.Storage, op logical.Operation, path string, data map[string]any) *logical.Response {
	t.Helper()
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: s})
	require.NoError(t, err, path)
	if resp != nil && !resp.IsError() && resp.Data[logical.HTTPStatusCode] == nil {
		schema.ValidateResponse(t, schema.GetResponseSchema(t, b.Route(path), op), resp, true)
	}
	return resp
}

// setup creates an account, a DNS configuration and a role "web" for certificate names web*
// (forced renewals at any time).
func setup(t *testing.T, b *backend, s logical.Storage) {
	t.Helper()
	for path, data := range map[string]map[string]any{
		"accounts/main": {"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true, "contact": "ops@example.com"},
		"config/dns/ns": {"provider": "rfc2136", "credentials": map[string]any{"RFC2136_NAMESERVER": "127.0.0.1:53", "RFC2136_TSIG_SECRET": "c2VjcmV0LXRzaWc="}, "zones": "example.com"},
	} {
		resp := request(t, b, s, logical.CreateOperation, path, data)
		require.False(t, resp.IsError(), "%s: %v", path, resp.Error())
	}
	resp := request(t, b, s, logical.CreateOperation, "roles/web", map[string]any{"account": "main", "dns": "ns",
		"allowed_domains": "example.com", "allow_subdomains": true, "allow_wildcard_certificates": true, "allowed_cert_names": "web*",
		"forced_renewal_interval": 0})
	require.False(t, resp.IsError(), resp.Error())
}

// requireSameKey fails unless a and b are the same public key.
func requireSameKey(t *testing.T, a, b crypto.PublicKey, msgAndArgs ...any) {
	t.Helper()
	same, err := certutil.ComparePublicKeysAndType(a, b)
	require.NoError(t, err)
	require.True(t, same, msgAndArgs...)
}

func TestSealWrapPrefixes(t *testing.T) {
	b, _, _ := getTestBackend(t)
	require.ElementsMatch(t, []string{"accounts/", "config/dns/", "certs/", "orders/"}, b.SpecialPaths().SealWrapStorage)
}

func TestIssueOnWriteAndRead(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	resp := request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com,*.example.com"})
	require.False(t, resp.IsError(), resp.Error())
	require.Equal(t, storage.StatusValid, resp.Data["status"])

	read := request(t, b, s, logical.ReadOperation, "certs/web", nil)
	block, _ := pem.Decode([]byte(read.Data["certificate"].(string)))
	leaf, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	require.Equal(t, []string{"www.example.com", "*.example.com"}, leaf.DNSNames)
	key, err := acme.ParseKey(read.Data["private_key"].(string))
	require.NoError(t, err)
	requireSameKey(t, leaf.PublicKey, key.Public())
	require.Equal(t, "ec", read.Data["private_key_type"])
	require.Equal(t, leaf.NotAfter.Unix(), read.Data["expiration"])
	require.Len(t, read.Data["ca_chain"], 1)

	// The same write again orders nothing; the order record is gone once the certificate is stored.
	request(t, b, s, logical.UpdateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com,*.example.com"})
	require.EqualValues(t, 1, ca.orders.Load())
	rec, err := storage.LoadOrder(context.Background(), s, "web")
	require.NoError(t, err)
	require.Nil(t, rec)
}

func TestConcurrentReadsOrderOnce(t *testing.T) {
	b, s, ca := getTestBackend(t)
	ca.delay = 200 * time.Millisecond
	setup(t, b, s)
	resp := request(t, b, s, logical.CreateOperation, "certs/web-2", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
	require.Equal(t, http.StatusAccepted, resp.Data[logical.HTTPStatusCode])

	serials := make([]string, 20)
	var wg sync.WaitGroup
	for i := range serials {
		wg.Go(func() {
			r, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "certs/web-2", Storage: s})
			if err == nil && r != nil {
				serials[i], _ = r.Data["serial_number"].(string)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, ca.orders.Load())
	for _, sn := range serials {
		require.NotEmpty(t, sn)
		require.Equal(t, serials[0], sn)
	}
}

func TestFailedIssuanceBacksOffAndReadFailsClearly(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	ca.fail = &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "no"}
	resp := request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
	require.Equal(t, http.StatusAccepted, resp.Data[logical.HTTPStatusCode])

	_, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "certs/web", Storage: s})
	var coded logical.HTTPCodedError
	require.ErrorAs(t, err, &coded)
	require.Equal(t, http.StatusServiceUnavailable, coded.Code())
	require.Contains(t, err.Error(), "rejectedIdentifier")
	require.EqualValues(t, 1, ca.orders.Load(), "a read inside the backoff window must not order again")

	c, err := storage.LoadCert(context.Background(), s, "web")
	require.NoError(t, err)
	require.Equal(t, storage.StatusFailed, c.Status)
	require.Equal(t, 1, c.Attempts)
	require.WithinDuration(t, time.Now().Add(backoffBase), c.NextAttemptAt, backoffBase/5)

	// Writing the same certificate again retries at once.
	ca.fail = nil
	resp = request(t, b, s, logical.UpdateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
	require.Equal(t, storage.StatusValid, resp.Data["status"])
	require.EqualValues(t, 2, ca.orders.Load())
}

func TestBadInputLeavesNothing(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	cases := []struct {
		path   string
		data   map[string]any
		errHas string
	}{
		{"accounts/x", map[string]any{"terms_of_service_agreed": true}, "directory_url"},
		{"accounts/x", map[string]any{"directory_url": "http://ca.test/dir", "terms_of_service_agreed": true}, "https"},
		{"accounts/x", map[string]any{"directory_url": "letsencrypt"}, "terms_of_service_agreed"},
		{"accounts/x", map[string]any{"directory_url": "letsencrypt", "terms_of_service_agreed": true, "key_type": "dsa"}, "key_type"},
		{"accounts/x", map[string]any{"directory_url": "letsencrypt", "terms_of_service_agreed": true, "contact": "not-an-email"}, "contact"},
		{"accounts/x", map[string]any{"directory_url": "letsencrypt", "terms_of_service_agreed": true, "ca_bundle": "junk"}, "ca_bundle"},
		{"accounts/x", map[string]any{"directory_url": "letsencrypt", "terms_of_service_agreed": true, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}, "private_key"},
		{"accounts/x", map[string]any{"directory_url": "letsencrypt", "terms_of_service_agreed": true, "eab_kid": "kid"}, "eab_hmac_key"},
		{"config/dns/x", map[string]any{}, "provider"},
		{"config/dns/x", map[string]any{"provider": "nope"}, "cannot work"},
		{"config/dns/x", map[string]any{"provider": "rfc2136", "credentials": map[string]any{"RFC2136_TSIG_FILE": "/etc/passwd"}}, "_FILE"},
		{"config/dns/x", map[string]any{"provider": "rfc2136", "resolvers": "dns.example.com"}, "resolvers"},
		{"roles/x", map[string]any{"dns": "ns", "allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "*"}, "account"},
		{"roles/x", map[string]any{"account": "nope", "dns": "ns", "allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "*"}, "does not exist"},
		{"roles/x", map[string]any{"account": "main", "dns": "nope", "allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "*"}, "does not exist"},
		{"roles/x", map[string]any{"account": "main", "dns": "ns", "allowed_domains": "example.com", "allow_subdomains": true}, "allowed_cert_names"},
		{"roles/x", map[string]any{"account": "main", "dns": "ns", "allowed_domains": "example.org", "allow_subdomains": true, "allowed_cert_names": "*"}, "outside the zones"},
		{"roles/x", map[string]any{"account": "main", "dns": "ns", "allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "*", "key_type": "ed25519"}, "key_type"},
		{"certs/web-x", map[string]any{"domains": "www.example.com"}, "role is required"},
		{"certs/web-x", map[string]any{"role": "nope", "domains": "www.example.com"}, "does not exist"},
		{"certs/other", map[string]any{"role": "web", "domains": "www.example.com"}, "allowed_cert_names"},
		{"certs/web-x", map[string]any{"role": "web"}, "domains is required"},
		{"certs/web-x", map[string]any{"role": "web", "domains": "www.example.org"}, "does not allow"},
		{"certs/web-x", map[string]any{"role": "web", "domains": "example.com"}, "does not allow"},
		{"certs/web-x", map[string]any{"role": "web", "domains": "www.*.example.com"}, "wildcard"},
		{"certs/web-x", map[string]any{"role": "web", "domains": "a.example.com,A.example.com"}, "twice"},
		{"certs/web-x", map[string]any{"role": "web", "domains": "www.example.com", "key_type": "rsa1024"}, "key_type"},
		{"certs/web/../x", map[string]any{"role": "web", "domains": "www.example.com"}, ".."},
	}
	for _, tc := range cases {
		t.Run(tc.path+" "+tc.errHas, func(t *testing.T) {
			resp := request(t, b, s, logical.CreateOperation, tc.path, tc.data)
			require.True(t, resp.IsError(), "expected an error response, got %v", resp)
			require.Contains(t, resp.Error().Error(), tc.errHas)
			entry, err := s.Get(context.Background(), tc.path)
			require.NoError(t, err)
			require.Nil(t, entry, "nothing may be stored")
		})
	}
	require.Zero(t, ca.orders.Load())
	require.Len(t, ca.regs, 1, "only setup's account registered")
}

func TestReadsNeverShowSecrets(t *testing.T) {
	b, s, _ := getTestBackend(t)
	setup(t, b, s)
	acct := request(t, b, s, logical.ReadOperation, "accounts/main", nil)
	raw, err := s.Get(context.Background(), "accounts/main")
	require.NoError(t, err)
	var stored storage.AccountEntry
	require.NoError(t, raw.DecodeJSON(&stored))
	require.NotEmpty(t, stored.PrivateKey)
	for k, v := range acct.Data {
		require.NotContains(t, strings.ToLower(k), "private")
		require.NotContains(t, toString(v), "PRIVATE KEY")
	}
	dns := request(t, b, s, logical.ReadOperation, "config/dns/ns", nil)
	require.Equal(t, []string{"RFC2136_NAMESERVER", "RFC2136_TSIG_SECRET"}, dns.Data["credential_keys"])
	for _, v := range dns.Data {
		require.NotContains(t, toString(v), "c2VjcmV0LXRzaWc=")
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []string:
		return strings.Join(x, ",")
	}
	return ""
}

func TestSecondAccountNeedsNewName(t *testing.T) {
	b, s, _ := getTestBackend(t)
	setup(t, b, s)
	resp := request(t, b, s, logical.UpdateOperation, "accounts/main", map[string]any{"directory_url": "letsencrypt-staging"})
	require.True(t, resp.IsError())
	require.Contains(t, resp.Error().Error(), "cannot change")
	resp = request(t, b, s, logical.DeleteOperation, "accounts/main", nil)
	require.True(t, resp.IsError())
	require.Contains(t, resp.Error().Error(), "used by role")
}

// Vault's own field parser quotes a value it cannot convert ("invalid key pair \"K:secret\"");
// for sensitive fields the backend answers first, without the value.
func TestMalformedSecretsAreNotEchoed(t *testing.T) {
	b, s, _ := getTestBackend(t)
	const secret = "S3CR3T-do-not-echo"
	for name, tc := range map[string]struct {
		path string
		data map[string]any
	}{
		"credentials pair without =":  {"config/dns/ns", map[string]any{"provider": "rfc2136", "credentials": []any{"RFC2136_TSIG_SECRET:" + secret}}},
		"credentials pair, empty key": {"config/dns/ns", map[string]any{"provider": "rfc2136", "credentials": "=" + secret}},
		"credentials nested object":   {"config/dns/ns", map[string]any{"provider": "rfc2136", "credentials": map[string]any{"K": map[string]any{"v": secret}}}},
		"eab_hmac_key as an object": {"accounts/a", map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true,
			"eab_kid": "kid", "eab_hmac_key": map[string]any{"k": secret}}},
		"private_key as a list": {"accounts/a", map[string]any{"directory_url": "https://ca.test/dir", "terms_of_service_agreed": true,
			"private_key": []any{map[string]any{"k": secret}}}},
	} {
		t.Run(name, func(t *testing.T) {
			req := &logical.Request{Operation: logical.CreateOperation, Path: tc.path, Data: tc.data, Storage: s}
			// Vault runs the existence check first: its field parsing must not quote the secret.
			_, _, eerr := b.HandleExistenceCheck(context.Background(), req)
			require.Error(t, eerr, "the existence check refuses it")
			require.Contains(t, eerr.Error(), "is malformed")
			require.NotContains(t, eerr.Error(), secret)
			resp, err := b.HandleRequest(context.Background(), req)
			require.NoError(t, err)
			require.True(t, resp.IsError(), "a 400")
			require.Contains(t, resp.Error().Error(), "is malformed")
			require.NotContains(t, fmt.Sprintf("%#v", resp), secret)
			keys, err := logical.CollectKeys(context.Background(), s)
			require.NoError(t, err)
			require.Empty(t, keys, "nothing stored")
		})
	}
	// A huge non-secret value is quoted only in part by the existence check's parse error.
	_, _, err := b.HandleExistenceCheck(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: "certs/web",
		Data: map[string]any{"wait": strings.Repeat("a", 100_000)}, Storage: s})
	require.Error(t, err)
	require.Less(t, len(err.Error()), 300)
	require.IsType(t, errutil.UserError{}, err, "still a user error (400)")
	// Well-formed input in both shapes still passes the screen.
	for _, creds := range []any{"RFC2136_NAMESERVER=127.0.0.1:53", []any{"RFC2136_NAMESERVER=127.0.0.1:53", "RFC2136_TSIG_SECRET=a=b"},
		map[string]any{"RFC2136_NAMESERVER": "127.0.0.1:53"}} {
		resp := request(t, b, s, logical.CreateOperation, "config/dns/ok", map[string]any{"provider": "rfc2136", "credentials": creds})
		require.False(t, resp.IsError(), "%v: %v", creds, resp.Error())
	}
}
