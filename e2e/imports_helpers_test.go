package e2e

// Helpers of imports_test.go (migrations from certbot and lecertvend, CSR signing, key types,
// preferred chains, revoke_on_delete): running the migration scripts and certbot for real, a private
// Pebble started by a test with its own settings, Pebble's management API, reads of certificates
// without a private key, and a proxy hook that records the account (JWS kid) of every new order.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// envValue is a variable of STATE_DIR/env.json that Env may not have a field for (read here so
// these tests do not depend on the harness growing one).
func envValue(t testing.TB, e *Env, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.StateDir, "env.json"))
	require.NoError(t, err)
	var m map[string]string
	require.NoError(t, json.Unmarshal(b, &m), "parse %s/env.json", e.StateDir)
	return m[name]
}

// http01Name is a fresh DNS name that BIND resolves to 127.0.0.1 (env-up.sh's *.http.<zone>
// wildcard), so a CA validating HTTP-01 for it connects to 127.0.0.1.
func http01Name(t testing.TB, label string) string {
	t.Helper()
	base := envValue(t, env, "HTTP01_BASE")
	require.NotEmpty(t, base, "env.json has no HTTP01_BASE: scripts/env-up.sh must make every name under http.%s resolve to 127.0.0.1", env.Zone)
	return label + "." + base
}

// runScript runs scripts/<script> with args against the environment's Vault (the real vault CLI on
// PATH, VAULT_ADDR and the root token; no other VAULT_* setting of the caller) and returns its
// combined output. It fails the test if the script runs longer than five minutes.
func runScript(t testing.TB, script string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(RepoRoot(), "scripts", script)}, args...)...)
	home := filepath.Join(env.StateDir, "cli-home")
	require.NoError(t, os.MkdirAll(home, 0o700))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "PATH=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "VAULT_ADDR="+env.VaultAddr, "VAULT_TOKEN="+env.VaultToken, "HOME="+home,
		"PATH="+filepath.Dir(env.VaultBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "scripts/%s did not finish within 5 minutes:\n%s", script, out.String())
	t.Logf("scripts/%s %s:\n%s", script, strings.Join(args, " "), out.String())
	return out.String(), err
}

// ---------------------------------------------------------------------------------------------
// Ports and a private Pebble

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a free loopback TCP port below Linux's ephemeral range (as env-up.sh does, so
// that no outgoing connection takes it before its server binds it), never the same one twice.
func freePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)
}

// freePorts is freePort for n consecutive ports (a Vault dev server takes port+1 for its cluster
// listener); it returns the first.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
next:
	for range 500 {
		p := 20000 + rand.IntN(12000)
		for i := range n {
			if portsUsed[p+i] {
				continue next
			}
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
			if err != nil {
				continue next
			}
			_ = ln.Close()
		}
		for i := range n {
			portsUsed[p+i] = true
		}
		return p
	}
	require.FailNow(t, "no free port found")
	return 0
}

// privatePebble is a Pebble a test starts for itself, with the environment's configuration (only its
// "default" 90-day profile, so orders that name none are deterministic) and BIND, on its own ports.
type privatePebble struct {
	Directory  string // https://127.0.0.1:<port>/dir
	Management string // https://127.0.0.1:<port>
	HTTPPort   int    // where it sends HTTP-01 validations
	Log        string // its log file
}

// Base is scheme://host:port of its ACME listener.
func (p *privatePebble) Base() string { return strings.TrimSuffix(p.Directory, "/dir") }

// startPrivatePebble starts a Pebble for t (stopped when t ends) with extraEnv added to its
// environment (e.g. PEBBLE_ALTERNATE_ROOTS=2). It never rejects nonces and never reuses
// authorizations, so every order proves its names with a challenge.
func startPrivatePebble(t testing.TB, extraEnv ...string) *privatePebble {
	t.Helper()
	b, err := os.ReadFile(env.PebbleConfig)
	require.NoError(t, err)
	var cfg map[string]map[string]any
	require.NoError(t, json.Unmarshal(b, &cfg), "parse %s", env.PebbleConfig)
	pc := cfg["pebble"]
	require.NotNil(t, pc, "%s has no pebble object", env.PebbleConfig)
	acmePort, mgmtPort, httpPort, tlsPort := freePort(t), freePort(t), freePort(t), freePort(t)
	pc["listenAddress"] = fmt.Sprintf("127.0.0.1:%d", acmePort)
	pc["managementListenAddress"] = fmt.Sprintf("127.0.0.1:%d", mgmtPort)
	pc["httpPort"] = httpPort
	pc["tlsPort"] = tlsPort
	profiles, _ := pc["profiles"].(map[string]any)
	require.Contains(t, profiles, DefaultProfile, "%s has no %q profile", env.PebbleConfig, DefaultProfile)
	pc["profiles"] = map[string]any{DefaultProfile: profiles[DefaultProfile]}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "pebble.json")
	out, err := json.MarshalIndent(cfg, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgFile, out, 0o600))

	p := &privatePebble{
		Directory:  fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort),
		Management: fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		HTTPPort:   httpPort,
		Log:        filepath.Join(dir, "pebble.log"),
	}
	cmd := exec.Command(env.PebbleBin, "-config", cfgFile, "-dnsserver", env.DNSAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=0", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Env = append(cmd.Env, extraEnv...)
	done := startLogged(t, cmd, p.Log, syscall.SIGTERM, "the private Pebble")

	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errDir := pebbleGet(p.Directory)
		_, errMgmt := pebbleGet(p.Management + "/roots/0")
		if errDir == nil && errMgmt == nil {
			return p
		}
		select {
		case <-done:
			require.FailNowf(t, "private Pebble exited", "%s\n%s", cmd.String(), tailFile(p.Log, 30))
		case <-time.After(200 * time.Millisecond):
		}
		require.Truef(t, time.Now().Before(deadline), "private Pebble did not answer within 30 s: %v / %v\n%s", errDir, errMgmt, tailFile(p.Log, 30))
	}
}

// tailFile is the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pebbleGet GETs url from a Pebble (ACME or management listener) and returns the body of a 200.
func pebbleGet(url string) ([]byte, error) { return env.PebbleGet(context.Background(), url) }

// pebbleRoots fetches roots 0..n-1 from a Pebble's management API (/roots/<i>): the default chain's
// root first, then the alternates.
func pebbleRoots(t testing.TB, management string, n int) []*x509.Certificate {
	t.Helper()
	var roots []*x509.Certificate
	for i := range n {
		body, err := pebbleGet(fmt.Sprintf("%s/roots/%d", management, i))
		require.NoError(t, err)
		certs, err := ParseCertsPEM(string(body))
		require.NoError(t, err, "root %d", i)
		roots = append(roots, certs[0])
	}
	return roots
}

// pebbleCertStatus is what a Pebble's management API says about a certificate (by serial):
// "Valid" or "Revoked" with the reason code.
type pebbleCertStatus struct {
	Status    string
	Serial    string
	Reason    *uint `json:",omitempty"`
	RevokedAt string
}

func certStatusAt(t testing.TB, management string, cert *x509.Certificate) pebbleCertStatus {
	t.Helper()
	body, err := pebbleGet(management + "/cert-status-by-serial/" + cert.SerialNumber.Text(16))
	require.NoError(t, err)
	var st pebbleCertStatus
	require.NoError(t, json.Unmarshal(body, &st), "%s", body)
	return st
}

// ---------------------------------------------------------------------------------------------
// certbot

// certbotBin is Debian's certbot; the test fails with the how-to when it is missing.
func certbotBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("certbot")
	if err != nil {
		require.FailNow(t, "certbot missing", "certbot not found on PATH: run `bash scripts/tools.sh certbot` (apt-get install -y certbot)")
	}
	return p
}

// runCertbot runs the real certbot with args against a CA whose HTTPS roots are in caFile, with its
// configuration, work and log directories under base, and fails the test when it fails.
func runCertbot(t testing.TB, base, caFile string, args ...string) string {
	t.Helper()
	bin := certbotBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	all := append([]string{"--non-interactive",
		"--config-dir", filepath.Join(base, "config"), "--work-dir", filepath.Join(base, "work"), "--logs-dir", filepath.Join(base, "logs")}, args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "REQUESTS_CA_BUNDLE="+caFile, "HOME="+base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(base, "logs", "letsencrypt.log"))
		lines := strings.Split(string(log), "\n")
		if len(lines) > 80 {
			lines = lines[len(lines)-80:]
		}
		require.NoErrorf(t, err, "certbot %s:\n%s\nlast lines of its log:\n%s", strings.Join(all, " "), out.String(), strings.Join(lines, "\n"))
	}
	return out.String()
}

// ---------------------------------------------------------------------------------------------
// The account of every new order

// orderAccounts records, through a proxy's fault hook, the account URL (JWS "kid") of every
// new-order request and how many challenge responses (POST with a JSON body of {} to a challenge
// URL) pass through.
type orderAccounts struct {
	mu         sync.Mutex
	kids       []string
	challenges int
}

func recordOrderAccounts(proxy *ACMEProxy) *orderAccounts {
	rec := &orderAccounts{}
	proxy.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost {
			return false
		}
		body, err := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return false
		}
		var jws struct {
			Protected string `json:"protected"`
			Payload   string `json:"payload"`
		}
		if json.Unmarshal(body, &jws) != nil {
			return false
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		switch {
		case r.URL.Path == proxy.NewOrderPath():
			raw, err := base64.RawURLEncoding.DecodeString(jws.Protected)
			if err != nil {
				return false
			}
			var hdr struct {
				Kid string `json:"kid"`
			}
			if json.Unmarshal(raw, &hdr) == nil {
				rec.kids = append(rec.kids, hdr.Kid)
			}
		case strings.Contains(r.URL.Path, "/chal") && jws.Payload != "":
			// A challenge response carries the payload {} (a POST-as-GET has an empty one).
			rec.challenges++
		}
		return false
	})
	return rec
}

func (r *orderAccounts) Kids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.kids...)
}

func (r *orderAccounts) Challenges() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.challenges
}

func (r *orderAccounts) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kids, r.challenges = nil, 0
}

// ---------------------------------------------------------------------------------------------
// Certificates without a private key (CSR) and raw reads

// certNoKey is a 200 read of certs/<name> parsed without requiring a private key.
type certNoKey struct {
	Resp  *Resp
	Leaf  *x509.Certificate
	Chain []*x509.Certificate
}

func parseCertNoKey(t testing.TB, name string, r *Resp) certNoKey {
	t.Helper()
	certs, err := ParseCertsPEM(fmt.Sprint(r.Data["certificate"]))
	require.NoError(t, err, "read certs/%s: %s", name, r)
	out := certNoKey{Resp: r, Leaf: certs[0]}
	if raw, ok := r.Data["ca_chain"].([]any); ok {
		for _, p := range raw {
			cs, err := ParseCertsPEM(fmt.Sprint(p))
			require.NoError(t, err, "ca_chain of certs/%s", name)
			out.Chain = append(out.Chain, cs...)
		}
	}
	return out
}

// waitCertNoKey reads certs/<name> until it answers 200 with a certificate (retrying 503 answers
// of a pending issuance until timeout).
func waitCertNoKey(t testing.TB, c *vaultapi.Client, name string, timeout time.Duration) certNoKey {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
		switch {
		case r.Status == http.StatusOK:
			return parseCertNoKey(t, name, r)
		case r.Status == http.StatusServiceUnavailable && !r.FailedAttempt() && time.Now().Before(deadline):
			time.Sleep(500 * time.Millisecond)
		default:
			require.FailNowf(t, "certificate not issued", "read certs/%s: %s", name, r)
		}
	}
}

// waitNewSerial reads certs/<name> until it serves a certificate other than old (or fails at
// timeout), as after renew/<name>.
func waitNewSerial(t testing.TB, c *vaultapi.Client, name string, old *x509.Certificate, timeout time.Duration) certNoKey {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
		if r.Status == http.StatusOK {
			got := parseCertNoKey(t, name, r)
			if got.Leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
				return got
			}
			require.Emptyf(t, r.Data["last_error"], "certs/%s: renewal failed: %s", name, r)
		}
		require.Truef(t, time.Now().Before(deadline), "certs/%s still serves serial %s after %s: %s", name, old.SerialNumber.Text(16), timeout, r)
		time.Sleep(500 * time.Millisecond)
	}
}

// bodyHasNo fails the test when an answer's raw body holds s (e.g. "PRIVATE KEY").
func bodyHasNo(t testing.TB, what string, r *Resp, s string) {
	t.Helper()
	require.NotContainsf(t, string(r.Body), s, "%s answers with %q: %s", what, s, r)
}
