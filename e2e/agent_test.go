package e2e

// Vault Agent (the same vault binary as the environment's server) renders a certificate of the
// engine to files and follows its renewals. The configuration is e2e/testdata/agent/vault-agent.hcl,
// the file the README shows, with the test's own addresses, names and paths.

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SoakProfile is Pebble's 180-second profile (env-up.sh): the plugin renews its certificates
// every 60 to 120 s (a point in Pebble's ARI window, kept out of the first and last third of the
// life), so a test sees three renewals in about five minutes.
const SoakProfile = "soak"

// consumerRenewals is how many natural renewals the consumer tests follow, and consumerBound how
// long after the API serves a renewed certificate the consumer must have it.
const (
	consumerRenewals = 3
	consumerBound    = 10 * time.Second
)

// agentRotationRe is consul-template's log line (embedded in Vault Agent) when a secret without a
// lease carries rotation_period: it then sleeps the secret's ttl (+1 s) before reading it again.
var agentRotationRe = regexp.MustCompile(`Found rotation_period and set lease duration to (-?\d+) seconds`)

// TestVaultAgentRendersRenewedCertificates runs `vault agent` with AppRole auto-auth (a role whose
// policy may only read certs/<prefix>/*) and the README's templates: certificate, key, chain and a
// bundle of all three. Across three natural renewals of a 180-second certificate the rendered files
// must hold each new certificate within 10 s of the API serving it, the bundle's key must match its
// certificate at every sample (one read, one file), the separate files must agree with each other
// (allowing the moment between two of the agent's writes), and no sample may hold an expired
// certificate. The agent runs with static_secret_render_interval = 1h: it re-reads because the
// read carries ttl and rotation_period (its log says so), not because of that interval.
func TestVaultAgentRendersRenewedCertificates(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock() // the plugin's timers must stay alive throughout (see faults_test.go)
	defer devPluginMu.RUnlock()

	c := env.RootClient(t)
	id, name, _, is, first, life := issueSoakCert(t, c, "agent")
	firstSerial := first.Leaf.SerialNumber.Text(16)

	// AppRole: a role whose token may only read certs/<id>/*, its role_id and a secret_id in files.
	enableAppRole(t, c)
	policy := "agent-" + id
	MustWrite(t, c, "sys/policies/acl/"+policy, map[string]any{
		"policy": testdataWith(t, "agent/policy.hcl", Mount+"/certs/web/", Mount+"/certs/"+id+"/"),
	})
	role := "agent-" + id
	MustWrite(t, c, "auth/approle/role/"+role, map[string]any{
		"token_policies": []string{policy}, "token_ttl": "1h", "token_max_ttl": "2h", "secret_id_ttl": "2h",
	})
	r := MustDo(t, c, http.MethodGet, "auth/approle/role/"+role+"/role-id", nil)
	require.Equal(t, http.StatusOK, r.Status, "read role-id: HTTP %d", r.Status)
	roleID, _ := r.Data["role_id"].(string)
	require.NotEmpty(t, roleID, "role-id answer has no role_id")
	r = MustDo(t, c, http.MethodPut, "auth/approle/role/"+role+"/secret-id", nil)
	require.Equal(t, http.StatusOK, r.Status, "create secret-id: HTTP %d", r.Status)
	secretID, _ := r.Data["secret_id"].(string)
	require.NotEmpty(t, secretID, "secret-id answer has no secret_id")

	// As an attacker holding the role's credentials: nothing but certs/<id>/*.
	tok := appRoleLogin(t, roleID, secretID)
	tc, err := env.Client(tok)
	require.NoError(t, err)
	r = MustDo(t, tc, http.MethodGet, Mount+"/certs/"+name, nil)
	require.Equal(t, http.StatusOK, r.Status, "the role's token reads its certificate")
	for _, p := range []string{Mount + "/certs/other-" + id + "/www", Mount + "/accounts/" + is.Account, Mount + "/config/dns/" + is.DNS, Mount + "/roles/" + is.Role} {
		r = MustDo(t, tc, http.MethodGet, p, nil)
		require.Equalf(t, http.StatusForbidden, r.Status, "the role's token must not read %s", p)
	}
	r = MustDo(t, tc, http.MethodPut, Mount+"/certs/"+id+"/evil", map[string]any{"role": is.Role, "domains": "evil." + id + "." + env.Zone})
	require.Equal(t, http.StatusForbidden, r.Status, "the role's token must not declare certificates")

	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	require.NoError(t, os.MkdirAll(tlsDir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "role-id"), []byte(roleID), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret-id"), []byte(secretID), 0o600))
	cfg := filepath.Join(dir, "vault-agent.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(testdataWith(t, "agent/vault-agent.hcl",
		"http://127.0.0.1:8200", env.VaultAddr,
		"/etc/vault-agent/", dir+"/",
		"/etc/tls/www/", tlsDir+"/",
		`letsencrypt/certs/web/www`, Mount+"/certs/"+name,
	)), 0o600))

	logPath := filepath.Join(dir, "vault-agent.log")
	cmd := exec.Command(env.VaultBin, "agent", "-config="+cfg, "-log-level=debug")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+dir)
	exited := startLogged(t, cmd, logPath, os.Interrupt, "vault agent")

	files := renderedFiles{Cert: filepath.Join(tlsDir, "cert.pem"), Key: filepath.Join(tlsDir, "key.pem"),
		Chain: filepath.Join(tlsDir, "chain.pem"), Bundle: filepath.Join(tlsDir, "bundle.pem")}
	probe, torn := files.follow(t, exited, "vault agent", logPath, firstSerial)
	for _, f := range []string{"key.pem", "bundle.pem"} {
		st, err := os.Stat(filepath.Join(tlsDir, f))
		require.NoError(t, err)
		assert.Equalf(t, os.FileMode(0o600), st.Mode().Perm(), "%s holds the key: perms 0600", f)
	}
	b, err := os.ReadFile(filepath.Join(tlsDir, "key.pem"))
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(fmt.Sprint(first.Data["private_key"])), strings.TrimSpace(string(b)), "key.pem holds the key as read")

	start := time.Now()
	rep := followRenewals(t, c, name, firstSerial, consumerRenewals, 100*time.Millisecond, consumerBound,
		time.Now().Add(consumerRenewals*life*2/3+time.Minute), probe)
	t.Logf("Vault Agent: %d renewals in %s, delays from the API serving a certificate to the agent's files holding it: %v; %d samples saw the separate files between two of the agent's writes",
		len(rep.Renewals), time.Since(start).Round(time.Second), rep.Delays(), torn.Load())

	// How the agent knew: consul-template's rule for secrets without a lease that carry
	// rotation_period, one line per read, with the ttl the plugin returned.
	logText, err := os.ReadFile(logPath)
	require.NoError(t, err)
	var ttls []int
	for _, m := range agentRotationRe.FindAllStringSubmatch(string(logText), -1) {
		n, _ := strconv.Atoi(m[1])
		ttls = append(ttls, n)
	}
	require.GreaterOrEqualf(t, len(ttls), consumerRenewals+1, "the agent log shows a read governed by ttl/rotation_period for every version rendered:\n%s", tailFile(logPath, 40))
	for _, ttl := range ttls {
		require.LessOrEqualf(t, time.Duration(ttl)*time.Second, life, "a ttl (%d s) longer than the certificate's life", ttl)
	}
	t.Logf("the agent re-read certs/%s %d times, each after the ttl the read returned (s): %v (static_secret_render_interval: 1h)", name, len(ttls), ttls)

	// Nothing secret in the agent's log.
	for what, secret := range map[string]string{"secret_id": secretID, "private key": pemBody(fmt.Sprint(first.Data["private_key"]))} {
		require.NotContainsf(t, string(logText), secret, "the agent log holds the %s", what)
	}
}

// enableAppRole enables the approle auth method at auth/approle unless it is (other tests or a
// second run may have done it).
func enableAppRole(t testing.TB, c *vaultapi.Client) {
	t.Helper()
	r := MustDo(t, c, http.MethodGet, "sys/auth", nil)
	require.Equal(t, http.StatusOK, r.Status, "list auth methods: %s", r)
	if _, ok := r.Data["approle/"]; ok {
		return
	}
	r = MustDo(t, c, http.MethodPost, "sys/auth/approle", map[string]any{"type": "approle"})
	if r.Status >= 300 && !strings.Contains(r.ErrorText(), "already in use") {
		require.FailNowf(t, "enable approle", "%s", r)
	}
}

// appRoleLogin logs in at auth/approle and returns the token (never logged).
func appRoleLogin(t testing.TB, roleID, secretID string) string {
	t.Helper()
	c, err := env.Client("")
	require.NoError(t, err)
	r := MustDo(t, c, http.MethodPut, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	require.Equal(t, http.StatusOK, r.Status, "approle login: HTTP %d", r.Status)
	var login struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &login))
	require.NotEmpty(t, login.Auth.ClientToken, "approle login answered no token")
	return login.Auth.ClientToken
}

// renderedFiles names the files a consumer renders from certs/<name>: the certificate, its key,
// its chain and, when not empty, a bundle of key, certificate and chain.
type renderedFiles struct {
	Cert, Key, Chain, Bundle string
}

// check reads the files and returns the certificate they hold. The bundle (key, certificate and
// chain from one read, written at once) must hold a key that matches its certificate, always. The
// separate files are written one after another, so a look between two writes may see a new
// certificate beside the old key: such a look is retried (and counted in torn) for up to a second
// before it counts as a failure. The chain's first certificate must have signed the certificate.
func (f renderedFiles) check(torn *atomic.Int64) (*x509.Certificate, error) {
	var err error
	for try := 0; try < 10; try++ {
		if try > 0 {
			torn.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
		var bLeaf *x509.Certificate
		if f.Bundle != "" {
			bundle, berr := os.ReadFile(f.Bundle)
			if berr != nil {
				return nil, berr
			}
			leaf, chain, keyOK, berr := parseServed(string(bundle), string(bundle))
			switch {
			case berr != nil:
				return nil, fmt.Errorf("%s: %w", f.Bundle, berr)
			case !keyOK:
				return nil, fmt.Errorf("%s: the key does not match certificate %s (a torn read)", f.Bundle, leaf.SerialNumber.Text(16))
			case len(chain) == 0:
				return nil, fmt.Errorf("%s holds no chain", f.Bundle)
			}
			bLeaf = leaf
		}
		var certPEM, keyPEM, chainPEM []byte
		if certPEM, err = os.ReadFile(f.Cert); err != nil {
			return nil, err
		}
		if keyPEM, err = os.ReadFile(f.Key); err != nil {
			return nil, err
		}
		if chainPEM, err = os.ReadFile(f.Chain); err != nil {
			return nil, err
		}
		leaf, _, keyOK, perr := parseServed(string(certPEM), string(keyPEM))
		switch {
		case perr != nil:
			err = fmt.Errorf("%s, %s: %w", f.Cert, f.Key, perr)
		case !keyOK:
			err = fmt.Errorf("%s does not match %s (%s)", f.Key, f.Cert, leaf.SerialNumber.Text(16))
		case bLeaf != nil && leaf.SerialNumber.Cmp(bLeaf.SerialNumber) != 0:
			err = fmt.Errorf("%s holds %s, %s %s", f.Cert, leaf.SerialNumber.Text(16), f.Bundle, bLeaf.SerialNumber.Text(16))
		default:
			chain, cerr := ParseCertsPEM(string(chainPEM))
			if cerr != nil {
				err = fmt.Errorf("%s: %w", f.Chain, cerr)
				continue
			}
			if serr := leaf.CheckSignatureFrom(chain[0]); serr != nil {
				err = fmt.Errorf("the first certificate of %s did not sign %s: %w", f.Chain, f.Cert, serr)
				continue
			}
			return leaf, nil
		}
	}
	return nil, err
}

// parseServed parses a certificate file (leaf first, then its chain) and a key file, and reports
// whether the key is the leaf's.
func parseServed(certPEM, keyPEM string) (leaf *x509.Certificate, chain []*x509.Certificate, keyMatches bool, err error) {
	certs, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, nil, false, err
	}
	key, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, false, fmt.Errorf("key: %w", err)
	}
	return certs[0], certs[1:], KeyMatches(key, certs[0]), nil
}

// pemBody is the base64 text of a PEM block without its armour lines, to look for it in logs.
func pemBody(s string) string {
	var body []string
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "-----") {
			body = append(body, line)
		}
	}
	if len(body) > 0 {
		return body[len(body)/2] // one line of it suffices, and matches however the log wraps
	}
	return s
}

// follow waits (30 s at most) until the files rendered by a consumer process (what, logging to
// logPath, exited when it ends) hold the certificate of serial firstSerial, and returns the probe
// that checks them from then on (failing once the process has exited) and the count of looks
// between two of its writes.
func (f renderedFiles) follow(t *testing.T, exited <-chan struct{}, what, logPath, firstSerial string) (func() (*x509.Certificate, error), *atomic.Int64) {
	t.Helper()
	torn := new(atomic.Int64)
	probe := func() (*x509.Certificate, error) {
		select {
		case <-exited:
			return nil, fmt.Errorf("%s exited:\n%s", what, tailFile(logPath, 30))
		default:
		}
		return f.check(torn)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaf, err := probe()
		if err == nil && leaf.SerialNumber.Text(16) == firstSerial {
			return probe, torn
		}
		require.Truef(t, time.Now().Before(deadline), "%s did not render serial %s within 30 s: %v\n%s", what, firstSerial, err, tailFile(logPath, 40))
		time.Sleep(100 * time.Millisecond)
	}
}
