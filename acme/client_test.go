package acme

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolveDirectoryURL(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{in: "letsencrypt", want: LetsEncryptURL},
		{in: "  LetsEncrypt ", want: LetsEncryptURL},
		{in: "letsencrypt-staging", want: LetsEncryptStagingURL},
		{in: "LETSENCRYPT-STAGING", want: LetsEncryptStagingURL},
		{in: "https://ca.example:14000/dir", want: "https://ca.example:14000/dir"},
		{in: " https://acme.zerossl.com/v2/DV90 ", want: "https://acme.zerossl.com/v2/DV90"},
		{in: "", bad: true},
		{in: "   ", bad: true},
		{in: "http://ca.example/dir", bad: true},
		{in: "ca.example/dir", bad: true},
		{in: "https:///dir", bad: true},
		{in: "https://user:pw@ca.example/dir", bad: true},
		{in: "https://token@ca.example/dir", bad: true},
		{in: "letsencrypt-prod", bad: true},
		{in: "https://ca.example/%zz", bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ResolveDirectoryURL(tc.in)
			if !tc.bad {
				require.NoError(t, err)
				assert.Equal(t, tc.want, got)
				return
			}
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			assert.True(t, strings.HasPrefix(ve.Reason, "directory_url "), ve.Reason)
			assert.Contains(t, ve.Reason, "letsencrypt-staging", "says what to give instead")
			assert.NotContains(t, ve.Reason, "pw", "never echoes credentials")
			assert.NotContains(t, ve.Reason, "token", "never echoes credentials")
			assert.Empty(t, got)
		})
	}
}

func TestParseCABundle(t *testing.T) {
	ca := newFakeCA(t)
	one := ca.bundle()
	root := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.caCert.Raw}))

	t.Run("empty means system roots", func(t *testing.T) {
		for _, in := range []string{"", " \n\t"} {
			pool, err := ParseCABundle(in)
			require.NoError(t, err)
			assert.Nil(t, pool)
		}
	})
	t.Run("certificates are trusted", func(t *testing.T) {
		pool, err := ParseCABundle("\n" + one + root + "\n")
		require.NoError(t, err)
		_, err = ca.srv.Certificate().Verify(x509.VerifyOptions{Roots: pool})
		assert.NoError(t, err)
		_, err = ca.caCert.Verify(x509.VerifyOptions{Roots: pool})
		assert.NoError(t, err)
		assert.True(t, pool.Equal(mustPool(t, ca.srv.Certificate(), ca.caCert)))
	})
	bad := []struct {
		name, in, reason string
	}{
		{"not PEM", "hello", "ca_bundle is not a list of PEM certificates"},
		{"trailing junk", one + "junk", "ca_bundle is not a list of PEM certificates"},
		{"private key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `ca_bundle holds a "PRIVATE KEY" PEM block`},
		{"second is bad", one + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "ca_bundle certificate 2 does not parse"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := ParseCABundle(tc.in)
			assert.Nil(t, pool)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			assert.True(t, strings.HasPrefix(ve.Reason, tc.reason), ve.Reason)
			assert.Equal(t, "acme: "+ve.Reason, err.Error())
		})
	}
}

func mustPool(t *testing.T, certs ...*x509.Certificate) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestDial(t *testing.T) {
	ca := newFakeCA(t)
	key, err := EC256.Generate()
	require.NoError(t, err)
	// Every httptest server has the same certificate: the fake CA's own root is another CA.
	otherRoot := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.caCert.Raw}))
	closed := httptest.NewTLSServer(http.NotFoundHandler())
	closedURL := closed.URL + "/directory"
	closed.Close()
	notACME := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"hello":"world"}`))
	}))
	t.Cleanup(notACME.Close)
	notACMEBundle := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: notACME.Certificate().Raw}))

	t.Run("ok", func(t *testing.T) {
		c, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: ca.bundle(), Key: key}, Options{UserAgent: "test"})
		require.NoError(t, err)
		defer c.Close()
		assert.Equal(t, ca.url("/tos"), c.TermsOfService())
		assert.False(t, c.SupportsRenewalInfo())
	})
	cases := []struct {
		name string
		acct Account
		want error
	}{
		{"system roots do not know the CA", Account{DirectoryURL: ca.url("/directory"), Key: key}, ErrUntrustedCA},
		{"bundle of another CA", Account{DirectoryURL: ca.url("/directory"), CABundle: otherRoot, Key: key}, ErrUntrustedCA},
		{"connection refused", Account{DirectoryURL: closedURL, CABundle: ca.bundle(), Key: key}, ErrUnreachable},
		{"not an ACME directory", Account{DirectoryURL: notACME.URL, CABundle: notACMEBundle, Key: key}, ErrUnreachable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(tc.acct, Options{})
			assert.Nil(t, c)
			require.ErrorIs(t, err, tc.want)
			var e *Error
			assert.ErrorAs(t, err, &e)
			if tc.name == "connection refused" {
				assert.ErrorIs(t, err, syscall.ECONNREFUSED)
			}
			if tc.want == ErrUntrustedCA {
				var unknown x509.UnknownAuthorityError
				assert.ErrorAs(t, err, &unknown)
			}
		})
	}
	t.Run("bad bundle", func(t *testing.T) {
		_, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: "junk", Key: key}, Options{})
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Contains(t, ve.Reason, "ca_bundle")
	})
	t.Run("no key", func(t *testing.T) {
		_, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: ca.bundle()}, Options{})
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, "acme: dial: account has no key", err.Error())
	})
	t.Run("transport override ignores the bundle", func(t *testing.T) {
		c, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: "junk", Key: key}, Options{Transport: ca.srv.Client().Transport})
		require.NoError(t, err)
		c.Close()
	})
	t.Run("directory answers 503", func(t *testing.T) {
		ca.setFail("/directory", fakeFailure{status: http.StatusServiceUnavailable, times: 1})
		_, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: ca.bundle(), Key: key}, Options{})
		assert.ErrorIs(t, err, ErrUnreachable)
	})
}

// TestClientCloseClosesIdleConnections is the test for a bug: Close called
// http.Client.CloseIdleConnections, which lego's and our wrapping round trippers swallowed.
func TestClientCloseClosesIdleConnections(t *testing.T) {
	ca := newFakeCA(t)
	c := ca.dial(t, "")
	_, _, err := c.Register(t.Context(), Registration{TermsOfServiceAgreed: true})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ca.openConns() > 0 }, time.Second, time.Millisecond, "the client keeps a connection")
	c.Close()
	assert.Eventually(t, func() bool { return ca.openConns() == 0 }, 2*time.Second, time.Millisecond, "Close closed the idle connection")
}

func TestHeaderTrackerRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := newHeaderTracker(nil)
	tr.now = func() time.Time { return now }

	tr.record("https://ca/order/1", "10")
	assert.Equal(t, 10*time.Second, tr.RetryAfter("https://ca/order/1"))
	assert.Zero(t, tr.RetryAfter("https://ca/order/2"))
	now = now.Add(4 * time.Second)
	assert.Equal(t, 6*time.Second, tr.RetryAfter("https://ca/order/1"), "counts down from the answer")
	now = now.Add(6 * time.Second)
	assert.Zero(t, tr.RetryAfter("https://ca/order/1"))

	tr.record("https://ca/order/1", "5")
	tr.record("https://ca/order/1", "")
	assert.Zero(t, tr.RetryAfter("https://ca/order/1"), "an answer without Retry-After clears it")
	tr.record("https://ca/order/1", "later")
	assert.Zero(t, tr.RetryAfter("https://ca/order/1"), "an unparsable Retry-After is ignored")
	assert.Zero(t, tr.size())
}

// TestHeaderTrackerBounded is the test for a leak: the tracker kept an entry for every URL that
// ever carried Retry-After (every renewalInfo URL, every finished order), forever.
func TestHeaderTrackerBounded(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := newHeaderTracker(nil)
	tr.now = func() time.Time { return now }

	// Renewal checks of many certificates, one URL per second, each answered with Retry-After:
	// 6 hours, so none expires: the cap holds and the entries that end soonest go.
	n := retryAfterMaxEntries + 300
	maxSize := 0
	for i := range n {
		tr.record(fmt.Sprintf("https://ca/renewalInfo/cert-%d", i), "21600")
		now = now.Add(time.Second)
		maxSize = max(maxSize, tr.size())
	}
	assert.Equal(t, retryAfterMaxEntries, maxSize)
	assert.NotZero(t, tr.RetryAfter(fmt.Sprintf("https://ca/renewalInfo/cert-%d", n-1)), "the newest entries are kept")
	assert.Zero(t, tr.RetryAfter("https://ca/renewalInfo/cert-0"), "the oldest were evicted")

	// Short Retry-Afters expire: the map holds only what is still in force.
	tr = newHeaderTracker(nil)
	tr.now = func() time.Time { return now }
	maxSize = 0
	for i := range 2000 {
		tr.record(fmt.Sprintf("https://ca/order/%d", i), "3")
		now = now.Add(time.Second)
		maxSize = max(maxSize, tr.size())
	}
	assert.Equal(t, 3, maxSize)
	now = now.Add(3 * time.Second)
	tr.record("https://ca/order/last", "1")
	assert.Equal(t, 1, tr.size(), "expired entries are pruned on the next insertion")
}

func TestHeaderTrackerRoundTrip(t *testing.T) {
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, "/fail") {
			return nil, errors.New("boom")
		}
		h := http.Header{}
		h.Set("Retry-After", "7")
		return &http.Response{StatusCode: 200, Header: h, Body: http.NoBody, Request: r}, nil
	})
	tr := newHeaderTracker(rt)
	req, err := http.NewRequest(http.MethodGet, "https://ca/order/9", nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.InDelta(t, 7*time.Second, tr.RetryAfter("https://ca/order/9"), float64(time.Second))
	req, err = http.NewRequest(http.MethodGet, "https://ca/fail", nil)
	require.NoError(t, err)
	_, err = tr.RoundTrip(req)
	assert.EqualError(t, err, "boom")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
