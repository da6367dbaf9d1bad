package paths

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// MetricsPath is the mount's Prometheus endpoint: GET /v1/<mount>/metrics with a Vault token
// whose policy grants read on <mount>/metrics.
const MetricsPath = "metrics"

// MetricsContentType is the Content-Type of Prometheus's text exposition format 0.0.4.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// Metrics are the engine's counters on this node since its backend started (plugin start, mount,
// reload or unseal), and the plugin's version. Nothing in it names a certificate, a domain, an
// account or an error text.
type Metrics struct {
	Version string
	// OrdersIssued and OrdersFailed count the attempts that got past the plan (role, account and
	// DNS configuration checked) to ordering, and ended with a stored certificate, or failed.
	OrdersIssued, OrdersFailed uint64
	// Failures counts failed attempts by class, for a fixed, small set of classes (every class,
	// zeros included, in a fixed order).
	Failures []ClassCount
	// RateLimitWaits counts the times a job waited for the order budget instead of ordering.
	RateLimitWaits uint64
	// RateLimited counts the rateLimited answers of the CA to attempts.
	RateLimited uint64
}

// ClassCount is the number of failed attempts of one class.
type ClassCount struct {
	Class string
	Count uint64
}

func metricsPaths(e Engine) []*framework.Path {
	return []*framework.Path{{
		Pattern:      MetricsPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "metrics"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
					body := RenderMetrics(e.CertificateSummaries(), e.Metrics(), time.Now())
					return &logical.Response{Data: map[string]any{
						logical.HTTPContentType: MetricsContentType,
						logical.HTTPRawBody:     body,
						logical.HTTPStatusCode:  http.StatusOK,
					}}, nil
				},
				Summary:      "Prometheus metrics of the mount: certificates per role and status, expiry, renewals, orders, failures.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses: map[int][]framework.Response{http.StatusOK: {{
					Description: "The metrics in Prometheus's text exposition format 0.0.4.",
					MediaType:   "text/plain",
				}}},
			},
		},
		HelpSynopsis:    pathMetricsHelpSyn,
		HelpDescription: pathMetricsHelpDesc,
	}}
}

// metricsPrefix starts every metric name.
const metricsPrefix = "vault_letsencrypt_"

// knownStatuses are reported for every role, zeros included, so that a query for a status that
// no certificate has yet finds a 0 rather than nothing.
var knownStatuses = []string{storage.StatusValid, storage.StatusPending, storage.StatusFailed}

// unknownStatus labels a certificate whose entry could not be reloaded into the schedule.
const unknownStatus = "unknown"

// roleStats is what the metrics say about one role.
type roleStats struct {
	statuses                   map[string]int
	expiring, failing, waiting int
	issued                     bool // at least one certificate with a not_after
	earliestExpiry             time.Time
	renewal                    bool
	earliestRenewal            time.Time
	ratio                      bool
	minRatio                   float64
}

// RenderMetrics writes the certificates' summaries, aggregated per role, and the counters m in
// Prometheus's text exposition format at now. Only role names appear as label values: never
// certificate names, domains, accounts or error texts. Its cost is linear in the number of
// summaries, with no storage reads.
func RenderMetrics(sums map[string]CertSummary, m Metrics, now time.Time) []byte {
	roles := map[string]*roleStats{}
	for _, s := range sums {
		r := roles[s.Role]
		if r == nil {
			r = &roleStats{statuses: map[string]int{}}
			roles[s.Role] = r
		}
		status := s.Status
		if status == "" {
			status = unknownStatus
		}
		r.statuses[status]++
		if s.Expiring(now) {
			r.expiring++
		}
		if s.Attempts > 0 {
			r.failing++
		}
		if s.Waiting != "" {
			r.waiting++
		}
		if s.NotAfter.IsZero() {
			continue // nothing issued yet
		}
		if !r.issued || s.NotAfter.Before(r.earliestExpiry) {
			r.issued, r.earliestExpiry = true, s.NotAfter
		}
		if !s.RenewAt.IsZero() && (!r.renewal || s.RenewAt.Before(r.earliestRenewal)) {
			r.renewal, r.earliestRenewal = true, s.RenewAt
		}
		if life := s.NotAfter.Sub(s.NotBefore); !s.NotBefore.IsZero() && life > 0 {
			ratio := float64(s.NotAfter.Sub(now)) / float64(life)
			if !r.ratio || ratio < r.minRatio {
				r.ratio, r.minRatio = true, ratio
			}
		}
	}
	names := make([]string, 0, len(roles))
	for n := range roles {
		names = append(names, n)
	}
	slices.Sort(names)

	w := &metricsWriter{}
	w.family("info", "gauge", "The letsencrypt secrets engine's version (value 1).")
	w.sample("info", []string{"version", m.Version}, 1)

	w.family("certificates", "gauge", "Certificates of the mount by role and stored status (valid, pending, failed).")
	for _, n := range names {
		r := roles[n]
		statuses := slices.Clone(knownStatuses)
		for st := range r.statuses {
			if !slices.Contains(statuses, st) {
				statuses = append(statuses, st)
			}
		}
		slices.Sort(statuses[len(knownStatuses):])
		for _, st := range statuses {
			w.sample("certificates", []string{"role", n, "status", st}, float64(r.statuses[st]))
		}
	}
	perRole := func(name, help string, value func(*roleStats) (float64, bool)) {
		w.family(name, "gauge", help)
		for _, n := range names {
			if v, ok := value(roles[n]); ok {
				w.sample(name, []string{"role", n}, v)
			}
		}
	}
	perRole("certificates_expiring", "Certificates past their planned renewal by more than a tenth of the time then left, or expired (as status/certs counts them).",
		func(r *roleStats) (float64, bool) { return float64(r.expiring), true })
	perRole("certificates_failing", "Certificates whose last attempt failed (attempts > 0).",
		func(r *roleStats) (float64, bool) { return float64(r.failing), true })
	perRole("certificates_waiting", "Certificates whose job waits for an issuance worker or for the order budget.",
		func(r *roleStats) (float64, bool) { return float64(r.waiting), true })
	perRole("earliest_expiry_seconds", "Seconds until the earliest not_after of the role's issued certificates (negative when expired).",
		func(r *roleStats) (float64, bool) { return seconds(r.earliestExpiry.Sub(now)), r.issued })
	perRole("earliest_renewal_seconds", "Seconds until the earliest planned renewal (renew_at) of the role's issued certificates (negative when overdue).",
		func(r *roleStats) (float64, bool) { return seconds(r.earliestRenewal.Sub(now)), r.renewal })
	perRole("remaining_life_ratio_min", "Smallest (not_after - now) / (not_after - not_before) of the role's issued certificates: renewal is planned with a third left at the latest.",
		func(r *roleStats) (float64, bool) { return math.Round(r.minRatio*1e6) / 1e6, r.ratio })

	w.family("orders_total", "counter", "Attempts that went to the CA, by result (issued or failed), on this node since the plugin started.")
	w.sample("orders_total", []string{"result", "issued"}, float64(m.OrdersIssued))
	w.sample("orders_total", []string{"result", "failed"}, float64(m.OrdersFailed))
	w.family("failures_total", "counter", "Failed attempts by class, on this node since the plugin started.")
	for _, f := range m.Failures {
		w.sample("failures_total", []string{"class", f.Class}, float64(f.Count))
	}
	w.family("rate_limit_waits_total", "counter", "Times a job waited for the account's order budget instead of ordering, on this node since the plugin started.")
	w.sample("rate_limit_waits_total", nil, float64(m.RateLimitWaits))
	w.family("rate_limited_total", "counter", "rateLimited answers from the CA to attempts, on this node since the plugin started.")
	w.sample("rate_limited_total", nil, float64(m.RateLimited))
	return []byte(w.b.String())
}

// seconds is d in seconds, to the millisecond.
func seconds(d time.Duration) float64 {
	return float64(d.Milliseconds()) / 1000
}

// metricsWriter writes the text exposition format.
type metricsWriter struct{ b strings.Builder }

// family writes the HELP and TYPE lines of a metric.
func (w *metricsWriter) family(name, typ, help string) {
	w.b.WriteString("# HELP " + metricsPrefix + name + " " + escapeHelp(help) + "\n")
	w.b.WriteString("# TYPE " + metricsPrefix + name + " " + typ + "\n")
}

// sample writes one sample; labels are name/value pairs.
func (w *metricsWriter) sample(name string, labels []string, v float64) {
	w.b.WriteString(metricsPrefix + name)
	if len(labels) > 0 {
		w.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.b.WriteString(labels[i] + `="` + escapeLabelValue(labels[i+1]) + `"`)
		}
		w.b.WriteByte('}')
	}
	w.b.WriteByte(' ')
	w.b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
	w.b.WriteByte('\n')
}

// escapeLabelValue escapes a label value as the text format requires: backslash, double quote
// and line feed.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabelValue(s string) string { return labelEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD")) }

// escapeHelp escapes HELP text: backslash and line feed.
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }

const (
	pathMetricsHelpSyn  = "Prometheus metrics of the mount (text format; a Vault token with read on <mount>/metrics)."
	pathMetricsHelpDesc = `Serves the mount's metrics in Prometheus's text exposition format (raw text/plain; version=0.0.4)
for a Prometheus scrape job with metrics_path /v1/<mount>/metrics and the Vault token in
"authorization: {type: Bearer, credentials_file: ...}". The token needs read on <mount>/metrics and
nothing else.

Per role (the only label that names anything, and whoever may read this path sees the role names):
vault_letsencrypt_certificates{role,status} (valid, pending, failed), _certificates_expiring,
_certificates_failing, _certificates_waiting (the counts of status/certs),
vault_letsencrypt_earliest_expiry_seconds, vault_letsencrypt_earliest_renewal_seconds and
vault_letsencrypt_remaining_life_ratio_min (alert on "< 1/3": renewal is planned earlier, so a
certificate below a third of its life is one whose renewal is failing). Certificate names, domains,
accounts and error texts never appear: read status/certs for them.

Counters since this mount's backend started on this node (plugin start or reload, unseal):
vault_letsencrypt_orders_total{result="issued|failed"}, vault_letsencrypt_failures_total{class},
vault_letsencrypt_rate_limit_waits_total (waits for the order budget) and
vault_letsencrypt_rate_limited_total (rateLimited answers from the CA); and
vault_letsencrypt_info{version}. Counters are per node: only the active node issues and renews, so
a performance standby answers with the certificate gauges (kept current from storage) and counters
that stay at zero. Scrape the active node (or every node and sum).`
)
