package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ACMEProxy is a counting HTTPS reverse proxy in front of an ACME server (Pebble).
//
// It listens on 127.0.0.1 with a certificate from its own throw-away test CA (CAPEM: give it to the
// account as ca_bundle) and rewrites the upstream base URL to its own in response bodies and in
// Location/Link headers, so every request the client makes after fetching the directory goes
// through the proxy.
//
// The Host header of the incoming request is passed upstream unchanged: ACME requests are JWS
// documents whose protected "url" header names the URL the client used (the proxy's), and Pebble
// checks it against https://<Host><path>. Pebble then also builds the URLs in its answers from
// that Host, so the rewriting below is a safety net for everything that is built differently.
//
// It counts successful (HTTP 201) new-order responses and lets a test inject faults (see SetFault,
// RateLimited).
type ACMEProxy struct {
	// URL is the proxy's base URL, e.g. https://127.0.0.1:41234.
	URL string
	// CAPEM is the PEM of the CA that signed the proxy's HTTPS certificate.
	CAPEM []byte

	upstream *url.URL
	server   *http.Server
	listener net.Listener

	mu           sync.Mutex
	newOrderPath string
	newOrders    int
	requests     map[string]int // "METHOD path" -> count
	fault        Fault
	orderBodies  []map[string]any // decoded JWS payloads of accepted (201) new-order requests
	orderTimes   []time.Time      // when each accepted new-order request arrived
	statuses     map[int]int      // upstream answers by HTTP status (injected faults not counted)
	answerHook   func(*http.Response)
}

// orderPayloadKey carries a new-order request's decoded payload and arrival time to modifyResponse.
type orderPayloadKey struct{}

type orderPayload struct {
	at      time.Time
	payload map[string]any
}

// Fault may answer a request instead of the upstream server. It returns true when it has written
// a response. It is called for every request, concurrently.
type Fault func(w http.ResponseWriter, r *http.Request) bool

// NewACMEProxy starts a proxy in front of upstreamBase (scheme://host:port of the ACME server,
// without a path). upstreamRootsPEM are the roots that sign the upstream's HTTPS certificate.
func NewACMEProxy(upstreamBase string, upstreamRootsPEM []byte) (*ACMEProxy, error) {
	up, err := url.Parse(upstreamBase)
	if err != nil || up.Scheme == "" || up.Host == "" {
		return nil, fmt.Errorf("acmeproxy: bad upstream base URL %q", upstreamBase)
	}
	up.Path, up.RawQuery, up.Fragment = "", "", ""

	roots := x509.NewCertPool()
	if len(upstreamRootsPEM) > 0 && !roots.AppendCertsFromPEM(upstreamRootsPEM) {
		return nil, errors.New("acmeproxy: no certificate in upstream roots PEM")
	}

	caPEM, serverCert, err := newProxyTLS()
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("acmeproxy: listen: %w", err)
	}
	p := &ACMEProxy{
		URL:          "https://" + ln.Addr().String(),
		CAPEM:        caPEM,
		upstream:     up,
		listener:     ln,
		newOrderPath: "/order-plz", // Pebble's; replaced by what the directory says once seen
		requests:     map[string]int{},
		statuses:     map[int]int{},
	}

	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host // keep the proxy's host: see the type comment (JWS "url")
			pr.Out.Header.Set("X-Forwarded-Proto", "https")
		},
		Transport:      transport,
		ModifyResponse: p.modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeProblem(w, http.StatusBadGateway, "urn:ietf:params:acme:error:serverInternal",
				"acmeproxy: upstream error: "+err.Error(), 0)
		},
	}

	p.server = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.mu.Lock()
			p.requests[r.Method+" "+r.URL.Path]++
			f := p.fault
			isNewOrder := r.Method == http.MethodPost && r.URL.Path == p.newOrderPath
			p.mu.Unlock()
			if isNewOrder {
				r = r.WithContext(context.WithValue(r.Context(), orderPayloadKey{}, &orderPayload{at: time.Now(), payload: decodeJWSPayload(r)}))
			}
			if f != nil && f(w, r) {
				return
			}
			rp.ServeHTTP(w, r)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		// HTTP/1.1 only, so that the Unreachable fault can drop connections (HTTP/2 cannot hijack).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go func() { _ = p.server.ServeTLS(ln, "", "") }()
	return p, nil
}

// DirectoryURL is the proxied form of an upstream directory URL (same path, proxy's host).
func (p *ACMEProxy) DirectoryURL(upstreamDirectory string) string {
	return p.RewriteString(upstreamDirectory)
}

// RewriteString replaces the upstream base URL by the proxy's in s.
func (p *ACMEProxy) RewriteString(s string) string {
	return strings.ReplaceAll(s, p.upstream.String(), p.URL)
}

// NewOrders is the number of new-order requests the upstream answered with 201 Created.
func (p *ACMEProxy) NewOrders() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.newOrders
}

// Requests is the number of requests seen for method and path (e.g. "POST", "/order-plz").
func (p *ACMEProxy) Requests(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[method+" "+path]
}

// NewOrderPath is the path of the upstream's newOrder resource.
func (p *ACMEProxy) NewOrderPath() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.newOrderPath
}

// UpstreamStatuses is how many answers the upstream gave with HTTP status code (e.g. 429 for
// rateLimited); answers written by an injected Fault are not counted.
func (p *ACMEProxy) UpstreamStatuses(code int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statuses[code]
}

// NewOrderPayloads returns the decoded JWS payloads of the new-order requests the upstream
// accepted (201), in order, e.g. to check a renewal's "replaces" field. Requests it refused (such
// as Pebble's deliberate badNonce rejections, which clients retry) are not included.
func (p *ACMEProxy) NewOrderPayloads() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.orderBodies...)
}

// NewOrderTimes returns when each accepted new-order request arrived, in order.
func (p *ACMEProxy) NewOrderTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.orderTimes...)
}

// decodeJWSPayload returns the payload of a flattened-JSON JWS request body, and puts the body back
// for the upstream.
func decodeJWSPayload(r *http.Request) map[string]any {
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	var jws struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(body, &jws) != nil {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil {
		return nil
	}
	var payload map[string]any
	if json.Unmarshal(raw, &payload) != nil {
		return nil
	}
	return payload
}

// Reset zeroes the counters.
func (p *ACMEProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.newOrders = 0
	p.requests = map[string]int{}
	p.statuses = map[int]int{}
	p.orderBodies = nil
	p.orderTimes = nil
}

// SetFault installs (or with nil removes) a fault hook.
func (p *ACMEProxy) SetFault(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
}

// SetAnswerHook installs (or with nil removes) a hook called with every upstream answer after the
// proxy's rewriting and counting, before it is sent on: it may change its headers and body (then
// also ContentLength and Content-Length). resp.Request carries the incoming request's context. It
// is called concurrently.
func (p *ACMEProxy) SetAnswerHook(h func(resp *http.Response)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answerHook = h
}

// HideRenewalInfo removes renewalInfo from resp when it answers GET dirPath (the ACME directory), so
// that the client sees a CA without ARI and renews at its own plan. For an answer hook (SetAnswerHook).
func HideRenewalInfo(resp *http.Response, dirPath string) {
	if resp.Request.Method != http.MethodGet || resp.Request.URL.Path != dirPath {
		return
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var dir map[string]any
	if err == nil && json.Unmarshal(body, &dir) == nil {
		delete(dir, "renewalInfo")
		if b, err := json.Marshal(dir); err == nil {
			body = b
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
}

// Close stops the proxy.
func (p *ACMEProxy) Close() error {
	return p.server.Close()
}

// RateLimited returns a Fault that answers up to times requests (times <= 0: all) whose path
// starts with pathPrefix with 429, a Retry-After header and an ACME rateLimited problem document.
func RateLimited(pathPrefix string, retryAfter time.Duration, times int) Fault {
	var mu sync.Mutex
	served := 0
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, pathPrefix) {
			return false
		}
		mu.Lock()
		if times > 0 && served >= times {
			mu.Unlock()
			return false
		}
		served++
		mu.Unlock()
		writeProblem(w, http.StatusTooManyRequests, "urn:ietf:params:acme:error:rateLimited",
			"acmeproxy: injected rate limit", retryAfter)
		return true
	}
}

// Delay returns a Fault that holds every request whose path starts with pathPrefix for d and then
// lets it through to the upstream (to make sure other work overlaps an ACME request).
func Delay(pathPrefix string, d time.Duration) Fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, pathPrefix) {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
		return false
	}
}

// Unreachable returns a Fault that drops the connection of every request, as if the CA could not
// be reached.
func Unreachable() Fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		writeProblem(w, http.StatusServiceUnavailable, "urn:ietf:params:acme:error:serverInternal", "acmeproxy: injected outage", 0)
		return true
	}
}

// Hold returns a Fault that holds every request whose method and path match (path prefix) until
// release is called, and a channel closed when the first such request arrives. A crash test kills
// the plugin while a request is held.
func Hold(method, pathPrefix string) (f Fault, seen <-chan struct{}, release func()) {
	seenCh, releaseCh := make(chan struct{}), make(chan struct{})
	var seenOnce, releaseOnce sync.Once
	f = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != method || !strings.HasPrefix(r.URL.Path, pathPrefix) {
			return false
		}
		seenOnce.Do(func() { close(seenCh) })
		select {
		case <-releaseCh:
		case <-r.Context().Done():
		}
		return false
	}
	return f, seenCh, func() { releaseOnce.Do(func() { close(releaseCh) }) }
}

func writeProblem(w http.ResponseWriter, status int, typ, detail string, retryAfter time.Duration) {
	if retryAfter > 0 {
		secs := int((retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": typ, "detail": detail, "status": status})
}

func (p *ACMEProxy) modifyResponse(resp *http.Response) error {
	base := p.upstream.String()
	for _, h := range []string{"Location", "Link"} {
		vals := resp.Header.Values(h)
		if len(vals) == 0 {
			continue
		}
		resp.Header.Del(h)
		for _, v := range vals {
			resp.Header.Add(h, strings.ReplaceAll(v, base, p.URL))
		}
	}

	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	body = bytes.ReplaceAll(body, []byte(base), []byte(p.URL))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Del("Content-Encoding") // never compressed by Pebble; be safe after rewriting

	p.mu.Lock()
	p.statuses[resp.StatusCode]++
	p.mu.Unlock()

	req := resp.Request
	if req.Method == http.MethodGet || req.Method == http.MethodPost {
		var dir struct {
			NewOrder string `json:"newOrder"`
		}
		if strings.Contains(resp.Header.Get("Content-Type"), "json") &&
			json.Unmarshal(body, &dir) == nil && dir.NewOrder != "" {
			if u, err := url.Parse(dir.NewOrder); err == nil && u.Path != "" {
				p.mu.Lock()
				p.newOrderPath = u.Path
				p.mu.Unlock()
			}
		}
	}
	if req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated {
		p.mu.Lock()
		if req.URL.Path == p.newOrderPath {
			p.newOrders++
			if op, ok := req.Context().Value(orderPayloadKey{}).(*orderPayload); ok {
				p.orderBodies = append(p.orderBodies, op.payload)
				p.orderTimes = append(p.orderTimes, op.at)
			}
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	hook := p.answerHook
	p.mu.Unlock()
	if hook != nil {
		hook(resp)
	}
	return nil
}

// newProxyTLS makes a throw-away CA and a certificate for 127.0.0.1/localhost signed by it.
func newProxyTLS() (caPEM []byte, cert tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "e2e acmeproxy test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, cert, err
	}

	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(47 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	cert = tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	return caPEM, cert, nil
}
