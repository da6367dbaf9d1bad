// Package e2e holds the end-to-end tests of the letsencrypt secrets engine: a real Vault dev
// server with the plugin, Pebble as the ACME CA and BIND 9 as the DNS server for DNS-01, all on
// loopback and started by scripts/env-up.sh. This file holds every shared helper: environment
// start/stop and loading, Vault clients (API and CLI), setup of accounts, DNS configs and roles,
// certificate issuance and parsing, and Pebble's issuing root.
package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// Mount is where env-up.sh mounts the plugin.
const Mount = "letsencrypt"

// Env is what scripts/env-up.sh writes to STATE_DIR/env.json.
type Env struct {
	VaultAddr        string `json:"VAULT_ADDR"`
	VaultToken       string `json:"VAULT_TOKEN"`
	VaultBin         string `json:"VAULT_BIN"`
	PebbleBin        string `json:"PEBBLE_BIN"`
	PebbleDirectory  string `json:"PEBBLE_DIRECTORY"`
	PebbleManagement string `json:"PEBBLE_MANAGEMENT"`
	PebbleTLSCA      string `json:"PEBBLE_TLS_CA"`
	PebbleConfig     string `json:"PEBBLE_CONFIG"`
	PebbleEABKID     string `json:"PEBBLE_EAB_KID"`
	PebbleEABHMACKey string `json:"PEBBLE_EAB_HMAC_KEY"`
	PebbleHTTPPort   string `json:"PEBBLE_HTTP_PORT"` // where Pebble sends HTTP-01 validations (on 127.0.0.1 here)
	DNSAddr          string `json:"DNS_ADDR"`
	DNSPort          string `json:"DNS_PORT"`
	TSIGKeyName      string `json:"TSIG_KEY_NAME"`
	TSIGAlgorithm    string `json:"TSIG_ALGORITHM"`
	TSIGSecret       string `json:"TSIG_SECRET"`
	Zone             string `json:"ZONE"`
	DelegatedZone    string `json:"DELEGATED_ZONE"` // _acme-challenge CNAMEs into Zone (and out of it)
	OutsideZone      string `json:"OUTSIDE_ZONE"`   // updatable with the same key, in no DNS configuration
	HTTP01Base       string `json:"HTTP01_BASE"`    // every name under it resolves to 127.0.0.1
	StateDir         string `json:"STATE_DIR"`
	PluginBin        string `json:"LE_PLUGIN_BIN"`
	PluginVersion    string `json:"LE_PLUGIN_VERSION"`
	PluginSHA256     string `json:"PLUGIN_SHA256"`
}

// ---------------------------------------------------------------------------------------------
// Locations and prerequisites

// RepoRoot is the repository root (the parent of e2e/), or $LE_REPO_ROOT.
func RepoRoot() string {
	if r := os.Getenv("LE_REPO_ROOT"); r != "" {
		return r
	}
	_, file, _, ok := runtime.Caller(0)
	if ok {
		return filepath.Dir(filepath.Dir(file))
	}
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}

// ToolsDir is where scripts/tools.sh puts its binaries (under bin/).
func ToolsDir() string {
	if d := os.Getenv("LE_TOOLS_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "vault-plugin-secrets-letsencrypt")
}

// PluginBin is $LE_PLUGIN_BIN or the default output of `make build`.
func PluginBin() string {
	if p := os.Getenv("LE_PLUGIN_BIN"); p != "" {
		return p
	}
	return filepath.Join(RepoRoot(), "bin", "plugins", "vault-plugin-secrets-letsencrypt")
}

// CheckPrerequisites reports every real part that is missing, with how to get it.
func CheckPrerequisites() error {
	var missing []string
	exe := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
	}
	vault := os.Getenv("VAULT_BIN")
	if vault == "" {
		vault = filepath.Join(ToolsDir(), "bin", "vault")
	}
	if !exe(vault) {
		missing = append(missing, fmt.Sprintf("vault binary (%s): run `bash scripts/tools.sh vault` (builds Vault, ~12 min)", vault))
	}
	pebble := os.Getenv("PEBBLE_BIN")
	if pebble == "" {
		pebble = filepath.Join(ToolsDir(), "bin", "pebble")
	}
	if !exe(pebble) {
		missing = append(missing, fmt.Sprintf("pebble binary (%s): run `bash scripts/tools.sh pebble`", pebble))
	}
	for _, tool := range []string{"named", "tsig-keygen", "dig"} {
		if _, err := exec.LookPath(tool); err != nil && !exe("/usr/sbin/"+tool) && !exe("/usr/bin/"+tool) {
			missing = append(missing, tool+": run `bash scripts/tools.sh e2e` (apt-get install bind9 bind9-utils bind9-dnsutils)")
		}
	}
	if _, err := os.Stat(PluginBin()); err != nil {
		missing = append(missing, fmt.Sprintf("plugin binary (%s): run `make build`", PluginBin()))
	}
	if len(missing) > 0 {
		return fmt.Errorf("e2e prerequisites missing:\n  - %s", strings.Join(missing, "\n  - "))
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Environment life cycle

// StartEnv runs scripts/env-up.sh into stateDir and loads the environment. A watchdog started by
// env-up.sh stops the environment if this process dies without calling StopEnv.
func StartEnv(stateDir string) (*Env, error) {
	if err := CheckPrerequisites(); err != nil {
		return nil, err
	}
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "scripts", "env-up.sh"), stateDir)
	cmd.Env = append(os.Environ(),
		"LE_ENV_OWNER_PID="+strconv.Itoa(os.Getpid()),
		"LE_PLUGIN_BIN="+PluginBin())
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("scripts/env-up.sh %s failed: %w (logs in %s)", stateDir, err, stateDir)
	}
	return LoadEnv(stateDir)
}

// StopEnv runs scripts/env-down.sh stateDir.
func StopEnv(stateDir string) error {
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "scripts", "env-down.sh"), stateDir)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

// LoadEnv reads stateDir/env.json.
func LoadEnv(stateDir string) (*Env, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, "env.json"))
	if err != nil {
		return nil, err
	}
	var e Env
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("parse %s/env.json: %w", stateDir, err)
	}
	if e.VaultAddr == "" || e.PebbleDirectory == "" || e.DNSAddr == "" || e.TSIGSecret == "" {
		return nil, fmt.Errorf("%s/env.json is incomplete", stateDir)
	}
	return &e, nil
}

// RestartPebble restarts Pebble with the (possibly edited) e.PebbleConfig on the same ports.
// Pebble keeps everything in memory: accounts, orders and its roots are new afterwards.
func (e *Env) RestartPebble() error {
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "scripts", "env-up.sh"), e.StateDir, "restart-pebble")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

// ---------------------------------------------------------------------------------------------
// Vault clients

// Client is a Vault API client for the environment's Vault with token (no automatic retries, so
// tests see every status code).
func (e *Env) Client(token string) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = e.VaultAddr
	cfg.MaxRetries = 0
	cfg.Timeout = 5 * time.Minute
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	c.ClearNamespace()
	return c, nil
}

// RootClient is a client with the root token; it fails the test on error.
func (e *Env) RootClient(t testing.TB) *vaultapi.Client {
	t.Helper()
	if e == nil {
		t.Fatal("the e2e environment is not running (LE_E2E_UNIT_ONLY=1 runs only the tests that need none)")
	}
	c, err := e.Client(e.VaultToken)
	require.NoError(t, err)
	return c
}

// CLI runs the real vault CLI against the environment with token and returns stdout and stderr.
func (e *Env) CLI(ctx context.Context, token string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, e.VaultBin, args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	home := filepath.Join(e.StateDir, "cli-home")
	_ = os.MkdirAll(home, 0o700)
	cmd.Env = append(env, "VAULT_ADDR="+e.VaultAddr, "VAULT_TOKEN="+token, "HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("vault %s: %w\nstderr: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String(), err
}

// Resp is one raw Vault HTTP answer.
type Resp struct {
	Status   int
	Body     []byte
	Data     map[string]any
	Errors   []string
	Warnings []string
}

// ErrorText is all error messages joined (Vault's "errors", or a coded response's data.error).
func (r *Resp) ErrorText() string {
	msgs := append([]string(nil), r.Errors...)
	if e, ok := r.Data["error"].(string); ok && e != "" {
		msgs = append(msgs, e)
	}
	return strings.Join(msgs, "; ")
}

// FailedAttempt reports whether r is the 503 of a certificate whose last issuance attempt failed
// (the plugin backs off before trying again, so waiting for it is pointless in a test).
func (r *Resp) FailedAttempt() bool {
	return r.Status == http.StatusServiceUnavailable && strings.Contains(r.ErrorText(), "attempt failed")
}

func (r *Resp) String() string {
	return fmt.Sprintf("HTTP %d %s", r.Status, strings.TrimSpace(string(r.Body)))
}

// Do sends one request (GET, LIST, PUT/POST, DELETE) to /v1/<path> ("?k=v" query allowed) and
// returns the raw answer; HTTP error statuses are not Go errors. Note that the API client cleans
// the path (path.Join): "a/../b" becomes "b" and a trailing "/" is dropped.
func Do(ctx context.Context, c *vaultapi.Client, method, path string, data map[string]any) (*Resp, error) {
	return do(ctx, c, method, path, false, data)
}

// DoEscaped is Do for a path given in escaped form, sent as is (not cleaned): e.g.
// "letsencrypt/certs/a/%2E%2E/b" reaches the plugin as the name "a/../b".
func DoEscaped(ctx context.Context, c *vaultapi.Client, method, escapedPath string, data map[string]any) (*Resp, error) {
	return do(ctx, c, method, escapedPath, true, data)
}

func do(ctx context.Context, c *vaultapi.Client, method, path string, escaped bool, data map[string]any) (*Resp, error) {
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	r := c.NewRequest(method, "/v1/"+strings.TrimPrefix(path, "/"))
	if escaped {
		raw := "/v1/" + strings.TrimPrefix(path, "/")
		unescaped, err := url.PathUnescape(raw)
		if err != nil {
			return nil, err
		}
		r.URL.Path, r.URL.RawPath = unescaped, raw
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, err
		}
		for k, v := range q {
			r.Params[k] = v
		}
	}
	if data != nil {
		if err := r.SetJSONBody(data); err != nil {
			return nil, err
		}
	}
	//lint:ignore SA1019 RawRequestWithContext is the way to see status codes and raw bodies.
	resp, err := c.RawRequestWithContext(ctx, r)
	if resp == nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(resp.Body)
	if rerr != nil {
		return nil, rerr
	}
	out := &Resp{Status: resp.StatusCode, Body: body}
	if len(bytes.TrimSpace(body)) > 0 {
		var parsed struct {
			Data     map[string]any `json:"data"`
			Errors   []string       `json:"errors"`
			Warnings []string       `json:"warnings"`
		}
		if json.Unmarshal(body, &parsed) == nil {
			out.Data, out.Errors, out.Warnings = parsed.Data, parsed.Errors, parsed.Warnings
		}
	}
	return out, nil
}

// MustDo is Do that fails the test on transport errors.
func MustDo(t testing.TB, c *vaultapi.Client, method, path string, data map[string]any) *Resp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := Do(ctx, c, method, path, data)
	require.NoError(t, err, "%s %s", method, path)
	return r
}

// List returns the keys under path (LIST), or nil on 404.
func List(t testing.TB, c *vaultapi.Client, path string) []string {
	t.Helper()
	r := MustDo(t, c, "LIST", path, nil)
	if r.Status == http.StatusNotFound {
		return nil
	}
	require.Equal(t, http.StatusOK, r.Status, "LIST %s: %s", path, r)
	var keys []string
	if raw, ok := r.Data["keys"].([]any); ok {
		for _, k := range raw {
			keys = append(keys, fmt.Sprint(k))
		}
	}
	return keys
}

// ---------------------------------------------------------------------------------------------
// Pebble

// PebbleCAPEM is the PEM of the CA that signs Pebble's HTTPS certificate (the ca_bundle).
func (e *Env) PebbleCAPEM(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(e.PebbleTLSCA)
	require.NoError(t, err)
	return string(b)
}

// PebbleGet GETs url from one of Pebble's listeners (ACME or management), trusting Pebble's TLS
// CA, and returns the body of a 200.
func (e *Env) PebbleGet(ctx context.Context, url string) ([]byte, error) {
	caPEM, err := os.ReadFile(e.PebbleTLSCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", e.PebbleTLSCA)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
	return body, nil
}

// PebbleRoot fetches Pebble's current issuing root from the management endpoint /roots/0.
func (e *Env) PebbleRoot(ctx context.Context) (*x509.Certificate, error) {
	body, err := e.PebbleGet(ctx, e.PebbleManagement+"/roots/0")
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertsPEM(string(body))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("GET %s/roots/0: no certificate: %v", e.PebbleManagement, err)
	}
	return certs[0], nil
}

// PebbleBase is scheme://host:port of Pebble's ACME listener.
func (e *Env) PebbleBase() string {
	return strings.TrimSuffix(e.PebbleDirectory, "/dir")
}

// NewPebbleProxy starts a counting ACME proxy in front of Pebble; it is closed when t ends.
func (e *Env) NewPebbleProxy(t testing.TB) *ACMEProxy {
	t.Helper()
	caPEM, err := os.ReadFile(e.PebbleTLSCA)
	require.NoError(t, err)
	p, err := NewACMEProxy(e.PebbleBase(), caPEM)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// ---------------------------------------------------------------------------------------------
// Setup of accounts, DNS configs and roles

var uniqueCounter atomic.Int64

// Unique returns prefix-N with a fresh N, so a test can run again (-count) in the same environment.
func Unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, uniqueCounter.Add(1))
}

func merge(base, overrides map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(overrides))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range overrides {
		if v == nil {
			delete(out, k) // nil removes a field
			continue
		}
		out[k] = v
	}
	return out
}

// AccountData is a valid account at Pebble; overrides replace fields (nil deletes one).
func (e *Env) AccountData(t testing.TB, overrides map[string]any) map[string]any {
	return merge(map[string]any{
		"directory_url":           e.PebbleDirectory,
		"terms_of_service_agreed": true,
		"contact":                 "admin@example.test",
		"ca_bundle":               e.PebbleCAPEM(t),
	}, overrides)
}

// DNSData is a valid rfc2136 config pointing at the environment's BIND; overrides as above.
func (e *Env) DNSData(overrides map[string]any) map[string]any {
	return merge(map[string]any{
		"provider":            "rfc2136",
		"credentials":         e.TSIGCredentials(),
		"zones":               e.Zone,
		"resolvers":           e.DNSAddr,
		"propagation_timeout": "60s",
		"polling_interval":    "500ms",
	}, overrides)
}

// TSIGCredentials are the rfc2136 credentials for the environment's BIND.
func (e *Env) TSIGCredentials() map[string]any {
	return map[string]any{
		"RFC2136_NAMESERVER":     e.DNSAddr,
		"RFC2136_TSIG_KEY":       e.TSIGKeyName,
		"RFC2136_TSIG_ALGORITHM": e.TSIGAlgorithm,
		"RFC2136_TSIG_SECRET":    e.TSIGSecret,
	}
}

// MustWrite writes data to path and requires a 2xx answer.
func MustWrite(t testing.TB, c *vaultapi.Client, path string, data map[string]any) *Resp {
	t.Helper()
	r := MustDo(t, c, http.MethodPut, path, data)
	require.Truef(t, r.Status >= 200 && r.Status < 300, "write %s: %s", path, r)
	return r
}

// CreateAccount writes accounts/<name> (a Pebble account unless overridden).
func (e *Env) CreateAccount(t testing.TB, c *vaultapi.Client, name string, overrides map[string]any) *Resp {
	t.Helper()
	return MustWrite(t, c, Mount+"/accounts/"+name, e.AccountData(t, overrides))
}

// CreateDNS writes config/dns/<name> (rfc2136 to BIND unless overridden).
func (e *Env) CreateDNS(t testing.TB, c *vaultapi.Client, name string, overrides map[string]any) *Resp {
	t.Helper()
	return MustWrite(t, c, Mount+"/config/dns/"+name, e.DNSData(overrides))
}

// DefaultProfile is the Pebble profile roles ask for unless told otherwise. Pebble picks a RANDOM
// profile for an order that names none ("default" 90 days, "shortlived" 300 s or "soak" 180 s, see env-up.sh),
// so tests name one to be deterministic.
const DefaultProfile = "default"

// CreateRole writes roles/<name> with profile DefaultProfile unless data sets "profile" (nil: none).
func CreateRole(t testing.TB, c *vaultapi.Client, name string, data map[string]any) *Resp {
	t.Helper()
	if _, ok := data["profile"]; !ok {
		data = merge(data, map[string]any{"profile": DefaultProfile})
	}
	return MustWrite(t, c, Mount+"/roles/"+name, data)
}

// Issuer names an account, a DNS config and a role made together by SetupIssuer.
type Issuer struct {
	Account, DNS, Role string
}

// SetupIssuer creates account <prefix>-acct (accountOverrides applied), DNS config <prefix>-dns
// and role <prefix> with roleFields (account and dns are filled in).
func (e *Env) SetupIssuer(t testing.TB, c *vaultapi.Client, prefix string, accountOverrides, roleFields map[string]any) Issuer {
	t.Helper()
	is := Issuer{Account: prefix + "-acct", DNS: prefix + "-dns", Role: prefix}
	e.CreateAccount(t, c, is.Account, accountOverrides)
	e.CreateDNS(t, c, is.DNS, nil)
	CreateRole(t, c, is.Role, merge(map[string]any{"account": is.Account, "dns": is.DNS}, roleFields))
	return is
}

// ---------------------------------------------------------------------------------------------
// Certificates

// Cert is a parsed certs/<name> read.
type Cert struct {
	Data         map[string]any
	Leaf         *x509.Certificate
	CAChain      []*x509.Certificate
	IssuingCA    *x509.Certificate
	Key          crypto.Signer
	SerialNumber string
}

// IssueCert writes certs/<name> (adding wait=60s unless data sets "wait"), then reads it until
// it is valid or timeout passes, retrying 503 answers. It fails the test on anything else.
func IssueCert(t testing.TB, c *vaultapi.Client, name string, data map[string]any, timeout time.Duration) *Cert {
	t.Helper()
	if _, ok := data["wait"]; !ok {
		data = merge(data, map[string]any{"wait": "60s"})
	}
	w := MustDo(t, c, http.MethodPut, Mount+"/certs/"+name, data)
	require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, w.Status, "write certs/%s: %s", name, w)
	if w.Status == http.StatusOK {
		require.Equal(t, "valid", fmt.Sprint(w.Data["status"]), "write certs/%s answered 200: %s", name, w)
	} else {
		require.Equalf(t, "pending", fmt.Sprint(w.Data["status"]), "write certs/%s answered 202; last_error: %v\n%s", name, w.Data["last_error"], w)
	}
	return WaitCert(t, c, name, timeout)
}

// WaitCert reads certs/<name> until it answers 200 with a certificate; 503 (retryable) answers
// are retried until timeout.
func WaitCert(t testing.TB, c *vaultapi.Client, name string, timeout time.Duration) *Cert {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
		switch {
		case r.Status == http.StatusOK:
			cert, err := ParseCert(r.Data)
			require.NoErrorf(t, err, "read certs/%s: %s", name, r)
			return cert
		case r.Status == http.StatusServiceUnavailable && !r.FailedAttempt() && time.Now().Before(deadline):
			time.Sleep(time.Second)
		default:
			require.FailNowf(t, "certificate not issued", "read certs/%s after %s: %s", name, time.Since(deadline.Add(-timeout)).Round(time.Second), r)
		}
	}
}

// ParseCert parses the data of a certs/<name> read and checks its internal consistency.
func ParseCert(data map[string]any) (*Cert, error) {
	c := &Cert{Data: data}
	leafPEM, _ := data["certificate"].(string)
	if strings.TrimSpace(leafPEM) == "" {
		return nil, errors.New("empty certificate")
	}
	certs, err := ParseCertsPEM(leafPEM)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("certificate: %v", err)
	}
	c.Leaf = certs[0]
	if raw, ok := data["ca_chain"].([]any); ok {
		for _, p := range raw {
			cs, err := ParseCertsPEM(fmt.Sprint(p))
			if err != nil {
				return nil, fmt.Errorf("ca_chain: %w", err)
			}
			c.CAChain = append(c.CAChain, cs...)
		}
	}
	if s, ok := data["issuing_ca"].(string); ok && strings.TrimSpace(s) != "" {
		cs, err := ParseCertsPEM(s)
		if err != nil || len(cs) == 0 {
			return nil, fmt.Errorf("issuing_ca: %v", err)
		}
		c.IssuingCA = cs[0]
	}
	keyPEM, _ := data["private_key"].(string)
	if strings.TrimSpace(keyPEM) == "" {
		return nil, errors.New("empty private_key")
	}
	c.Key, err = ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	c.SerialNumber = fmt.Sprint(data["serial_number"])
	return c, nil
}

// ParseCertsPEM parses every CERTIFICATE block of s.
func ParseCertsPEM(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return out, nil
}

// ParsePrivateKeyPEM parses a PKCS#8, PKCS#1 or SEC 1 private key.
func ParsePrivateKeyPEM(s string) (crypto.Signer, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if signer, ok := k.(crypto.Signer); ok {
			return signer, nil
		}
		return nil, fmt.Errorf("unsupported key %T", k)
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("cannot parse %q block", block.Type)
}

// KeyMatches reports whether key is the private half of cert's public key.
func KeyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}

// KeyType names a key the way the plugin's key_type does (ec256, ec384, rsa2048, ...).
func KeyType(key crypto.PublicKey) string {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return fmt.Sprintf("ec%d", k.Curve.Params().BitSize)
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "ed25519"
	}
	return fmt.Sprintf("%T", key)
}

// SerialMatches reports whether the plugin's serial_number s denotes cert's serial: hex with or
// without ":"/"-" separators (any case, leading zeros allowed) or decimal.
func SerialMatches(s string, cert *x509.Certificate) bool {
	clean := strings.TrimLeft(strings.NewReplacer(":", "", "-", "", " ", "").Replace(strings.ToLower(strings.TrimSpace(s))), "0")
	return clean != "" && (clean == cert.SerialNumber.Text(16) || clean == strings.TrimLeft(cert.SerialNumber.Text(10), "0"))
}

// SetupProxiedIssuer makes account, DNS config and role <id> (certificate name <id> or <id>/*,
// domain <id>.<zone> and names under it) whose account talks to the CA through proxy, with
// profile.
func (e *Env) SetupProxiedIssuer(t testing.TB, c *vaultapi.Client, proxy *ACMEProxy, id, profile string) Issuer {
	t.Helper()
	return e.SetupIssuer(t, c, id, map[string]any{
		"directory_url": proxy.DirectoryURL(e.PebbleDirectory),
		"ca_bundle":     string(proxy.CAPEM),
	}, map[string]any{
		"allowed_domains":    id + "." + e.Zone,
		"allow_bare_domains": true,
		"allow_subdomains":   true,
		"allowed_cert_names": id + "," + id + "/*",
		"profile":            profile,
		// Fault tests renew by hand right after issuance.
		"forced_renewal_interval": "0s",
	})
}
