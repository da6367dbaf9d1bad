package paths

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

// sample is one parsed line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition parses the text format strictly enough to catch a malformed line: every
// sample's family has HELP and TYPE lines before it, label values are quoted and escaped.
func parseExposition(t *testing.T, body string) (map[string][]sample, map[string]string) {
	t.Helper()
	require.True(t, strings.HasSuffix(body, "\n"), "the body ends with a line feed")
	samples := map[string][]sample{}
	types := map[string]string{}
	helps := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			f := strings.SplitN(strings.TrimPrefix(line, "# HELP "), " ", 2)
			require.Len(t, f, 2, "line %d: %q", i+1, line)
			require.False(t, helps[f[0]], "line %d: second HELP for %s", i+1, f[0])
			helps[f[0]] = true
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			require.Len(t, f, 2, "line %d: %q", i+1, line)
			require.Contains(t, []string{"gauge", "counter"}, f[1], "line %d", i+1)
			require.True(t, helps[f[0]], "line %d: TYPE before HELP for %s", i+1, f[0])
			types[f[0]] = f[1]
		default:
			s := parseSample(t, line)
			require.Contains(t, types, s.name, "line %d: sample of %s without TYPE", i+1, s.name)
			samples[s.name] = append(samples[s.name], s)
		}
	}
	return samples, types
}

func parseSample(t *testing.T, line string) sample {
	t.Helper()
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	require.Positive(t, i, "sample line %q", line)
	s.name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for rest[0] != '}' {
			eq := strings.IndexByte(rest, '=')
			require.Positive(t, eq, "labels of %q", line)
			key := rest[:eq]
			require.Equal(t, byte('"'), rest[eq+1], "quoted label value in %q", line)
			var val strings.Builder
			j := eq + 2
			for ; rest[j] != '"'; j++ {
				if rest[j] == '\\' {
					j++
					switch rest[j] {
					case '\\':
						val.WriteByte('\\')
					case '"':
						val.WriteByte('"')
					case 'n':
						val.WriteByte('\n')
					default:
						require.Failf(t, "bad escape", "in %q", line)
					}
					continue
				}
				require.NotEqual(t, byte('\n'), rest[j])
				val.WriteByte(rest[j])
			}
			s.labels[key] = val.String()
			rest = rest[j+1:]
			if rest[0] == ',' {
				rest = rest[1:]
			}
		}
		rest = rest[1:]
	}
	require.Equal(t, byte(' '), rest[0], "a space before the value in %q", line)
	v, err := strconv.ParseFloat(rest[1:], 64)
	require.NoError(t, err, "value of %q", line)
	s.value = v
	return s
}

// find returns the value of the sample of name with exactly labels (name/value pairs).
func find(t *testing.T, samples map[string][]sample, name string, labels ...string) (float64, bool) {
	t.Helper()
outer:
	for _, s := range samples[name] {
		if len(s.labels) != len(labels)/2 {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				continue outer
			}
		}
		return s.value, true
	}
	return 0, false
}

func mustFind(t *testing.T, samples map[string][]sample, name string, labels ...string) float64 {
	t.Helper()
	v, ok := find(t, samples, name, labels...)
	require.True(t, ok, "no sample %s%v", name, labels)
	return v
}

// scrape reads the metrics path through the harness and checks the raw response.
func (h *harness) scrape() string {
	h.t.Helper()
	resp, err := h.do(logical.ReadOperation, MetricsPath, nil)
	require.NoError(h.t, err)
	require.NotNil(h.t, resp)
	require.Equal(h.t, 200, resp.Data[logical.HTTPStatusCode])
	require.Equal(h.t, "text/plain; version=0.0.4; charset=utf-8", resp.Data[logical.HTTPContentType])
	body, ok := resp.Data[logical.HTTPRawBody].([]byte)
	require.True(h.t, ok, "raw body is []byte: %T", resp.Data[logical.HTTPRawBody])
	return string(body)
}

func TestMetricsCountsPerRole(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	day := 24 * time.Hour
	h.e.summaries = map[string]CertSummary{
		// web: two issued (the earliest expires in 10 days with a third of its life left), one
		// pending and failing, one waiting for the order budget.
		"team-a/alpha-www":    {Role: "web", Status: "valid", NotBefore: now.Add(-80 * day), NotAfter: now.Add(10 * day), RenewAt: now.Add(-20 * day)},
		"team-a/bravo-rest":   {Role: "web", Status: "valid", NotBefore: now.Add(-day), NotAfter: now.Add(89 * day), RenewAt: now.Add(59 * day)},
		"team-a/charlie-new":  {Role: "web", Status: "failed", Attempts: 2, LastError: "the CA rejected the order", NextAt: now.Add(time.Minute)},
		"team-a/delta-queued": {Role: "web", Status: "pending", Waiting: "waiting for the order budget of account \"main\""},
		// api: one expired.
		"team-b/echo-old": {Role: "api", Status: "valid", NotBefore: now.Add(-91 * day), NotAfter: now.Add(-day), RenewAt: now.Add(-31 * day), Attempts: 5},
	}
	h.e.metrics = Metrics{Version: "v1.2.3", OrdersIssued: 7, OrdersFailed: 3, RateLimitWaits: 4, RateLimited: 1,
		Failures: []ClassCount{{"plan", 0}, {"rate_limited", 1}, {"rejected", 2}}}
	body := h.scrape()
	samples, types := parseExposition(t, body)

	for _, name := range []string{"info", "certificates", "certificates_expiring", "certificates_failing", "certificates_waiting",
		"earliest_expiry_seconds", "earliest_renewal_seconds", "remaining_life_ratio_min"} {
		require.Equal(t, "gauge", types["vault_letsencrypt_"+name], name)
	}
	for _, name := range []string{"orders_total", "failures_total", "rate_limit_waits_total", "rate_limited_total"} {
		require.Equal(t, "counter", types["vault_letsencrypt_"+name], name)
	}
	require.Equal(t, 1.0, mustFind(t, samples, "vault_letsencrypt_info", "version", "v1.2.3"))

	certs := func(role, status string) float64 {
		return mustFind(t, samples, "vault_letsencrypt_certificates", "role", role, "status", status)
	}
	require.Equal(t, 2.0, certs("web", "valid"))
	require.Equal(t, 1.0, certs("web", "pending"))
	require.Equal(t, 1.0, certs("web", "failed"))
	require.Equal(t, 1.0, certs("api", "valid"))
	require.Equal(t, 0.0, certs("api", "pending"), "every known status is shown, zeros included")
	require.Equal(t, 0.0, certs("api", "failed"))

	// The same counts as status/certs.
	st := statusResponse(h.e.summaries, now, "", 0)["counts"].(map[string]any)
	perRole := func(name, role string) float64 {
		return mustFind(t, samples, "vault_letsencrypt_certificates_"+name, "role", role)
	}
	for _, kind := range []string{"expiring", "failing", "waiting"} {
		require.Equal(t, float64(st[kind].(int)), perRole(kind, "web")+perRole(kind, "api"), kind)
	}
	require.Equal(t, 1.0, perRole("expiring", "web"), "renewal overdue by far more than a tenth")
	require.Equal(t, 1.0, perRole("expiring", "api"), "expired")
	require.Equal(t, 1.0, perRole("failing", "web"))
	require.Equal(t, 1.0, perRole("failing", "api"))
	require.Equal(t, 1.0, perRole("waiting", "web"))
	require.Equal(t, 0.0, perRole("waiting", "api"))

	secs := func(name, role string) float64 {
		return mustFind(t, samples, "vault_letsencrypt_"+name, "role", role)
	}
	require.InDelta(t, (10 * day).Seconds(), secs("earliest_expiry_seconds", "web"), 5)
	require.InDelta(t, (-day).Seconds(), secs("earliest_expiry_seconds", "api"), 5, "negative when expired")
	require.InDelta(t, (-20 * day).Seconds(), secs("earliest_renewal_seconds", "web"), 5, "negative when overdue")
	require.InDelta(t, 10.0/90, secs("remaining_life_ratio_min", "web"), 1e-4)
	require.InDelta(t, -1.0/90, secs("remaining_life_ratio_min", "api"), 1e-4)

	require.Equal(t, 7.0, mustFind(t, samples, "vault_letsencrypt_orders_total", "result", "issued"))
	require.Equal(t, 3.0, mustFind(t, samples, "vault_letsencrypt_orders_total", "result", "failed"))
	require.Equal(t, 2.0, mustFind(t, samples, "vault_letsencrypt_failures_total", "class", "rejected"))
	require.Equal(t, 0.0, mustFind(t, samples, "vault_letsencrypt_failures_total", "class", "plan"))
	require.Equal(t, 4.0, mustFind(t, samples, "vault_letsencrypt_rate_limit_waits_total"))
	require.Equal(t, 1.0, mustFind(t, samples, "vault_letsencrypt_rate_limited_total"))

	// Counts only: no certificate name, domain, account or error text.
	for name, s := range h.e.summaries {
		require.NotContains(t, body, name)
		require.NotContains(t, body, strings.Split(name, "/")[1])
		if s.LastError != "" {
			require.NotContains(t, body, s.LastError)
		}
	}
	require.NotContains(t, body, `"main"`)
	require.NotContains(t, body, "order budget of")
	require.NotContains(t, body, "team-")
	require.Equal(t, []string{""}, h.e.names("CertificateSummaries"), "one look at the schedule, no storage reads")
}

// The metrics never name a certificate, a domain or an account, whatever the summaries hold
// (status/certs, which a scraper's policy does not reach, does).
func TestMetricsNameNoCertificateDomainOrAccount(t *testing.T) {
	h := newHarness(t)
	h.fixtures()
	// Real entries in storage, with names and domains a reader must not learn from metrics.
	resp := h.ok(logical.CreateOperation, "certs/web/secret-project", map[string]any{"role": "web", "domains": "secret-project.example.com"})
	require.Equal(t, "valid", resp.Data["status"])
	h.e.reset()
	now := time.Now()
	h.e.summaries = map[string]CertSummary{
		"web/secret-project": {Role: "web", Status: "valid", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(89 * 24 * time.Hour), RenewAt: now.Add(60 * 24 * time.Hour)},
		"web/hidden-launch":  {Role: "web", Status: "failed", Attempts: 1, LastError: `DNS-01 for hidden-launch.example.com: account "main" ...`, Waiting: `waiting for the order budget of account "main"`},
	}
	body := h.scrape()
	parseExposition(t, body)
	for _, bit := range []string{"secret-project", "hidden-launch", "example.com", `"main"`, "main-acct", "DNS-01", "order budget of"} {
		require.NotContains(t, body, bit)
	}
	require.Contains(t, body, `role="web"`, "role names are the only names shown")
	require.Equal(t, []string{"CertificateSummaries", "Metrics"}, func() (m []string) {
		for _, c := range h.e.called("") {
			m = append(m, c.Method)
		}
		return m
	}(), "reading metrics asks the engine's memory only, and starts nothing")
}

func TestMetricsEmptyMount(t *testing.T) {
	h := newHarness(t)
	h.e.summaries = map[string]CertSummary{}
	h.e.metrics = Metrics{Version: "v0.1.0", Failures: []ClassCount{{"internal", 0}}}
	body := h.scrape()
	samples, types := parseExposition(t, body)
	require.Len(t, types, 12, "HELP and TYPE of every metric, also without samples:\n%s", body)
	require.Empty(t, samples["vault_letsencrypt_certificates"])
	require.Empty(t, samples["vault_letsencrypt_remaining_life_ratio_min"])
	require.Equal(t, 0.0, mustFind(t, samples, "vault_letsencrypt_orders_total", "result", "issued"))
	require.Equal(t, 0.0, mustFind(t, samples, "vault_letsencrypt_rate_limited_total"))
	require.Equal(t, 1.0, mustFind(t, samples, "vault_letsencrypt_info", "version", "v0.1.0"))
}

func TestMetricsEscaping(t *testing.T) {
	require.Equal(t, `a\\b\"c\nd`, escapeLabelValue("a\\b\"c\nd"))
	require.Equal(t, `a\\b"c\nd`, escapeHelp("a\\b\"c\nd"))
	require.Equal(t, "\uFFFD", escapeLabelValue("\xff"), "label values are UTF-8")

	// Role names are plain (roles/<name> accepts no quote or line feed), but the writer does not
	// rely on it: a hostile value stays inside its label.
	now := time.Now()
	hostile := "x\",status=\"valid\"} 1e9\nvault_letsencrypt_info{version=\"evil\\"
	body := string(RenderMetrics(map[string]CertSummary{"c": {Role: hostile, Status: "valid", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}},
		Metrics{Version: "v1"}, now))
	samples, _ := parseExposition(t, body)
	require.Equal(t, 1.0, mustFind(t, samples, "vault_letsencrypt_certificates", "role", hostile, "status", "valid"))
	require.Len(t, samples["vault_letsencrypt_info"], 1)
	require.InDelta(t, 0.5, mustFind(t, samples, "vault_letsencrypt_remaining_life_ratio_min", "role", hostile), 1e-3)
}

// An entry the schedule could not reload has an empty summary: it is counted, as unknown.
func TestMetricsUnknownStatus(t *testing.T) {
	body := string(RenderMetrics(map[string]CertSummary{"c": {}, "d": {Role: "web", Status: "valid"}}, Metrics{}, time.Now()))
	samples, _ := parseExposition(t, body)
	require.Equal(t, 1.0, mustFind(t, samples, "vault_letsencrypt_certificates", "role", "", "status", "unknown"))
	_, ok := find(t, samples, "vault_letsencrypt_certificates", "role", "web", "status", "unknown")
	require.False(t, ok, "unknown is shown only where it occurs")
	require.Equal(t, 1.0, mustFind(t, samples, "vault_letsencrypt_certificates", "role", "web", "status", "valid"))
}

// manySummaries returns n summaries over 50 roles, a mix of issued, failing, pending and waiting.
func manySummaries(n int, now time.Time) map[string]CertSummary {
	sums := make(map[string]CertSummary, n)
	for i := range n {
		s := CertSummary{Role: fmt.Sprintf("team-%02d", i%50), Status: "valid",
			NotBefore: now.Add(-time.Duration(i) * time.Minute), NotAfter: now.Add(90*24*time.Hour - time.Duration(i)*time.Minute)}
		s.RenewAt = s.NotBefore.Add(60 * 24 * time.Hour)
		switch i % 7 {
		case 1:
			s.Attempts, s.LastError = 1, "the CA rejected the order"
		case 2:
			s = CertSummary{Role: s.Role, Status: "pending", Waiting: "waiting for a worker"}
		}
		sums[fmt.Sprintf("team-%02d/cert-%d", i%50, i)] = s
	}
	return sums
}

// 10,000 certificates render well under 100 ms (the path reads the in-memory schedule only).
func TestMetricsTenThousandCertificatesAreFast(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	h.e.summaries = manySummaries(10000, now)
	var times []time.Duration
	var body string
	for range 5 {
		start := time.Now()
		body = h.scrape()
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("10,000 certificates over 50 roles: metrics path %s (median of 5), %d bytes", times[2], len(body))
	require.Less(t, times[2], 100*time.Millisecond)
	samples, _ := parseExposition(t, body)
	total := 0.0
	for _, s := range samples["vault_letsencrypt_certificates"] {
		total += s.value
	}
	require.Equal(t, 10000.0, total)
	require.Len(t, samples["vault_letsencrypt_remaining_life_ratio_min"], 50)
	require.False(t, math.IsNaN(mustFind(t, samples, "vault_letsencrypt_remaining_life_ratio_min", "role", "team-00")))
}

func BenchmarkRenderMetrics10000(b *testing.B) {
	now := time.Now()
	sums := manySummaries(10000, now)
	b.ReportAllocs()
	for b.Loop() {
		RenderMetrics(sums, Metrics{Version: "v1"}, now)
	}
}
