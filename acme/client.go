package acme

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/acme/api"
)

// Directory URLs behind the aliases users may give instead of a URL.
const (
	LetsEncryptURL        = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStagingURL = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// ResolveDirectoryURL expands the aliases "letsencrypt" and "letsencrypt-staging" and checks that
// anything else is an absolute https URL.
func ResolveDirectoryURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return "", errors.New("directory_url is required: give the ACME directory URL, or letsencrypt / letsencrypt-staging")
	case "letsencrypt":
		return LetsEncryptURL, nil
	case "letsencrypt-staging":
		return LetsEncryptStagingURL, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("directory_url %q is not an https URL: give the CA's ACME directory URL (https://…), or letsencrypt / letsencrypt-staging", s)
	}
	return u.String(), nil
}

// ParseCABundle parses PEM certificates to trust for a CA's HTTPS endpoint. An empty bundle yields
// a nil pool (use the system roots).
func ParseCABundle(bundle string) (*x509.CertPool, error) {
	if strings.TrimSpace(bundle) == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	rest := []byte(bundle)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("ca_bundle holds a %q PEM block: give only CERTIFICATE blocks", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca_bundle certificate %d does not parse: %v", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("ca_bundle is not a list of PEM certificates (-----BEGIN CERTIFICATE-----)")
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
	// Transport overrides the HTTP transport (tests). Its TLS settings are used as they are.
	Transport http.RoundTripper
}

// Client talks to one CA as one account. It is safe for concurrent use; each Client has its own
// HTTP client and trust roots, and shares nothing with other clients.
type Client struct {
	acct    Account
	core    *api.Core
	headers *headerTracker
	http    *http.Client
}

// Dial fetches the CA's directory and returns a client for acct. acct.URL may be empty to register.
func Dial(acct Account, opts Options) (*Client, error) {
	if acct.Key == nil {
		return nil, errors.New("acme: dial: account has no key")
	}
	httpClient, tracker, err := newHTTPClient(acct.CABundle, opts)
	if err != nil {
		return nil, err
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = "vault-plugin-secrets-letsencrypt"
	}
	core, err := api.New(httpClient, ua, acct.DirectoryURL, acct.URL, acct.Key)
	if err != nil {
		return nil, classifyTransport(fmt.Errorf("acme: fetch directory %s: %w", acct.DirectoryURL, err))
	}
	return &Client{acct: acct, core: core, headers: tracker, http: httpClient}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// TermsOfService returns the CA's terms-of-service URL from its directory, if it has one.
func (c *Client) TermsOfService() string { return c.core.GetDirectory().Meta.TermsOfService }

// SupportsRenewalInfo reports whether the CA offers ARI (RFC 9773).
func (c *Client) SupportsRenewalInfo() bool { return c.core.GetDirectory().RenewalInfo != "" }

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
		rt = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}
	}
	tracker := &headerTracker{next: rt, retryAfter: map[string]string{}}
	return &http.Client{Transport: tracker, Timeout: timeout}, tracker, nil
}

// headerTracker remembers the last Retry-After header the CA sent for each URL, because lego's
// acme/api drops it for orders and authorizations.
type headerTracker struct {
	next       http.RoundTripper
	mu         sync.Mutex
	retryAfter map[string]string
}

func (t *headerTracker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	key := req.URL.String()
	t.mu.Lock()
	if v := resp.Header.Get("Retry-After"); v != "" {
		t.retryAfter[key] = v
	} else {
		delete(t.retryAfter, key)
	}
	t.mu.Unlock()
	return resp, nil
}

// RetryAfter returns how long the CA asked to wait before asking rawURL again (0 if it did not).
func (t *headerTracker) RetryAfter(rawURL string) time.Duration {
	t.mu.Lock()
	v := t.retryAfter[rawURL]
	t.mu.Unlock()
	d, err := api.ParseRetryAfter(v)
	if err != nil || d < 0 {
		return 0
	}
	return d
}
