package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeACME is a tiny stand-in for Pebble that answers with absolute URLs built from its own
// base URL (not from the Host header), so the proxy's rewriting is what makes them point back
// at the proxy.
func fakeACME(t *testing.T) (*httptest.Server, *[]string) {
	var hosts []string
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts = append(hosts, r.Host)
		base := srv.URL
		switch {
		case r.URL.Path == "/dir":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"newNonce":"%[1]s/nonce-plz","newAccount":"%[1]s/sign-me-up","newOrder":"%[1]s/order-plz"}`, base)
		case r.URL.Path == "/order-plz" && r.Method == http.MethodPost:
			if strings.Contains(r.URL.RawQuery, "fail") {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Location", base+"/my-order/1")
			w.Header().Add("Link", "<"+base+"/dir>;rel=\"index\"")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"status":"pending","finalize":"%[1]s/finalize-order/1","authorizations":["%[1]s/authZ/1"]}`, base)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hosts
}

func proxyClient(t *testing.T, p *ACMEProxy) *http.Client {
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(p.CAPEM))
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func TestACMEProxyRewritesAndCounts(t *testing.T) {
	up, hosts := fakeACME(t)
	upCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
	p, err := NewACMEProxy(up.URL, upCA)
	require.NoError(t, err)
	defer p.Close()
	hc := proxyClient(t, p)

	require.Equal(t, p.URL+"/dir", p.DirectoryURL(up.URL+"/dir"))
	resp, err := hc.Get(p.DirectoryURL(up.URL + "/dir"))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var dir map[string]string
	require.NoError(t, json.Unmarshal(body, &dir), "%s", body)
	assert.Equal(t, p.URL+"/order-plz", dir["newOrder"])
	assert.NotContains(t, string(body), up.URL)
	assert.Equal(t, fmt.Sprint(len(body)), resp.Header.Get("Content-Length"))
	assert.Equal(t, strings.TrimPrefix(p.URL, "https://"), (*hosts)[0], "the proxy's Host reaches upstream (JWS url check)")

	resp, err = hc.Post(dir["newOrder"], "application/jose+json", strings.NewReader("{}"))
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, p.URL+"/my-order/1", resp.Header.Get("Location"))
	assert.Equal(t, "<"+p.URL+"/dir>;rel=\"index\"", resp.Header.Get("Link"))
	assert.Contains(t, string(body), p.URL+"/finalize-order/1")
	assert.NotContains(t, string(body), up.URL)
	assert.Equal(t, 1, p.NewOrders())

	// A failed new-order is not counted.
	resp, err = hc.Post(dir["newOrder"]+"?fail", "application/jose+json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, 1, p.NewOrders())
	assert.Equal(t, 2, p.Requests(http.MethodPost, "/order-plz"))
}

func TestACMEProxyRateLimitFault(t *testing.T) {
	up, _ := fakeACME(t)
	upCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
	p, err := NewACMEProxy(up.URL, upCA)
	require.NoError(t, err)
	defer p.Close()
	hc := proxyClient(t, p)

	p.SetFault(RateLimited("/order-plz", 3*time.Second, 1))
	resp, err := hc.Post(p.URL+"/order-plz", "application/jose+json", strings.NewReader("{}"))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "3", resp.Header.Get("Retry-After"))
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	var prob map[string]any
	require.NoError(t, json.Unmarshal(body, &prob))
	assert.Equal(t, "urn:ietf:params:acme:error:rateLimited", prob["type"])
	assert.Equal(t, 0, p.NewOrders())

	// Only once: the next request goes through.
	resp, err = hc.Post(p.URL+"/order-plz", "application/jose+json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, 1, p.NewOrders())
}

func TestACMEProxyDelayFault(t *testing.T) {
	up, _ := fakeACME(t)
	upCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
	p, err := NewACMEProxy(up.URL, upCA)
	require.NoError(t, err)
	defer p.Close()
	p.SetFault(Delay("/order-plz", 300*time.Millisecond))
	start := time.Now()
	resp, err := proxyClient(t, p).Post(p.URL+"/order-plz", "application/jose+json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode, "passed through after the delay")
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	assert.Equal(t, 1, p.NewOrders())
}
