package acme

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-acme/lego/v4/acme/api"
	"github.com/hashicorp/go-cleanhttp"
	"golang.org/x/sync/semaphore"
)

// Directory URLs behind the aliases users may give instead of a URL.
const (
	LetsEncryptURL        = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStagingURL = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// ResolveDirectoryURL expands the aliases "letsencrypt" and "letsencrypt-staging" (case-insensitive)
// and checks that anything else is an absolute https URL without user information. Errors are
// *ValidationError.
func ResolveDirectoryURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return "", invalid(nil, "directory_url is required: give the ACME directory URL, or letsencrypt / letsencrypt-staging")
	case "letsencrypt":
		return LetsEncryptURL, nil
	case "letsencrypt-staging":
		return LetsEncryptStagingURL, nil
	}
	u, err := url.Parse(s)
	if err == nil && u.User != nil {
		// Not echoed: the URL holds a password, or what may be one.
		return "", invalid(nil, "directory_url must not hold a user name or password: give the CA's ACME directory URL (https://…), or letsencrypt / letsencrypt-staging")
	}
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", invalid(nil, "directory_url %q is not an https URL: give the CA's ACME directory URL (https://…), or letsencrypt / letsencrypt-staging", s)
	}
	return u.String(), nil
}

// ParseCABundle parses PEM certificates to trust for a CA's HTTPS endpoint. An empty bundle yields
// a nil pool (use the system roots). Errors are *ValidationError.
func ParseCABundle(bundle string) (*x509.CertPool, error) {
	if strings.TrimSpace(bundle) == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	rest := []byte(bundle)
	n := 0
	// Block by block rather than pool.AppendCertsFromPEM, which skips what it cannot parse and
	// cannot say which block is bad.
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, invalid(nil, "ca_bundle holds a %q PEM block: give only CERTIFICATE blocks", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, invalid(nil, "ca_bundle certificate %d does not parse: %v", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, invalid(nil, "ca_bundle is not a list of PEM certificates (-----BEGIN CERTIFICATE-----)")
	}
	return pool, nil
}

// Account is what the client needs to act for one ACME account.
type Account struct {
	// DirectoryURL is the CA's directory (already resolved by ResolveDirectoryURL).
	DirectoryURL string
	// CABundle holds PEM roots for the CA's HTTPS endpoint; empty means the system roots.
	CABundle string
	// Key is the account key.
	Key crypto.Signer
	// URL is the account URL (the JWS "kid"); empty before registration.
	URL string
}

// Options tune a Client. The zero value is usable.
type Options struct {
	// UserAgent is sent with every request.
	UserAgent string
	// RequestTimeout bounds one HTTP exchange with the CA (default 30 s).
	RequestTimeout time.Duration
	// Transport overrides the HTTP transport (tests). It is used as it is: Account.CABundle is
	// then ignored.
	Transport http.RoundTripper
}

// Client talks to one CA as one account; each Client has its own HTTP client and trust roots, and
// shares nothing with other clients.
//
// Register and LookupAccount set the account URL that every later request is signed with, so they
// must finish before other methods are called on the same Client. Apart from that, a Client is
// safe for concurrent use; RolloverKey changes the key under requests in flight without failing
// them (see holdKey and signingTransport).
type Client struct {
	acct Account // DirectoryURL, CABundle and URL; the key is the session's
	// sess is the current session (lego's core and the key it signs with). A key rollover
	// replaces it.
	sess atomic.Pointer[session]
	// signMu is held shared by every signed request in flight and exclusively by a key change.
	signMu sync.RWMutex
	// gate is held by authorizations being answered and wholly by a key rollover (holdKey).
	gate      *semaphore.Weighted
	headers   *headerTracker
	raw       *http.Client      // this package's own requests (key change), beside lego's
	base      http.RoundTripper // the transport under headerTracker, for Close
	userAgent string
	timeout   time.Duration
}

// Dial fetches the CA's directory and returns a client for acct. acct.URL may be empty to register.
// A bad acct.CABundle yields a *ValidationError; failures to fetch the directory are classified
// like every other CA error (*Error).
func Dial(acct Account, opts Options) (*Client, error) {
	if acct.Key == nil {
		return nil, invalid(nil, "dial: account has no key")
	}
	httpClient, tracker, err := newHTTPClient(acct.CABundle, opts)
	if err != nil {
		return nil, err
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = "vault-plugin-secrets-letsencrypt"
	}
	c := &Client{acct: acct, gate: semaphore.NewWeighted(keyGateWeight), headers: tracker, raw: httpClient,
		base: tracker.next, userAgent: ua, timeout: httpClient.Timeout}
	s, err := c.newSession(acct.Key)
	if err != nil {
		return nil, err
	}
	c.sess.Store(s)
	return c, nil
}

// Close releases idle connections to the CA. The Client stays usable.
func (c *Client) Close() {
	// Not http.Client.CloseIdleConnections: lego and headerTracker wrap the transport in round trippers
	// that do not pass the call on.
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// TermsOfService returns the CA's terms-of-service URL from its directory, if it has one.
func (c *Client) TermsOfService() string { return c.api().GetDirectory().Meta.TermsOfService }

// SupportsRenewalInfo reports whether the CA offers ARI (RFC 9773).
func (c *Client) SupportsRenewalInfo() bool { return c.api().GetDirectory().RenewalInfo != "" }

// newHTTPClient builds the client's own HTTP client: go-cleanhttp's pooled transport (never shared
// with another client) trusting only the bundle's roots, or the system roots when bundle is empty.
func newHTTPClient(bundle string, opts Options) (*http.Client, *headerTracker, error) {
	timeout := opts.RequestTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	rt := opts.Transport
	if rt == nil {
		pool, err := ParseCABundle(bundle)
		if err != nil {
			return nil, nil, err
		}
		t := cleanhttp.DefaultPooledTransport()
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		t.ResponseHeaderTimeout = timeout
		rt = t
	}
	tracker := newHeaderTracker(rt)
	return &http.Client{Transport: tracker, Timeout: timeout}, tracker, nil
}

// retryAfterMaxEntries caps the number of URLs headerTracker remembers. Only URLs being polled
// right now matter, so this is far above what a busy mount needs.
const retryAfterMaxEntries = 1024

// headerTracker remembers the last Retry-After header the CA sent for each URL, because lego's
// acme/api drops it for orders and authorizations.
//
// An entry is forgotten once the time the CA asked us to wait for has passed, and at most
// retryAfterMaxEntries entries are kept (those that end soonest go first), so URLs that are never
// asked again (renewal information, finished orders) do not accumulate.
type headerTracker struct {
	next http.RoundTripper
	now  func() time.Time

	mu sync.Mutex
	// until maps a URL to the time before which the CA asked not to be asked again.
	until map[string]time.Time
}

func newHeaderTracker(next http.RoundTripper) *headerTracker {
	return &headerTracker{next: next, now: time.Now, until: map[string]time.Time{}}
}

// RoundTrip passes the request on and records the response's Retry-After for the request's URL.
func (t *headerTracker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	t.record(req.URL.String(), resp.Header.Get("Retry-After"))
	return resp, nil
}

func (t *headerTracker) record(key, header string) {
	d, err := api.ParseRetryAfter(header)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil || d <= 0 {
		delete(t.until, key)
		return
	}
	// Prune on every insertion: the map is small, so the scan costs little next to the HTTP
	// exchange that caused it.
	for k, u := range t.until {
		if !now.Before(u) {
			delete(t.until, k)
		}
	}
	t.until[key] = now.Add(d)
	for len(t.until) > retryAfterMaxEntries {
		var victim string
		var soonest time.Time
		for k, u := range t.until {
			if victim == "" || u.Before(soonest) {
				victim, soonest = k, u
			}
		}
		delete(t.until, victim)
	}
}

// RetryAfter returns how much longer the CA asked us to wait before asking rawURL again: the
// Retry-After of its last answer for rawURL minus the time since (0 if it sent none).
func (t *headerTracker) RetryAfter(rawURL string) time.Duration {
	now := t.now()
	t.mu.Lock()
	u, ok := t.until[rawURL]
	t.mu.Unlock()
	if !ok || !now.Before(u) {
		return 0
	}
	return u.Sub(now)
}

// size returns the number of remembered URLs (tests).
func (t *headerTracker) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.until)
}
