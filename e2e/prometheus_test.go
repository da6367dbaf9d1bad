package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's "Monitoring" section quotes these files verbatim; the test uses them as they are,
// replacing only the Vault address and the token file's path.
const (
	promScrapeFile = "testdata/prometheus/scrape.yml"
	promRulesFile  = "testdata/prometheus/letsencrypt-alerts.yml"
	promPolicyFile = "testdata/prometheus/letsencrypt-metrics-policy.hcl"
	promJob        = "vault-letsencrypt"
	promAlert      = "LetsEncryptCertificateLifeBelowThird"
)

// prometheusInstallHint is how to get Prometheus and promtool when they are missing.
const prometheusInstallHint = "install them: make tools (apt-get install prometheus)"

// promBinaries finds prometheus and promtool (Debian's prometheus package), or fails the test.
func promBinaries(t testing.TB) (prometheus, promtool string) {
	t.Helper()
	var found []string
	for _, name := range []string{"prometheus", "promtool"} {
		p, err := exec.LookPath(name)
		if err != nil {
			require.FailNowf(t, name+" not found", "the monitoring test runs a real Prometheus: %s", prometheusInstallHint)
		}
		found = append(found, p)
	}
	return found[0], found[1]
}

// TestPrometheusScrapeAndAlert runs a real Prometheus (Debian's package) that scrapes the mount's
// metrics path with a Vault token allowed to read nothing else, and evaluates the README's alert
// rule. Two certificates in one role and one in another show up as counts; a 180-second
// certificate whose renewals the CA refuses (rateLimited) falls below a third of its life, and the
// alert fires for its role only; once the CA takes orders again the renewal goes through and the
// alert resolves. The scraped text names no certificate or domain, and tokens without the policy
// get 403.
func TestPrometheusScrapeAndAlert(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock() // the plugin's timers must stay alive throughout (see faults_test.go)
	defer devPluginMu.RUnlock()
	prometheus, promtool := promBinaries(t)
	c := env.RootClient(t)
	dir := t.TempDir()

	scrapeYML, rulesYML, policyHCL := readTestdata(t, promScrapeFile), readTestdata(t, promRulesFile), readTestdata(t, promPolicyFile)
	readme := readTestdata(t, filepath.Join(RepoRoot(), "README.md"))
	for _, f := range []string{scrapeYML, rulesYML, policyHCL} {
		require.Contains(t, readme, f, "README.md quotes %s verbatim", f)
	}

	// Prometheus's token: the README's policy, nothing else.
	metricsToken := policyToken(t, c, Unique("letsencrypt-metrics"), policyHCL, false)
	otherToken := policyToken(t, c, "", "", false)

	// The certificate whose renewals will fail: a 180-second one (Pebble's "soak" profile), first,
	// as its clock runs from now on.
	proxyB := env.NewPebbleProxy(t)
	idB := Unique("prom-b")
	isB := env.SetupProxiedIssuer(t, c, proxyB, idB, "soak")
	nameB, domainB := idB+"/alert-me", "alert-me."+idB+"."+env.Zone
	certB := IssueCert(t, c, nameB, map[string]any{"role": isB.Role, "domains": domainB}, 2*time.Minute)
	life := certB.Leaf.NotAfter.Sub(certB.Leaf.NotBefore)
	require.InDelta(t, 180, life.Seconds(), 2, "Pebble profile soak")
	// From now on the CA refuses every new order of role B's account (rateLimited, Retry-After
	// 3 s): its planned renewal (at half its life, or earlier at the CA's ARI window) fails.
	proxyB.SetFault(RateLimited(proxyB.NewOrderPath(), 3*time.Second, 0))
	crossing := certB.Leaf.NotBefore.Add(life * 2 / 3) // remaining life = a third

	// Two long-lived certificates in another role.
	proxyA := env.NewPebbleProxy(t)
	idA := Unique("prom-a")
	isA := env.SetupProxiedIssuer(t, c, proxyA, idA, DefaultProfile)
	namesA := []string{idA + "/first", idA + "/second"}
	domainsA := []string{"first." + idA + "." + env.Zone, "second." + idA + "." + env.Zone}
	for i := range namesA {
		IssueCert(t, c, namesA[i], map[string]any{"role": isA.Role, "domains": domainsA[i]}, 2*time.Minute)
	}
	secretBits := append(append([]string{nameB, domainB, "alert-me", isB.Account, isA.Account, isA.DNS, isB.DNS}, namesA...), domainsA...)

	// The path as a scraper sees it: raw text with the exposition format's content type, for the
	// policy's token only.
	vaultURL := env.VaultAddr + "/v1/" + Mount + "/metrics"
	status, header, body := httpGet(t, vaultURL, metricsToken)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Equal(t, "text/plain; version=0.0.4; charset=utf-8", header.Get("Content-Type"))
	require.Contains(t, body, fmt.Sprintf("vault_letsencrypt_certificates{role=%q,status=\"valid\"} 2\n", isA.Role))
	for _, bit := range secretBits {
		require.NotContains(t, body, bit, "the metrics name no certificate, domain, account or DNS configuration")
	}
	for what, tok := range map[string]string{"no token": "", "a token without the policy": otherToken} {
		st, _, b := httpGet(t, vaultURL, tok)
		require.Equalf(t, http.StatusForbidden, st, "GET metrics with %s: %s", what, b)
	}
	st, _, b := httpGet(t, env.VaultAddr+"/v1/"+Mount+"/status/certs", metricsToken)
	require.Equalf(t, http.StatusForbidden, st, "the metrics token reads nothing else: %s", b)
	help := MustDo(t, c, http.MethodGet, Mount+"/metrics?help=1", nil)
	require.Equal(t, http.StatusOK, help.Status, "path help: %s", help)
	require.Contains(t, string(help.Body), "Counters are per node", "the help says counters are per node")

	// Prometheus with the README's scrape job and rule, checked by promtool first.
	vaultHost := strings.TrimPrefix(strings.TrimPrefix(env.VaultAddr, "http://"), "https://")
	tokenFile := filepath.Join(dir, "vault-letsencrypt.token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(metricsToken+"\n"), 0o600))
	rulesPath := filepath.Join(dir, "letsencrypt-alerts.yml")
	require.NoError(t, os.WriteFile(rulesPath, []byte(rulesYML), 0o600))
	job := replaceOnce(t, scrapeYML, `"127.0.0.1:8200"`, strconv.Quote(vaultHost))
	job = replaceOnce(t, job, "/etc/prometheus/vault-letsencrypt.token", tokenFile)
	job = replaceOnce(t, job, "/v1/letsencrypt/metrics", "/v1/"+Mount+"/metrics")
	configPath := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(configPath, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
%s`, rulesPath, job)), 0o600))
	for _, args := range [][]string{{"check", "config", configPath}, {"check", "rules", rulesPath}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		require.NoError(t, err, "promtool %s: %s", strings.Join(args, " "), out)
	}
	prom := startPrometheus(t, prometheus, configPath, filepath.Join(dir, "data"))

	// The target is up, and the counts are what was issued.
	waitProm(t, 30*time.Second, "the scrape target is up", func() (bool, string) {
		var targets struct {
			ActiveTargets []struct {
				Labels     map[string]string `json:"labels"`
				Health     string            `json:"health"`
				LastError  string            `json:"lastError"`
				ScrapePool string            `json:"scrapePool"`
			} `json:"activeTargets"`
		}
		if err := promAPI(prom, "/api/v1/targets", nil, &targets); err != nil {
			return false, err.Error()
		}
		for _, tg := range targets.ActiveTargets {
			if tg.ScrapePool == promJob {
				return tg.Health == "up", fmt.Sprintf("health %q, last error %q", tg.Health, tg.LastError)
			}
		}
		return false, fmt.Sprintf("no target of job %s in %+v", promJob, targets.ActiveTargets)
	})
	want := map[string]float64{
		fmt.Sprintf(`vault_letsencrypt_certificates{role=%q,status="valid"}`, isA.Role):           2,
		fmt.Sprintf(`vault_letsencrypt_certificates{role=%q,status="valid"}`, isB.Role):           1,
		fmt.Sprintf(`vault_letsencrypt_certificates{role=%q,status="pending"}`, isA.Role):         0,
		fmt.Sprintf(`vault_letsencrypt_certificates_failing{role=%q}`, isA.Role):                  0,
		fmt.Sprintf(`vault_letsencrypt_info{job=%q}`, promJob):                                    1,
		fmt.Sprintf(`count(vault_letsencrypt_remaining_life_ratio_min{role=%q} > 0.9)`, isA.Role): 1,
	}
	for q, v := range want {
		waitProm(t, 15*time.Second, q+" = "+strconv.FormatFloat(v, 'f', -1, 64), func() (bool, string) {
			got, err := promScalar(prom, q)
			return err == nil && got == v, fmt.Sprintf("got %v, %v", got, err)
		})
	}
	expiryA, err := promScalar(prom, fmt.Sprintf(`vault_letsencrypt_earliest_expiry_seconds{role=%q}`, isA.Role))
	require.NoError(t, err)
	assert.InDelta(t, (90 * 24 * time.Hour).Seconds(), expiryA, 3600, "earliest expiry of role A: Pebble's default profile is 90 days")
	failedBefore := promValue(t, prom, `vault_letsencrypt_orders_total{result="failed"}`)
	rateLimitedBefore := promValue(t, prom, `vault_letsencrypt_rate_limited_total`)
	// (Other tests' roles may alert meanwhile: the suite fails renewals on purpose.)
	for _, role := range []string{isA.Role, isB.Role} {
		require.Empty(t, firingAlerts(t, prom, role), "no alert for role %s while its certificates have more than a third of their life", role)
	}

	// The renewal fails until the certificate has less than a third of its life: the alert fires
	// for role B, and for no other role.
	t.Logf("certificate of role B: not_before %s, not_after %s; a third of its life is left at %s (in %s)",
		certB.Leaf.NotBefore.Format(time.RFC3339), certB.Leaf.NotAfter.Format(time.RFC3339), crossing.Format(time.RFC3339),
		time.Until(crossing).Round(time.Second))
	var fired promAlertState
	waitProm(t, time.Until(crossing)+30*time.Second, "alert "+promAlert+" firing for role "+isB.Role, func() (bool, string) {
		alerts := firingAlerts(t, prom, isB.Role)
		if len(alerts) == 0 {
			return false, "not firing"
		}
		fired = alerts[0]
		return true, ""
	})
	seen := time.Now()
	require.Falsef(t, fired.ActiveAt.Before(crossing.Add(-time.Second)), "the alert became active at %s, before the certificate crossed a third of its life (%s)",
		fired.ActiveAt.Format(time.RFC3339Nano), crossing.Format(time.RFC3339Nano))
	ratio, err := strconv.ParseFloat(fired.Value, 64)
	require.NoError(t, err)
	assert.Less(t, ratio, 1.0/3, "the alert's value is the ratio")
	assert.Equal(t, "warning", fired.Labels["severity"])
	assert.Contains(t, fired.Annotations["summary"], isB.Role)
	assert.Empty(t, firingAlerts(t, prom, isA.Role), "no alert for role A, whose certificates are fresh")
	t.Logf("ratio crossed 1/3 at %s; alert active at %s (+%s), seen firing at %s (+%s), value %s",
		crossing.Format(time.RFC3339Nano), fired.ActiveAt.Format(time.RFC3339Nano), fired.ActiveAt.Sub(crossing).Round(time.Millisecond),
		seen.Format(time.RFC3339Nano), seen.Sub(crossing).Round(time.Millisecond), fired.Value)
	assert.Equal(t, 1.0, promValue(t, prom, fmt.Sprintf(`vault_letsencrypt_certificates_failing{role=%q}`, isB.Role)), "role B's certificate is failing")
	assert.Greater(t, promValue(t, prom, `vault_letsencrypt_orders_total{result="failed"}`), failedBefore, "failed orders counted")
	assert.Greater(t, promValue(t, prom, `vault_letsencrypt_rate_limited_total`), rateLimitedBefore, "rateLimited answers counted")
	assert.Positive(t, promValue(t, prom, `vault_letsencrypt_failures_total{class="rate_limited"}`))
	renewalB := promValue(t, prom, fmt.Sprintf(`vault_letsencrypt_earliest_renewal_seconds{role=%q}`, isB.Role))
	assert.Negative(t, renewalB, "role B's renewal is overdue")

	// The CA takes orders again: the next retry renews, the ratio is back near 1 and the alert
	// resolves.
	issuedBefore := promValue(t, prom, `vault_letsencrypt_orders_total{result="issued"}`)
	proxyB.SetFault(nil)
	released := time.Now()
	renewed := waitRenewed(t, c, nameB, certB.Leaf.SerialNumber.Text(16), time.Second, certB.Leaf.NotAfter)
	waitProm(t, 30*time.Second, "alert "+promAlert+" resolved for role "+isB.Role, func() (bool, string) {
		alerts := firingAlerts(t, prom, isB.Role)
		return len(alerts) == 0, fmt.Sprintf("%d alert(s)", len(alerts))
	})
	resolved := time.Now()
	assert.Greater(t, promValue(t, prom, fmt.Sprintf(`vault_letsencrypt_remaining_life_ratio_min{role=%q}`, isB.Role)), 1.0/3)
	assert.Greater(t, promValue(t, prom, `vault_letsencrypt_orders_total{result="issued"}`), issuedBefore, "the renewal is counted")
	assert.Equal(t, 0.0, promValue(t, prom, fmt.Sprintf(`vault_letsencrypt_certificates_failing{role=%q}`, isB.Role)))
	t.Logf("CA released at %s; renewed (serial %s) %s later, stored at %s; alert resolved %s after the renewal was stored",
		released.Format(time.RFC3339Nano), renewed.Serial, renewed.At.Sub(released).Round(time.Millisecond),
		renewed.IssuedAt.Format(time.RFC3339Nano), resolved.Sub(renewed.IssuedAt).Round(time.Millisecond))

	// What Prometheus measured of the scrapes, and the text it scraped last.
	last := promValue(t, prom, fmt.Sprintf(`scrape_duration_seconds{job=%q}`, promJob))
	maxDur := promValue(t, prom, fmt.Sprintf(`max_over_time(scrape_duration_seconds{job=%q}[10m])`, promJob))
	avgDur := promValue(t, prom, fmt.Sprintf(`avg_over_time(scrape_duration_seconds{job=%q}[10m])`, promJob))
	samples := promValue(t, prom, fmt.Sprintf(`scrape_samples_scraped{job=%q}`, promJob))
	scrapes := promValue(t, prom, fmt.Sprintf(`count_over_time(up{job=%q}[10m])`, promJob))
	failed := scrapes - promValue(t, prom, fmt.Sprintf(`sum_over_time(up{job=%q}[10m])`, promJob))
	t.Logf("scrape_duration_seconds: last %.4f s, average %.4f s, max %.4f s over the run; %v samples per scrape; %v of %v scrapes failed",
		last, avgDur, maxDur, samples, failed, scrapes)
	// The path is cheap: on average far inside the 1 s timeout. A lone scrape held up by the loaded
	// test machine (every e2e test shares its two cores) may reach the timeout; more than 2% may not.
	assert.Less(t, avgDur, 0.25, "average scrape duration")
	assert.LessOrEqual(t, failed, max(2, scrapes/50), "scrapes that failed or timed out")
	status, _, body = httpGet(t, vaultURL, metricsToken)
	require.Equal(t, http.StatusOK, status)
	for _, bit := range append(secretBits, renewed.Serial) {
		require.NotContains(t, body, bit)
	}
}

// readTestdata reads a file (relative to e2e/ unless absolute).
func readTestdata(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// replaceOnce replaces old, which must occur exactly once in s, by repl.
func replaceOnce(t testing.TB, s, old, repl string) string {
	t.Helper()
	require.Equal(t, 1, strings.Count(s, old), "%q occurs once in %s", old, s)
	return strings.Replace(s, old, repl, 1)
}

// httpGet GETs url with a Vault token (none when empty) as Prometheus sends it (Authorization:
// Bearer) and returns the status, the headers and the body.
func httpGet(t testing.TB, rawURL, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// startPrometheus runs prometheus with config on a free loopback port, its storage in dataDir,
// until the test ends, and returns its base URL once it is ready.
func startPrometheus(t testing.TB, bin, config, dataDir string) string {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+dataDir,
		"--web.listen-address="+addr, "--log.level=info")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Dir(dataDir)}
	done := startLogged(t, cmd, filepath.Join(filepath.Dir(dataDir), "prometheus.log"), os.Interrupt, "prometheus")
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			require.FailNow(t, "prometheus exited during start-up")
		default:
		}
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		require.True(t, time.Now().Before(deadline), "prometheus not ready at %s after 30 s", base)
		time.Sleep(100 * time.Millisecond)
	}
}

// promAPI GETs path of Prometheus's HTTP API with query parameters and decodes its data into out.
func promAPI(base, path string, query url.Values, out any) error {
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

// promScalar runs an instant query that must return exactly one sample and returns its value.
func promScalar(base, q string) (float64, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := promAPI(base, "/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return 0, err
	}
	if len(data.Result) != 1 {
		return 0, fmt.Errorf("query %s: %d samples", q, len(data.Result))
	}
	s, _ := data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// promValue is promScalar that fails the test on error.
func promValue(t testing.TB, base, q string) float64 {
	t.Helper()
	v, err := promScalar(base, q)
	require.NoError(t, err)
	return v
}

// promAlertState is one alert of /api/v1/alerts.
type promAlertState struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

// firingAlerts returns the firing alerts of promAlert (for role, or for every role when "").
func firingAlerts(t testing.TB, base, role string) []promAlertState {
	t.Helper()
	var data struct {
		Alerts []promAlertState `json:"alerts"`
	}
	require.NoError(t, promAPI(base, "/api/v1/alerts", nil, &data))
	var out []promAlertState
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == promAlert && a.State == "firing" && (role == "" || a.Labels["role"] == role) {
			out = append(out, a)
		}
	}
	return out
}

// waitProm polls ok every 250 ms until it holds, failing the test after timeout with what ok
// said last.
func waitProm(t testing.TB, timeout time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		done, last := ok()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			require.FailNowf(t, "timed out", "waiting %s for %s: %s", timeout, what, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
