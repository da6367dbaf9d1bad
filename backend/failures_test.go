package backend

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
)

// A certificate's last_error is read by tenants: it names what failed and for which name, and
// quotes no DNS provider or transport text, whatever encoding a credential takes there.
func TestFailureSummaryIsTenantSafe(t *testing.T) {
	const password = `Pa$$ w0rd/+=&?"<>\`
	jsonQuoted, _ := json.Marshal(password)
	encodings := []string{
		password,
		url.QueryEscape(password),
		url.PathEscape(password),
		strconv.Quote(password),
		string(jsonQuoted),
		base64.StdEncoding.EncodeToString([]byte(password)),
		base64.RawURLEncoding.EncodeToString([]byte(password)),
		"Pa%24%24+w0rd",
	}
	leaky := func() error {
		return fmt.Errorf("post https://api.dns.test/add?auth-id=1&auth-password=%s: dial tcp: connection refused; body %s %s %s %s %s %s",
			url.QueryEscape(password), encodings[0], encodings[2], encodings[3], encodings[4], encodings[5], encodings[6])
	}
	cases := []struct {
		name string
		err  error
		want []string
	}{
		{"provider failed to present", fmt.Errorf("%w: %w", &acme.Error{Kind: acme.ErrDNSRecord, Identifier: "www.team-a.test",
			Detail: "the DNS provider could not publish the challenge record"}, leaky()),
			[]string{"DNS-01 for www.team-a.test", "could not publish"}},
		{"wrapped twice", fmt.Errorf("job: %w", fmt.Errorf("%w: %w", &acme.Error{Kind: acme.ErrDNSRecord, Identifier: "a.test", Detail: "did not become visible"}, leaky())),
			[]string{"DNS-01 for a.test", "did not become visible"}},
		{"transport error with credentials in the URL", fmt.Errorf("%w: %w", &acme.Error{Kind: acme.ErrUnreachable}, leaky()),
			[]string{"unreachable"}},
		{"unclassified error", leaky(), []string{"internal error"}},
		{"plan error in our words", fmt.Errorf("%w: role %q no longer allows %q", errPlan, "team-a", "x.test"),
			[]string{`role "team-a" no longer allows "x.test"`}},
		{"CA problem", &acme.Error{Kind: acme.ErrChallengeFailed, Identifier: "www.team-a.test", ProblemType: "urn:ietf:params:acme:error:dns",
			Detail: "NXDOMAIN looking up TXT for _acme-challenge.www.team-a.test"}, []string{"could not validate", "www.team-a.test", "dns: NXDOMAIN"}},
		{"rate limited", &acme.Error{Kind: acme.ErrRateLimited, ProblemType: "urn:ietf:params:acme:error:rateLimited", Detail: "too many new orders",
			RetryAfter: 90 * time.Second}, []string{"rate-limited", "too many new orders", "1m30s"}},
		{"huge CA detail", &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:rejectedIdentifier",
			Detail: strings.Repeat("x", 100_000)}, []string{"rejected", "rejectedIdentifier", "..."}},
		{"bare kind", acme.ErrUntrustedCA, []string{"not trusted"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := failureSummary(tc.err, "0123abcd")
			for _, w := range tc.want {
				assert.Contains(t, got, w)
			}
			assert.Contains(t, got, "ref 0123abcd")
			assert.Less(t, len(got), 600)
			for _, enc := range encodings {
				assert.NotContains(t, got, enc)
			}
			for _, bit := range []string{"auth-password", "api.dns.test", "w0rd", "connection refused"} {
				assert.NotContains(t, got, bit)
			}
		})
	}
	assert.NotEqual(t, newFailureRef(), newFailureRef())
}
