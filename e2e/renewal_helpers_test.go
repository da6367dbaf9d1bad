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
	return createReadToken(t, c, name, false)
}

// createReadToken creates a token that may read certs/<name> and, with withDefault, holds Vault's
// default policy too (renew-self and lookup-self, which consul-template uses to renew its token).
func createReadToken(t testing.TB, c *vaultapi.Client, name string, withDefault bool) string {
	t.Helper()
	return policyToken(t, c, "read-cert-"+strings.ReplaceAll(name, "/", "-"),
		fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", Mount+"/certs/"+name), withDefault)
}

// policyToken writes the ACL policy named policy with the rules hcl (none when hcl is empty: the
// token then has Vault's default policy only) and creates a token with that policy alone, or with
// Vault's default policy too when withDefault.
func policyToken(t testing.TB, c *vaultapi.Client, policy, hcl string, withDefault bool) string {
	t.Helper()
	data := map[string]any{"policies": []string{"default"}, "ttl": "1h"}
	if hcl != "" {
		MustWrite(t, c, "sys/policies/acl/"+policy, map[string]any{"policy": hcl})
		data = map[string]any{"policies": []string{policy}, "no_default_policy": !withDefault, "ttl": "1h"}
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

	runConsulTemplate(t, bin, cfg, dir, ct.Log)
	return ct
}

// runConsulTemplate runs `bin -config cfg` with HOME=dir, no Vault or Consul setting from the
// caller's environment and the environment variables extraEnv (e.g. VAULT_TOKEN=...), its output
// in logPath. It is stopped (SIGINT, then SIGKILL) when t ends; its log is printed if t failed.
func runConsulTemplate(t testing.TB, bin, cfg, dir, logPath string, extraEnv ...string) <-chan struct{} {
	t.Helper()
	cmd := exec.Command(bin, "-config", cfg, "-log-level", "debug")
	// Only loopback Vault, no other Vault/Consul settings from the caller's environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "CONSUL_") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, "HOME="+dir), extraEnv...)
	return startLogged(t, cmd, logPath, os.Interrupt, "consul-template")
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

// ---------------------------------------------------------------------------------------------
// Following renewals through a consumer (Vault Agent, consul-template + nginx, Nomad's template)

// consumerProbe looks once at what a consumer holds or serves now and returns its leaf
// certificate, or why it could not (a file that does not parse, a key that does not match, a
// failed TLS handshake).
type consumerProbe func() (*x509.Certificate, error)

// renewalFollowed is one certificate version and when each side first had it.
type renewalFollowed struct {
	Serial     string
	IssuedAt   time.Time // the plugin's issued_at
	OnAPI      time.Time // the first read of certs/<name> that served it
	AtConsumer time.Time // the first probe that saw it (zero: never)
}

// Delay is how long after the API served the certificate the consumer had it.
func (r renewalFollowed) Delay() time.Duration { return r.AtConsumer.Sub(r.OnAPI) }

// followReport is what followRenewals saw.
type followReport struct {
	Renewals []renewalFollowed // the versions after the first, in the order the API served them
	Probes   int               // probes made
	APIReads int               // reads of certs/<name> made
}

// String is the report's table, one line per renewal.
func (f followReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d probes, %d API reads\n", f.Probes, f.APIReads)
	for i, r := range f.Renewals {
		fmt.Fprintf(&b, "  renewal %d: serial %s issued_at %s, on the API %s, at the consumer %s: delay %s (%s after issued_at)\n",
			i+1, r.Serial, r.IssuedAt.Format("15:04:05.000"), r.OnAPI.Format("15:04:05.000"),
			r.AtConsumer.Format("15:04:05.000"), r.Delay().Round(time.Millisecond), r.AtConsumer.Sub(r.IssuedAt).Round(time.Millisecond))
	}
	return b.String()
}

// Delays is the delay of every renewal, for the README's figures.
func (f followReport) Delays() []string {
	var out []string
	for _, r := range f.Renewals {
		out = append(out, r.Delay().Round(100*time.Millisecond).String())
	}
	return out
}

// followRenewals watches certificate name through the API (a read every 250 ms) and through a
// consumer (probe every probeEvery) until the consumer has had `renewals` certificates newer than
// firstSerial (hex), or until deadline. It fails the test when a probe fails or sees an expired
// certificate, when an API read serves an expired certificate, when the consumer has a certificate
// the API never served, and when a renewal reaches the consumer more than bound after the API
// served it (or never). The certificates the API serves must follow each other without gaps the
// consumer skips.
func followRenewals(t testing.TB, c *vaultapi.Client, name, firstSerial string, renewals int, probeEvery, bound time.Duration, deadline time.Time, probe consumerProbe) followReport {
	t.Helper()
	type apiSeen struct {
		at       time.Time
		issuedAt time.Time
	}
	var (
		mu       sync.Mutex
		onAPI    = map[string]apiSeen{}
		apiOrder []string
		apiErrs  []string
		apiReads int
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r, err := Do(ctx, c, http.MethodGet, Mount+"/certs/"+name, nil)
			cancel()
			at := time.Now()
			mu.Lock()
			apiReads++
			switch {
			case err != nil:
				apiErrs = append(apiErrs, fmt.Sprintf("%s: read certs/%s: %v", at.Format(time.RFC3339Nano), name, err))
			case r.Status != http.StatusOK:
				apiErrs = append(apiErrs, fmt.Sprintf("%s: read certs/%s: %s", at.Format(time.RFC3339Nano), name, r))
			default:
				cert, perr := ParseCert(r.Data)
				if perr != nil {
					apiErrs = append(apiErrs, fmt.Sprintf("%s: read certs/%s: %v", at.Format(time.RFC3339Nano), name, perr))
					break
				}
				if !at.Before(cert.Leaf.NotAfter) {
					apiErrs = append(apiErrs, fmt.Sprintf("%s: the API served %s, expired at %s", at.Format(time.RFC3339Nano), cert.Leaf.SerialNumber.Text(16), cert.Leaf.NotAfter.Format(time.RFC3339)))
				}
				serial := cert.Leaf.SerialNumber.Text(16)
				if _, ok := onAPI[serial]; !ok {
					issued, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(r.Data["issued_at"]))
					onAPI[serial] = apiSeen{at: at, issuedAt: issued}
					apiOrder = append(apiOrder, serial)
				}
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	report := followReport{}
	atConsumer := map[string]time.Time{}
	var consumerOrder, probeErrs []string
	for {
		leaf, err := probe()
		now := time.Now()
		report.Probes++
		switch {
		case err != nil:
			probeErrs = append(probeErrs, fmt.Sprintf("%s: %v", now.Format(time.RFC3339Nano), err))
		case !now.Before(leaf.NotAfter):
			probeErrs = append(probeErrs, fmt.Sprintf("%s: the consumer has %s, expired at %s", now.Format(time.RFC3339Nano), leaf.SerialNumber.Text(16), leaf.NotAfter.Format(time.RFC3339)))
		default:
			if s := leaf.SerialNumber.Text(16); atConsumer[s].IsZero() {
				atConsumer[s] = now
				consumerOrder = append(consumerOrder, s)
				t.Logf("%s: the consumer has %s (valid until %s)", now.Format("15:04:05.000"), s, leaf.NotAfter.Format("15:04:05"))
			}
		}
		newer := 0
		for _, s := range consumerOrder {
			if s != firstSerial {
				newer++
			}
		}
		if newer >= renewals || !now.Before(deadline) || len(probeErrs) > 20 {
			break
		}
		time.Sleep(probeEvery)
	}
	// The consumer may have read a renewal before the API reader's next turn: give it two seconds
	// to see every certificate the consumer had.
	for waitUntil := time.Now().Add(2 * time.Second); time.Now().Before(waitUntil); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		missing := 0
		for _, s := range consumerOrder {
			if _, ok := onAPI[s]; !ok {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
	}
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	report.APIReads = apiReads
	for _, e := range apiErrs {
		t.Errorf("API reader: %s", e)
	}
	for _, e := range probeErrs {
		t.Errorf("consumer: %s", e)
	}
	for _, s := range consumerOrder {
		if _, ok := onAPI[s]; !ok && s != firstSerial {
			t.Errorf("the consumer had %s, which the API never served (API: %v)", s, apiOrder)
		}
	}
	for _, s := range apiOrder {
		if s == firstSerial || len(report.Renewals) == renewals {
			continue
		}
		seen := onAPI[s]
		report.Renewals = append(report.Renewals, renewalFollowed{Serial: s, IssuedAt: seen.issuedAt, OnAPI: seen.at, AtConsumer: atConsumer[s]})
	}
	t.Logf("followed certs/%s through the consumer: %s", name, report)
	require.Lenf(t, report.Renewals, renewals, "renewals served by the API by %s (API served %v; the consumer had %v)", deadline.Format(time.RFC3339), apiOrder, consumerOrder)
	for i, r := range report.Renewals {
		require.Falsef(t, r.AtConsumer.IsZero(), "renewal %d (%s, on the API at %s) never reached the consumer", i+1, r.Serial, r.OnAPI.Format(time.RFC3339Nano))
		require.LessOrEqualf(t, r.Delay(), bound, "renewal %d (%s) reached the consumer %s after the API served it", i+1, r.Serial, r.Delay())
	}
	return report
}

// testdataWith reads e2e/testdata/<rel>, a file the README shows as it is, and replaces each old
// string of the pairs oldNew by its new one, requiring each to occur: the test runs the very file
// the README shows, with its own addresses, names and paths.
func testdataWith(t testing.TB, rel string, oldNew ...string) string {
	t.Helper()
	require.Zero(t, len(oldNew)%2, "testdataWith takes old/new pairs")
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "e2e", "testdata", rel))
	require.NoError(t, err)
	s := string(b)
	for i := 0; i < len(oldNew); i += 2 {
		require.Containsf(t, s, oldNew[i], "testdata/%s no longer holds %q: update the test with it", rel, oldNew[i])
		s = strings.ReplaceAll(s, oldNew[i], oldNew[i+1])
	}
	return s
}

// issueSoakCert sets up an issuer of its own (a new id from prefix) whose role gives 180-second
// certificates (SoakProfile) and issues <id>/www for www.<id>.<zone>, for tests that follow natural
// renewals.
func issueSoakCert(t *testing.T, c *vaultapi.Client, prefix string) (id, name, domain string, is Issuer, first *Cert, life time.Duration) {
	t.Helper()
	id = Unique(prefix)
	name, domain = id+"/www", "www."+id+"."+env.Zone
	is = env.SetupIssuer(t, c, id, nil, map[string]any{
		"allowed_domains":    id + "." + env.Zone,
		"allow_subdomains":   true,
		"allowed_cert_names": id + "/*",
		"profile":            SoakProfile,
	})
	first = IssueCert(t, c, name, map[string]any{"role": is.Role, "domains": domain}, 2*time.Minute)
	life = first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	require.Less(t, life, 4*time.Minute, "profile %s gives 180 s certificates, got %s", SoakProfile, life)
	return id, name, domain, is, first, life
}
