package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/stretchr/testify/require"
)

// fakeCA is an in-process ACME server (RFC 8555) with just what the client's code paths need. It
// parses JWS payloads but does not verify signatures. Objects move on one step per request so that
// the client has to poll: a challenge answers "processing" when accepted and "valid" when asked
// again; a finalized order answers "processing" and then "valid".
type fakeCA struct {
	t   *testing.T
	srv *httptest.Server

	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate

	connMu sync.Mutex
	conns  map[net.Conn]http.ConnState

	mu       sync.Mutex
	nonce    int
	requests []string // "METHOD /path" of every request, in order
	// ari enables the renewalInfo directory entry.
	ari bool
	// fail maps a path (e.g. "/new-order") to a canned error answer for its next requests.
	fail map[string]fakeFailure
	// retryAfter maps a path to a Retry-After header value for its answers.
	retryAfter map[string]string
	// noDNS01 makes new authorizations offer only http-01.
	noDNS01 bool
	// challengeError makes accepted challenges end invalid with this problem.
	challengeError *acme.ProblemDetails

	contact      []string // contact of the last new-account or account update
	eab          bool     // last new-account carried an external account binding
	orders       map[string]*fakeOrder
	authzs       map[string]*fakeAuthz
	newOrders    int
	lastNewOrder map[string]any // payload of the last new-order
	revoked      []acme.RevokeCertMessage
	renewalIDs   []string
	window       acme.Window
	// Accounts, key changes and deactivation (fakeca_accounts_test.go).
	fakeAccounts
}

type fakeFailure struct {
	status     int
	problem    string // problem type URN; empty means a non-JSON body
	retryAfter string
	times      int // how many requests fail; 0 means all
}

type fakeOrder struct {
	id         string
	status     string
	idents     []acme.Identifier
	authzIDs   []string
	finalized  bool
	slowPolls  int // polls that still see "processing" after finalize
	certPEM    []byte
	orderError *acme.ProblemDetails
}

type fakeAuthz struct {
	id       string
	ident    acme.Identifier
	wildcard bool
	status   string
	chStatus string
	token    string
	dns01    bool
}

func newFakeCA(t *testing.T) *fakeCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fake ACME root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		SubjectKeyId:          []byte{0x69, 0x88, 0x5b, 0x6b, 0x87, 0x46, 0x40, 0x41, 0xe1, 0xb3},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	f := &fakeCA{
		t: t, caKey: key, caCert: caCert,
		fail: map[string]fakeFailure{}, retryAfter: map[string]string{},
		orders: map[string]*fakeOrder{}, authzs: map[string]*fakeAuthz{}, conns: map[net.Conn]http.ConnState{},
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ConnState = f.trackConn
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS handshake failures are expected
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCA) trackConn(c net.Conn, s http.ConnState) {
	f.connMu.Lock()
	defer f.connMu.Unlock()
	if s == http.StateClosed || s == http.StateHijacked {
		delete(f.conns, c)
	} else {
		f.conns[c] = s
	}
}

// openConns returns the number of client connections the server has open.
func (f *fakeCA) openConns() int {
	f.connMu.Lock()
	defer f.connMu.Unlock()
	return len(f.conns)
}

// bundle returns the PEM of the server's HTTPS certificate, to use as Account.CABundle.
func (f *fakeCA) bundle() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}))
}

func (f *fakeCA) url(path string) string { return f.srv.URL + path }

// dial returns a client of the fake CA for a new account key.
func (f *fakeCA) dial(t *testing.T, accountURL string) *Client {
	t.Helper()
	key, err := EC256.Generate()
	require.NoError(t, err)
	c, err := Dial(Account{DirectoryURL: f.url("/directory"), CABundle: f.bundle(), Key: key, URL: accountURL}, Options{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func (f *fakeCA) setFail(path string, ff fakeFailure) {
	f.with(func() { f.fail[path] = ff })
}

// with runs fn holding the fake's lock: the tests change and read its state only so.
func (f *fakeCA) with(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeCA) numNewOrders() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.newOrders
}

func (f *fakeCA) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// addOrderLocked stores an order as if an earlier run had created it, and returns its URL.
func (f *fakeCA) addOrderLocked(status string, domains ...string) string {
	o := f.newOrderLocked(domains)
	o.status = status
	for _, id := range o.authzIDs {
		a := f.authzs[id]
		if status != acme.StatusPending {
			a.status, a.chStatus = acme.StatusValid, acme.StatusValid
		}
	}
	if status == acme.StatusValid {
		o.certPEM = f.issueLocked(domains)
		o.finalized = true
	}
	return f.url("/order/" + o.id)
}

func (f *fakeCA) newOrderLocked(domains []string) *fakeOrder {
	o := &fakeOrder{id: strconv.Itoa(len(f.orders) + 1), status: acme.StatusPending}
	for _, d := range domains {
		ident := acme.Identifier{Type: "dns", Value: d}
		o.idents = append(o.idents, ident)
		a := &fakeAuthz{
			id: o.id + "-" + strconv.Itoa(len(o.authzIDs)), status: acme.StatusPending, chStatus: acme.StatusPending,
			ident: acme.Identifier{Type: "dns", Value: strings.TrimPrefix(d, "*.")}, wildcard: strings.HasPrefix(d, "*."),
			token: "token-" + o.id + "-" + strconv.Itoa(len(o.authzIDs)), dns01: !f.noDNS01,
		}
		f.authzs[a.id] = a
		o.authzIDs = append(o.authzIDs, a.id)
	}
	f.orders[o.id] = o
	return o
}

// issueLocked returns a PEM chain (leaf, then the fake root) for domains.
// It may run on a server goroutine, so it reports failures with t.Errorf.
func (f *fakeCA) issueLocked(domains []string) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.t.Errorf("fake CA: %v", err)
		return nil
	}
	serial := new(big.Int).SetBytes([]byte{0x87, 0x65, 0x43, byte(len(f.orders))}) // high bit set: DER needs a 0x00 pad
	tmpl := &x509.Certificate{
		SerialNumber: serial, DNSNames: domains,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(90 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, key.Public(), f.caKey)
	if err != nil {
		f.t.Errorf("fake CA: issue: %v", err)
		return nil
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.caCert.Raw})...)
}

func (f *fakeCA) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	f.nonce++
	w.Header().Set("Replay-Nonce", "nonce-"+strconv.Itoa(f.nonce))
	if v, ok := f.retryAfter[r.URL.Path]; ok {
		w.Header().Set("Retry-After", v)
	}
	if ff, ok := f.fail[r.URL.Path]; ok {
		if ff.times > 0 {
			ff.times--
			if ff.times == 0 {
				delete(f.fail, r.URL.Path)
			} else {
				f.fail[r.URL.Path] = ff
			}
		}
		if ff.retryAfter != "" {
			w.Header().Set("Retry-After", ff.retryAfter)
		}
		if ff.problem == "" {
			w.WriteHeader(ff.status)
			_, _ = w.Write([]byte("<html>gateway error</html>"))
			return
		}
		f.problem(w, ff.status, ff.problem, "canned failure of "+r.URL.Path)
		return
	}

	path := r.URL.Path
	switch {
	case path == "/directory":
		dir := acme.Directory{
			NewNonceURL: f.url("/nonce"), NewAccountURL: f.url("/new-account"), NewOrderURL: f.url("/new-order"),
			RevokeCertURL: f.url("/revoke"), Meta: acme.Meta{TermsOfService: f.url("/tos")},
		}
		if !f.noKeyChange {
			dir.KeyChangeURL = f.url("/key-change")
		}
		if f.ari {
			dir.RenewalInfo = f.url("/renewalInfo")
		}
		f.json(w, http.StatusOK, dir)
	case path == "/nonce":
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(path, "/renewalInfo/"):
		f.renewalIDs = append(f.renewalIDs, strings.TrimPrefix(path, "/renewalInfo/"))
		f.json(w, http.StatusOK, acme.RenewalInfoResponse{SuggestedWindow: f.window, ExplanationURL: f.url("/why")})
	case r.Method != http.MethodPost:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	default:
		f.signedPost(w, r) // fakeca_accounts_test.go: accounts, then f.post
	}
}

func (f *fakeCA) post(w http.ResponseWriter, path, payload string) {
	switch {
	case path == "/new-order":
		var req acme.Order
		if !f.decode(w, payload, &req) || !f.decode(w, payload, &f.lastNewOrder) {
			return
		}
		f.newOrders++
		var domains []string
		for _, id := range req.Identifiers {
			domains = append(domains, id.Value)
		}
		o := f.newOrderLocked(domains)
		w.Header().Set("Location", f.url("/order/"+o.id))
		f.json(w, http.StatusCreated, f.orderJSON(o))
	case strings.HasPrefix(path, "/order/"):
		o, ok := f.orders[strings.TrimPrefix(path, "/order/")]
		if !ok {
			f.problem(w, http.StatusNotFound, problemNS+"malformed", "no such order")
			return
		}
		f.advanceOrder(o)
		f.json(w, http.StatusOK, f.orderJSON(o))
	case strings.HasPrefix(path, "/authz/"):
		a, ok := f.authzs[strings.TrimPrefix(path, "/authz/")]
		if !ok {
			f.problem(w, http.StatusNotFound, problemNS+"malformed", "no such authorization")
			return
		}
		f.json(w, http.StatusOK, f.authzJSON(a))
	case strings.HasPrefix(path, "/chall/"):
		a, ok := f.authzs[strings.TrimPrefix(path, "/chall/")]
		if !ok {
			f.problem(w, http.StatusNotFound, problemNS+"malformed", "no such challenge")
			return
		}
		switch {
		case payload == "{}" && a.chStatus == acme.StatusPending: // accept
			a.chStatus = acme.StatusProcessing
		case payload == "" && a.chStatus == acme.StatusProcessing: // poll
			if f.challengeError != nil {
				a.chStatus, a.status = acme.StatusInvalid, acme.StatusInvalid
			} else {
				a.chStatus, a.status = acme.StatusValid, acme.StatusValid
			}
		}
		w.Header().Add("Link", fmt.Sprintf("<%s>;rel=\"up\"", f.url("/authz/"+a.id)))
		f.json(w, http.StatusOK, f.challengeJSON(a))
	case strings.HasPrefix(path, "/finalize/"):
		o, ok := f.orders[strings.TrimPrefix(path, "/finalize/")]
		if !ok || o.status != acme.StatusReady {
			f.problem(w, http.StatusForbidden, problemNS+"orderNotReady", "order is not ready")
			return
		}
		var msg acme.CSRMessage
		if !f.decode(w, payload, &msg) {
			return
		}
		der, err := base64.RawURLEncoding.DecodeString(msg.Csr)
		if err != nil {
			f.problem(w, http.StatusBadRequest, problemNS+"badCSR", err.Error())
			return
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			f.problem(w, http.StatusBadRequest, problemNS+"badCSR", err.Error())
			return
		}
		if o.orderError != nil {
			o.status = acme.StatusProcessing
		} else {
			o.status, o.finalized, o.slowPolls = acme.StatusProcessing, true, 1
			o.certPEM = f.issueLocked(csr.DNSNames)
		}
		f.json(w, http.StatusOK, f.orderJSON(o))
	case strings.HasPrefix(path, "/cert/"):
		o, ok := f.orders[strings.TrimPrefix(path, "/cert/")]
		if !ok || o.certPEM == nil {
			f.problem(w, http.StatusNotFound, problemNS+"malformed", "no such certificate")
			return
		}
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		_, _ = w.Write(o.certPEM)
	case path == "/revoke":
		var msg acme.RevokeCertMessage
		if !f.decode(w, payload, &msg) {
			return
		}
		f.revoked = append(f.revoked, msg)
		w.WriteHeader(http.StatusOK)
	default:
		f.problem(w, http.StatusNotFound, problemNS+"malformed", "unknown path "+path)
	}
}

// advanceOrder moves an order on as a poll observes it.
func (f *fakeCA) advanceOrder(o *fakeOrder) {
	switch o.status {
	case acme.StatusPending:
		all := true
		for _, id := range o.authzIDs {
			switch f.authzs[id].status {
			case acme.StatusInvalid:
				o.status = acme.StatusInvalid
				return
			case acme.StatusValid:
			default:
				all = false
			}
		}
		if all {
			o.status = acme.StatusReady
		}
	case acme.StatusProcessing:
		if o.slowPolls > 0 {
			o.slowPolls--
			return
		}
		if o.orderError != nil {
			o.status = acme.StatusInvalid
		} else if o.finalized {
			o.status = acme.StatusValid
		}
	}
}

func (f *fakeCA) orderJSON(o *fakeOrder) acme.Order {
	out := acme.Order{Status: o.status, Identifiers: o.idents, Finalize: f.url("/finalize/" + o.id)}
	for _, id := range o.authzIDs {
		out.Authorizations = append(out.Authorizations, f.url("/authz/"+id))
	}
	if o.status == acme.StatusValid {
		out.Certificate = f.url("/cert/" + o.id)
	}
	if o.status == acme.StatusInvalid {
		out.Error = o.orderError
	}
	return out
}

func (f *fakeCA) authzJSON(a *fakeAuthz) acme.Authorization {
	out := acme.Authorization{Status: a.status, Identifier: a.ident, Wildcard: a.wildcard}
	out.Challenges = append(out.Challenges, acme.Challenge{Type: "http-01", URL: f.url("/chall-http/" + a.id), Token: a.token, Status: acme.StatusPending})
	if a.dns01 {
		out.Challenges = append(out.Challenges, f.challengeJSON(a))
	}
	return out
}

func (f *fakeCA) challengeJSON(a *fakeAuthz) acme.Challenge {
	ch := acme.Challenge{Type: "dns-01", URL: f.url("/chall/" + a.id), Token: a.token, Status: a.chStatus}
	if a.chStatus == acme.StatusInvalid {
		ch.Error = f.challengeError
	}
	return ch
}

func (f *fakeCA) json(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		f.t.Errorf("fake CA: encode answer: %v", err) // t.Errorf: this runs on a server goroutine
	}
}

// decode parses a request payload; on failure it answers malformed and the test fails.
func (f *fakeCA) decode(w http.ResponseWriter, payload string, v any) bool {
	if err := json.Unmarshal([]byte(payload), v); err != nil {
		f.t.Errorf("fake CA: payload %q: %v", payload, err)
		f.problem(w, http.StatusBadRequest, problemNS+"malformed", err.Error())
		return false
	}
	return true
}

func (f *fakeCA) problem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(acme.ProblemDetails{Type: typ, Detail: detail, HTTPStatus: status})
}
