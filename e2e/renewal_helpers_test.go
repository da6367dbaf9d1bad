package e2e

// Helpers of the renewal tests (renewal_test.go, ari_test.go, consul_template_test.go): reading a
// certificate's renewal plan, recording when the plugin talks to the CA, the ARI certificate ID,
// Pebble's management API and a real consul-template process.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// ShortlivedProfile is Pebble's 300-second profile (env-up.sh), for renewal tests.
const ShortlivedProfile = "shortlived"

// setupShortlived creates an issuer for one name (<id>.<zone>) with the shortlived profile whose
// account talks to the CA through proxy.
func setupShortlived(t testing.TB, c *vaultapi.Client, id string, proxy *ACMEProxy) (Issuer, string) {
	t.Helper()
	return env.SetupProxiedIssuer(t, c, proxy, id, ShortlivedProfile), id + "." + env.Zone
}

// ---------------------------------------------------------------------------------------------
// Reading a certificate's renewal plan

// certRead is one 200 read of certs/<name> with its renewal fields parsed.
type certRead struct {
	At       time.Time // when the answer arrived
	Cert     *Cert
	Serial   string
	RenewAt  time.Time
	IssuedAt time.Time
	Renewals int64
	TTL      int64
	Rotation int64
	Status   string
}

// readCertPlan reads certs/<name>, requires a 200 with a certificate and parses the renewal fields.
func readCertPlan(t testing.TB, c *vaultapi.Client, name string) certRead {
	t.Helper()
	r := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
	at := time.Now()
	require.Equal(t, http.StatusOK, r.Status, "read certs/%s: %s", name, r)
	cert, err := ParseCert(r.Data)
	require.NoError(t, err, "read certs/%s: %s", name, r)
	return certRead{
		At:       at,
		Cert:     cert,
		Serial:   cert.Leaf.SerialNumber.Text(16),
		RenewAt:  timeField(t, r.Data, "renew_at"),
		IssuedAt: timeField(t, r.Data, "issued_at"),
		Renewals: asInt64(t, r.Data["renewals"]),
		TTL:      asInt64(t, r.Data["ttl"]),
		Rotation: asInt64(t, r.Data["rotation_period"]),
		Status:   fmt.Sprint(r.Data["status"]),
	}
}

// ---------------------------------------------------------------------------------------------
// What the plugin asks the CA, and when

// acmeEvent is one request of interest seen by the proxy.
type acmeEvent struct {
	At   time.Time
	Kind string // "order" (POST new-order) or "ari" (GET renewalInfo)
	// ARIID is the certificate ID of an ARI request.
	ARIID string
}

// acmeRecorder timestamps the new-order and renewalInfo requests going through a proxy (the proxy
// counts them and keeps the payloads but not the times).
type acmeRecorder struct {
	mu     sync.Mutex
	events []acmeEvent
	proxy  *ACMEProxy
}

// recordACME installs a pass-through fault hook on proxy that records events.
func recordACME(proxy *ACMEProxy) *acmeRecorder {
	rec := &acmeRecorder{}
	rec.proxy = proxy
	proxy.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		ev := acmeEvent{At: time.Now()}
		switch {
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/renewalInfo/"):
			ev.Kind, ev.ARIID = "ari", r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		default:
			return false
		}
		rec.mu.Lock()
		rec.events = append(rec.events, ev)
		rec.mu.Unlock()
		return false
	})
	return rec
}

// Events returns the events of kind (all when ""). "order" events are the new orders the CA
// accepted (the proxy's record; refused requests such as Pebble's deliberate badNonce rejections,
// which the client retries, are not orders).
func (r *acmeRecorder) Events(kind string) []acmeEvent {
	var out []acmeEvent
	if kind == "" || kind == "order" {
		for _, at := range r.proxy.NewOrderTimes() {
			out = append(out, acmeEvent{At: at, Kind: "order"})
		}
		if kind == "order" {
			return out
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if kind == "" || e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// ARIChecks is the number of renewalInfo requests for the certificate ID id.
func (r *acmeRecorder) ARIChecks(id string) int {
	n := 0
	for _, e := range r.Events("ari") {
		if e.ARIID == id {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------------------------------------
// ARI (RFC 9773)

// ariCertID is the RFC 9773 certificate identifier of cert, computed independently of the plugin:
// base64url(authority key identifier) "." base64url(content octets of the DER serial number).
func ariCertID(t testing.TB, cert *x509.Certificate) string {
	t.Helper()
	require.NotEmpty(t, cert.AuthorityKeyId, "certificate has no authority key identifier")
	require.Positive(t, cert.SerialNumber.Sign(), "serial number")
	serial := cert.SerialNumber.Bytes()
	if serial[0]&0x80 != 0 { // DER INTEGER is two's complement: a positive number keeps a 0 octet
		serial = append([]byte{0}, serial...)
	}
	return base64.RawURLEncoding.EncodeToString(cert.AuthorityKeyId) + "." + base64.RawURLEncoding.EncodeToString(serial)
}

// setRenewalInfo makes Pebble answer renewalInfo requests for cert with window [start, end] (no
// check: end may precede start) through its management API /set-renewal-info/.
func setRenewalInfo(t testing.TB, cert *x509.Certificate, start, end time.Time) {
	t.Helper()
	window, err := json.Marshal(map[string]any{"suggestedWindow": map[string]string{
		"start": start.UTC().Format(time.RFC3339), "end": end.UTC().Format(time.RFC3339),
	}})
	require.NoError(t, err)
	body, err := json.Marshal(map[string]string{
		"Certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		"ARIResponse": string(window),
	})
	require.NoError(t, err)
	caPEM, err := os.ReadFile(env.PebbleTLSCA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM), "no certificate in %s", env.PebbleTLSCA)
	hc := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	resp, err := hc.Post(env.PebbleManagement+"/set-renewal-info/", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var answer bytes.Buffer
	_, _ = answer.ReadFrom(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "POST /set-renewal-info/: %s", answer.String())
}

// ---------------------------------------------------------------------------------------------
// consul-template

// consulTemplateBin is the consul-template of scripts/tools.sh; the test fails with the how-to
// when it is missing.
func consulTemplateBin(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(ToolsDir(), "bin", "consul-template")
	st, err := os.Stat(bin)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		require.FailNowf(t, "consul-template missing",
			"consul-template binary not found at %s: run `bash scripts/tools.sh consul-template` (installs v0.41.1)", bin)
	}
	return bin
}

// readToken creates a token whose only right is reading certs/<name>.
func readToken(t testing.TB, c *vaultapi.Client, name string) string {
	t.Helper()
	return policyToken(t, c, "read-cert-"+strings.ReplaceAll(name, "/", "-"),
		fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", Mount+"/certs/"+name))
}

// policyToken writes the ACL policy named policy with the rules hcl (none when hcl is empty: the
// token then has Vault's default policy only) and creates a token with that policy alone.
func policyToken(t testing.TB, c *vaultapi.Client, policy, hcl string) string {
	t.Helper()
	data := map[string]any{"policies": []string{"default"}, "ttl": "1h"}
	if hcl != "" {
		MustWrite(t, c, "sys/policies/acl/"+policy, map[string]any{"policy": hcl})
		data = map[string]any{"policies": []string{policy}, "no_default_policy": true, "ttl": "1h"}
	}
	r := MustWrite(t, c, "auth/token/create", data)
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &tok), "%s", r)
	require.NotEmpty(t, tok.Auth.ClientToken, "%s", r)
	return tok.Auth.ClientToken
}

// consulTemplate is a running consul-template process.
type consulTemplate struct {
	Dest string // the rendered file
	Log  string // its output
}

// startConsulTemplate runs consul-template against the environment's Vault with token, rendering
// tmpl into a file of t.TempDir(). It is stopped (SIGINT, then SIGKILL) when t ends; its log is
// printed if t failed.
func startConsulTemplate(t testing.TB, token, tmpl string) *consulTemplate {
	t.Helper()
	return startConsulTemplateAt(t, env.VaultAddr, token, tmpl)
}

// startConsulTemplateAt is startConsulTemplate against the Vault at vaultAddr (a test's own
// environment).
func startConsulTemplateAt(t testing.TB, vaultAddr, token, tmpl string) *consulTemplate {
	t.Helper()
	bin := consulTemplateBin(t)
	dir := t.TempDir()
	ct := &consulTemplate{Dest: filepath.Join(dir, "out.pem"), Log: filepath.Join(dir, "consul-template.log")}
	src := filepath.Join(dir, "in.tpl")
	require.NoError(t, os.WriteFile(src, []byte(tmpl), 0o600))
	cfg := filepath.Join(dir, "config.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`log_level = "debug"
vault {
  address     = %q
  token       = %q
  renew_token = false
  retry {
    attempts    = 0
    backoff     = "250ms"
    max_backoff = "2s"
  }
}
template {
  source      = %q
  destination = %q
  perms       = "0600"
}
`, vaultAddr, token, src, ct.Dest)), 0o600))

	cmd := exec.Command(bin, "-config", cfg)
	// Only loopback Vault, no other Vault/Consul settings from the caller's environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "CONSUL_") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+dir)
	startLogged(t, cmd, ct.Log, os.Interrupt, "consul-template")
	return ct
}

// renderedSerial is the serial (hex) of the certificate in ct's destination file, "" when the
// file does not exist yet or holds no certificate.
func (ct *consulTemplate) renderedSerial() string {
	b, err := os.ReadFile(ct.Dest)
	if err != nil {
		return ""
	}
	certs, err := ParseCertsPEM(string(b))
	if err != nil {
		return ""
	}
	return certs[0].SerialNumber.Text(16)
}

// waitRendered waits until ct's file holds the certificate with serial (hex) and returns when it
// was seen.
func (ct *consulTemplate) waitRendered(ctx context.Context, serial string) (time.Time, error) {
	for {
		if ct.renderedSerial() == serial {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("file %s still holds serial %q, not %q", ct.Dest, ct.renderedSerial(), serial)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitRenewed reads certs/<name> every interval until it serves a certificate other than the one
// with serial (hex) and returns that read; it fails the test at deadline. Every read must serve an
// unexpired certificate.
func waitRenewed(t testing.TB, c *vaultapi.Client, name, serial string, interval time.Duration, deadline time.Time) certRead {
	t.Helper()
	for {
		r := readCertPlan(t, c, name)
		require.Truef(t, r.At.Before(r.Cert.Leaf.NotAfter), "read at %s served certificate %s, expired at %s",
			r.At.Format(time.RFC3339), r.Serial, r.Cert.Leaf.NotAfter.Format(time.RFC3339))
		if r.Serial != serial {
			return r
		}
		require.Truef(t, time.Now().Before(deadline), "certs/%s still serves %s at %s (renew_at %s)",
			name, serial, time.Now().Format(time.RFC3339), r.RenewAt.Format(time.RFC3339))
		time.Sleep(interval)
	}
}
