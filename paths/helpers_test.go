package paths

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/testhelpers/schema"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// secret is put into every write-only value the tests send (credential values, EAB HMAC keys,
// passwords in URLs). The harness fails any test whose response, warning or error contains it.
// It is valid base64url, so it also works as an EAB HMAC key.
const secret = "S3CR3T-do-not-echo"

// call is one recorded call of the fake engine.
type call struct {
	Method string
	Name   string
}

// fakeEngine implements Engine for handler tests: it records every call and returns what the
// test configured. Its certificate methods change storage the way the real engine does, taking
// the certificate's lock; it records a violation instead of deadlocking when a handler calls it
// with that lock held.
type fakeEngine struct {
	s     logical.Storage
	locks *storage.Locks

	mu         sync.Mutex
	calls      []call
	violations []string

	writeSafe bool
	// CertificateWaiting answers
	waiting map[string]string

	// RegisterAccount
	registerURL, registerStatus string
	registerErr                 error
	registeredAcct              *storage.AccountEntry
	registeredKey               crypto.Signer
	registeredReg               acme.Registration

	// UpdateAccountContact
	contactErr error
	contacts   [][]string

	// ImportAccount, RolloverAccountKey, DeactivateAccount (path_accounts_test.go)
	lifecycle accountLifecycleFake

	// CheckDNSConfig
	checkDNSErr error
	checkedDNS  []storage.DNSConfigEntry

	// EnsureCertificate and RenewCertificate: what to do with the stored entry (nil: issue).
	ensure      func(e *fakeEngine, name string, c *storage.CertEntry) (*storage.CertEntry, error)
	ensureWaits []time.Duration
	renew       func(e *fakeEngine, name string, c *storage.CertEntry) (*storage.CertEntry, error)
	renewWaits  []time.Duration
	// renewSawForce records the entry's ForceRenewal, Attempts and NextAttemptAt as the
	// engine saw them when RenewCertificate was called.
	renewSawForce    []bool
	renewSawAttempts []int

	// RevokeCertificate
	revokeErr     error
	revokeHook    func(e *fakeEngine, name string)
	revokedSerial []string
	revokedReason []uint

	summaries map[string]CertSummary
	// Metrics answers
	metrics Metrics
}

var _ Engine = (*fakeEngine)(nil)

func newFakeEngine(s logical.Storage) *fakeEngine {
	return &fakeEngine{s: s, locks: storage.NewLocks(), writeSafe: true,
		registerURL: "https://ca.test/acct/1", registerStatus: "valid"}
}

func (e *fakeEngine) record(method, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, call{method, name})
}

// called returns the recorded calls of method (all calls when method is "").
func (e *fakeEngine) called(method string) []call {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []call
	for _, c := range e.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// names returns the names of the recorded calls of method.
func (e *fakeEngine) names(method string) []string {
	var out []string
	for _, c := range e.called(method) {
		out = append(out, c.Name)
	}
	return out
}

func (e *fakeEngine) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = nil
}

// lockCert takes the certificate's lock like the real engine's workers do. A handler that calls
// the engine while holding it would deadlock the real engine; the fake gives up after a second
// and records a violation instead. (Other requests hold the lock only briefly.)
func (e *fakeEngine) lockCert(method, name string) func() {
	l := e.locks.Cert(name)
	for deadline := time.Now().Add(time.Second); !l.TryLock(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			e.mu.Lock()
			e.violations = append(e.violations, fmt.Sprintf("%s(%q) called with the certificate's lock held", method, name))
			e.mu.Unlock()
			return func() {}
		}
	}
	return l.Unlock
}

func (e *fakeEngine) RegisterAccount(_ context.Context, acct *storage.AccountEntry, key crypto.Signer, reg acme.Registration) (string, string, error) {
	e.record("RegisterAccount", acct.DirectoryURL)
	e.mu.Lock()
	defer e.mu.Unlock()
	a := *acct
	e.registeredAcct, e.registeredKey, e.registeredReg = &a, key, reg
	if e.registerErr != nil {
		return "", "", e.registerErr
	}
	return e.registerURL, e.registerStatus, nil
}

func (e *fakeEngine) UpdateAccountContact(_ context.Context, name string, _ *storage.AccountEntry, contact []string) error {
	e.record("UpdateAccountContact", name)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.contacts = append(e.contacts, contact)
	return e.contactErr
}

func (e *fakeEngine) AccountChanged(name string) { e.record("AccountChanged", name) }

func (e *fakeEngine) CheckDNSConfig(_ context.Context, cfg *storage.DNSConfigEntry) error {
	e.record("CheckDNSConfig", cfg.Provider)
	e.mu.Lock()
	defer e.mu.Unlock()
	c := *cfg
	e.checkedDNS = append(e.checkedDNS, c)
	return e.checkDNSErr
}

func (e *fakeEngine) DNSConfigChanged(name string) { e.record("DNSConfigChanged", name) }

func (e *fakeEngine) EnsureCertificate(ctx context.Context, name string, wait time.Duration) (*storage.CertEntry, error) {
	e.record("EnsureCertificate", name)
	e.mu.Lock()
	e.ensureWaits = append(e.ensureWaits, wait)
	f := e.ensure
	e.mu.Unlock()
	unlock := e.lockCert("EnsureCertificate", name)
	defer unlock()
	c, err := storage.LoadCert(ctx, e.s, name)
	if err != nil || c == nil {
		return c, err
	}
	if f == nil {
		f = issue
	}
	return f(e, name, c)
}

func (e *fakeEngine) CertificateChanged(name string) { e.record("CertificateChanged", name) }

func (e *fakeEngine) RenewCertificate(ctx context.Context, name string, wait time.Duration) (*storage.CertEntry, error) {
	e.record("RenewCertificate", name)
	unlock := e.lockCert("RenewCertificate", name)
	defer unlock()
	c, err := storage.LoadCert(ctx, e.s, name)
	if err != nil || c == nil {
		return c, err
	}
	e.mu.Lock()
	e.renewWaits = append(e.renewWaits, wait)
	e.renewSawForce = append(e.renewSawForce, c.ForceRenewal)
	e.renewSawAttempts = append(e.renewSawAttempts, c.Attempts)
	f := e.renew
	e.mu.Unlock()
	if f == nil {
		f = func(e *fakeEngine, name string, c *storage.CertEntry) (*storage.CertEntry, error) {
			c.ForceRenewal = false
			c.Renewals++
			return issue(e, name, c)
		}
	}
	return f(e, name, c)
}

func (e *fakeEngine) RevokeCertificate(_ context.Context, name string, c *storage.CertEntry, reason uint) error {
	e.record("RevokeCertificate", name)
	e.mu.Lock()
	e.revokedSerial = append(e.revokedSerial, c.SerialNumber)
	e.revokedReason = append(e.revokedReason, reason)
	hook, err := e.revokeHook, e.revokeErr
	e.mu.Unlock()
	if hook != nil {
		hook(e, name)
	}
	return err
}

func (e *fakeEngine) PlanRenewal(c *storage.CertEntry, now time.Time) {
	e.record("PlanRenewal", "")
	c.RenewAt = c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
	c.ARICheckAt = now
}

func (e *fakeEngine) CertificateSummaries() map[string]CertSummary {
	e.record("CertificateSummaries", "")
	return e.summaries
}

func (e *fakeEngine) CountCertificates(role string) int {
	names, err := storage.CertNames(context.Background(), e.s)
	if err != nil {
		panic(err)
	}
	n := 0
	for _, name := range names {
		if c, err := storage.LoadCert(context.Background(), e.s, name); err == nil && c != nil && c.Role == role {
			n++
		}
	}
	return n
}

func (e *fakeEngine) CertificateWaiting(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.waiting[name]
}

func (e *fakeEngine) Metrics() Metrics {
	e.record("Metrics", "")
	return e.metrics
}

func (e *fakeEngine) WriteSafe() bool { return e.writeSafe }

func (e *fakeEngine) Locks() *storage.Locks { return e.locks }

// issue stores an issued certificate for the entry's current generation, as a successful order
// would, and returns it.
func issue(e *fakeEngine, name string, c *storage.CertEntry) (*storage.CertEntry, error) {
	now := time.Now().UTC()
	c.Certificate = fmt.Sprintf("-----BEGIN CERTIFICATE-----\nfake %s generation %d renewal %d\n-----END CERTIFICATE-----\n", name, c.Generation, c.Renewals)
	c.PrivateKey = fmt.Sprintf("-----BEGIN EC PRIVATE KEY-----\nfake key of %s\n-----END EC PRIVATE KEY-----\n", name)
	c.Chain = []string{"-----BEGIN CERTIFICATE-----\nfake issuer\n-----END CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\nfake root\n-----END CERTIFICATE-----\n"}
	c.SerialNumber = fmt.Sprintf("0a:%02x:%02x", c.Generation, c.Renewals)
	c.NotBefore, c.NotAfter = now.Add(-time.Hour), now.Add(90*24*time.Hour-time.Hour)
	c.RenewAt = c.NotBefore.Add(60 * 24 * time.Hour)
	c.IssuedAt, c.IssuedGeneration = now, c.Generation
	c.Status, c.LastError, c.Attempts, c.NextAttemptAt = storage.StatusValid, "", 0, time.Time{}
	if err := storage.StoreCert(context.Background(), e.s, name, c); err != nil {
		return nil, err
	}
	return c, nil
}

// leavePending returns the entry as stored: issuance goes on in the background.
func leavePending(_ *fakeEngine, _ string, c *storage.CertEntry) (*storage.CertEntry, error) {
	return c, nil
}

// failAttempt stores a failed attempt with a backoff, as the engine does after a CA error.
func failAttempt(e *fakeEngine, name string, c *storage.CertEntry) (*storage.CertEntry, error) {
	c.Status, c.LastError, c.Attempts = storage.StatusFailed, "acme: challenge validation failed: NXDOMAIN", c.Attempts+1
	c.NextAttemptAt = time.Now().UTC().Add(10 * time.Minute).Truncate(time.Second)
	if err := storage.StoreCert(context.Background(), e.s, name, c); err != nil {
		return nil, err
	}
	return c, nil
}

// harness is a framework.Backend over Paths(fake engine) and in-memory storage.
type harness struct {
	t *testing.T
	b *framework.Backend
	s *logical.InmemStorage
	e *fakeEngine
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	s := &logical.InmemStorage{}
	e := newFakeEngine(s)
	b := &framework.Backend{Paths: Paths(e), BackendType: logical.TypeLogical}
	require.NoError(t, b.Setup(context.Background(), logical.TestBackendConfig()))
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.violations) > 0 {
			t.Errorf("engine called with locks held: %v", e.violations)
		}
	})
	return &harness{t: t, b: b, s: s, e: e}
}

// handle is what the plugin's backend.HandleRequest does: screen sensitive fields
// (ScreenSensitiveInput), then let the framework route the request, and shorten quoted input
// (ClipResponse).
func (h *harness) handle(req *logical.Request) (*logical.Response, error) {
	if resp := ScreenSensitiveInput(h.b.Route(req.Path), req.Data); resp != nil {
		return resp, nil
	}
	return ClipResponse(h.b.HandleRequest(context.Background(), req))
}

// do sends a request and checks that nothing in the answer carries the secret marker.
func (h *harness) do(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	h.t.Helper()
	resp, err := h.handle(&logical.Request{Operation: op, Path: path, Data: data, Storage: h.s})
	requireNoSecret(h.t, resp, err)
	return resp, err
}

// requireNoSecret fails when the response (data, warnings, raw body) or the error mentions the
// secret marker.
func requireNoSecret(t *testing.T, resp *logical.Response, err error) {
	t.Helper()
	if resp != nil {
		j, jerr := json.Marshal(resp)
		require.NoError(t, jerr)
		require.NotContains(t, string(j), secret, "the response echoes a write-only value")
		require.NotContains(t, strings.Join(resp.Warnings, "\n"), secret, "a warning echoes a write-only value")
	}
	if err != nil {
		require.NotContains(t, err.Error(), secret, "the error echoes a write-only value")
	}
}

// ok sends a request that must succeed, validates the response against the operation's declared
// OpenAPI schema (the 202 schema for a 202), and returns it.
func (h *harness) ok(op logical.Operation, path string, data map[string]any) *logical.Response {
	h.t.Helper()
	resp, err := h.do(op, path, data)
	require.NoError(h.t, err, "%s %s", op, path)
	if resp != nil {
		require.False(h.t, resp.IsError(), "%s %s: %v", op, path, resp.Error())
	}
	route := h.b.Route(path)
	require.NotNil(h.t, route, path)
	if code := statusOf(resp); code == http.StatusAccepted {
		rs := route.Operations[op].Properties().Responses[http.StatusAccepted]
		require.NotEmpty(h.t, rs, "%s %s answered 202 but declares no 202 response", op, path)
		schema.ValidateResponseData(h.t, &rs[0], bodyOf(h.t, resp), true)
	} else {
		require.Equal(h.t, http.StatusOK, code)
		schema.ValidateResponse(h.t, schema.GetResponseSchema(h.t, route, op), resp, true)
	}
	return resp
}

// statusOf returns the HTTP status Vault would answer a successful response with.
func statusOf(resp *logical.Response) int {
	if resp != nil {
		if c, ok := resp.Data[logical.HTTPStatusCode].(int); ok {
			return c
		}
	}
	return http.StatusOK
}

// rawBody decodes the JSON body of a response made by logical.RespondWithStatusCode.
func rawBody(t *testing.T, resp *logical.Response) map[string]any {
	t.Helper()
	raw, ok := resp.Data[logical.HTTPRawBody].(string)
	require.True(t, ok, "no raw body in %#v", resp.Data)
	var body map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &body))
	return body
}

// bodyOf returns a response's data, from the raw body for a 202.
func bodyOf(t *testing.T, resp *logical.Response) map[string]any {
	t.Helper()
	if statusOf(resp) != http.StatusOK {
		d, _ := rawBody(t, resp)["data"].(map[string]any)
		return d
	}
	return resp.Data
}

// warningsOf returns a response's warnings, from the raw body for a 202.
func warningsOf(t *testing.T, resp *logical.Response) []string {
	t.Helper()
	if statusOf(resp) == http.StatusOK {
		return resp.Warnings
	}
	var out []string
	if ws, ok := rawBody(t, resp)["warnings"].([]any); ok {
		for _, w := range ws {
			out = append(out, fmt.Sprint(w))
		}
	}
	return out
}

// dump returns every stored key with its value.
func (h *harness) dump() map[string]string {
	h.t.Helper()
	keys, err := logical.CollectKeys(context.Background(), h.s)
	require.NoError(h.t, err)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		e, err := h.s.Get(context.Background(), k)
		require.NoError(h.t, err)
		out[k] = string(e.Value)
	}
	return out
}

// keys returns the stored keys, sorted.
func (h *harness) keys() []string {
	h.t.Helper()
	keys, err := logical.CollectKeys(context.Background(), h.s)
	require.NoError(h.t, err)
	slices.Sort(keys)
	return keys
}

// bad sends a request that must be refused with a 400 whose message contains every one of
// wants, and checks that storage is exactly as before and that the engine was not called
// except for the methods in allowed. It returns the message.
func (h *harness) bad(allowed []string, op logical.Operation, path string, data map[string]any, wants ...string) string {
	h.t.Helper()
	before := h.dump()
	h.e.reset()
	resp, err := h.do(op, path, data)
	require.NoError(h.t, err, "%s %s: want a 400 response, not an error", op, path)
	require.NotNil(h.t, resp, "%s %s", op, path)
	require.True(h.t, resp.IsError(), "%s %s: want a 400, got %#v", op, path, resp.Data)
	msg := resp.Error().Error()
	for _, w := range wants {
		require.Contains(h.t, msg, w)
	}
	require.Equal(h.t, before, h.dump(), "a refused request changed storage (%s)", msg)
	for _, c := range h.e.called("") {
		require.Contains(h.t, allowed, c.Method, "a refused request called the engine (%s)", msg)
	}
	return msg
}

// fails sends a request that must fail with an error (not a 400 response) and checks that
// storage is unchanged. It returns the error.
func (h *harness) fails(op logical.Operation, path string, data map[string]any) error {
	h.t.Helper()
	before := h.dump()
	resp, err := h.do(op, path, data)
	require.Error(h.t, err, "%s %s: want an error, got %#v", op, path, resp)
	require.Equal(h.t, before, h.dump(), "a failed request changed storage")
	return err
}

// codeOf returns the HTTP status code an error carries (500 when it carries none).
func codeOf(err error) int {
	if c, ok := err.(logical.HTTPCodedError); ok {
		return c.Code()
	}
	return http.StatusInternalServerError
}

// Fixtures: an account "acme", a DNS configuration "ns" for example.com and example.net, and a
// role "web" allowing example.com, its subdomains and wildcards for any certificate name.

func (h *harness) account(name string) {
	h.t.Helper()
	h.ok(logical.CreateOperation, "accounts/"+name, map[string]any{"directory_url": "https://ca.test/directory",
		"terms_of_service_agreed": true, "contact": "ops@example.com"})
}

func (h *harness) dnsConfig(name, zones string) {
	h.t.Helper()
	h.ok(logical.CreateOperation, "config/dns/"+name, map[string]any{"provider": "rfc2136", "zones": zones,
		"credentials": map[string]any{"RFC2136_NAMESERVER": "192.0.2.53", "RFC2136_TSIG_SECRET": secret}})
}

func (h *harness) role(name string, data map[string]any) {
	h.t.Helper()
	d := map[string]any{"account": "acme", "dns": "ns", "allowed_domains": "example.com", "allow_bare_domains": true,
		"allow_subdomains": true, "allow_wildcard_certificates": true, "allowed_cert_names": "*",
		"allowed_key_types": "*", "allowed_profiles": "*", "forced_renewal_interval": 0}
	for k, v := range data {
		d[k] = v
	}
	h.ok(logical.CreateOperation, "roles/"+name, d)
}

func (h *harness) fixtures() {
	h.t.Helper()
	h.account("acme")
	h.dnsConfig("ns", "example.com,example.net")
	h.role("web", nil)
	h.e.reset()
}

// loadCert reads a certificate entry straight from storage.
func (h *harness) loadCert(name string) *storage.CertEntry {
	h.t.Helper()
	c, err := storage.LoadCert(context.Background(), h.s, name)
	require.NoError(h.t, err)
	return c
}

func (h *harness) storeCert(name string, c *storage.CertEntry) {
	h.t.Helper()
	require.NoError(h.t, storage.StoreCert(context.Background(), h.s, name, c))
}

// TestPathDeclarations checks what every path must declare: help, OpenAPI display attributes,
// responses, and forwarding of every operation that changes storage or talks to a CA.
func TestPathDeclarations(t *testing.T) {
	ps := Paths(newFakeEngine(&logical.InmemStorage{}))
	require.NotEmpty(t, ps)
	for _, p := range ps {
		t.Run(p.Pattern, func(t *testing.T) {
			require.NotEmpty(t, p.HelpSynopsis)
			require.NotEmpty(t, p.HelpDescription)
			require.NotNil(t, p.DisplayAttrs)
			require.Equal(t, operationPrefix, p.DisplayAttrs.OperationPrefix)
			hasCreate := false
			for op, h := range p.Operations {
				props := h.Properties()
				require.NotEmpty(t, props.Summary, op)
				require.NotEmpty(t, props.Responses, "%s declares no responses", op)
				switch op {
				case logical.CreateOperation, logical.UpdateOperation, logical.DeleteOperation:
					require.True(t, props.ForwardPerformanceStandby, "%s must be forwarded from performance standbys", op)
					require.True(t, props.ForwardPerformanceSecondary, "%s must be forwarded from performance secondaries", op)
				}
				hasCreate = hasCreate || op == logical.CreateOperation
			}
			if hasCreate {
				require.NotNil(t, p.ExistenceCheck, "a path with a create operation has an ExistenceCheck")
			}
			for name, f := range p.Fields {
				require.NotEmpty(t, f.Description, "field %s", name)
			}
		})
	}
}
