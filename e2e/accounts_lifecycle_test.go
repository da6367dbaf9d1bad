package e2e

// The ACME account lifecycle against real Vault and Pebble: import of a certbot account
// (private_key.json + regr.json's uri), key rollover while renewals run, deactivation, contact
// update, and external account binding with a Pebble that requires it. The test talks to Pebble
// itself (a small hand-made ACME client below) to check what the CA holds: which key owns an
// account, its contact, whether it is deactivated.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---------------------------------------------------------------------------------------------
// A minimal ACME client: enough to register an account as certbot would, and to ask the CA about
// an account with a given key.

// lcACME talks ACME to one directory with hand-made JWS (ES256, ES384, RS256).
type lcACME struct {
	hc  *http.Client
	dir struct {
		NewNonce   string `json:"newNonce"`
		NewAccount string `json:"newAccount"`
		NewOrder   string `json:"newOrder"`
	}
}

// lcAnswer is one answer of the CA.
type lcAnswer struct {
	Status   int
	Location string
	Body     map[string]any
}

// Problem is the answer's problem type without the ACME namespace, and its detail.
func (a *lcAnswer) Problem() string {
	return strings.TrimPrefix(fmt.Sprint(a.Body["type"]), "urn:ietf:params:acme:error:") + ": " + fmt.Sprint(a.Body["detail"])
}

func lcDialACME(t testing.TB, directory string, rootsPEM []byte) *lcACME {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(rootsPEM), "no roots for %s", directory)
	a := &lcACME{hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
	t.Cleanup(a.hc.CloseIdleConnections)
	resp, err := a.hc.Get(directory)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a.dir))
	return a
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// lcPublicJWK is the public JWK of key, members in the order RFC 7638 thumbprints use.
func lcPublicJWK(key crypto.Signer) map[string]string {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		pt, err := k.PublicKey.Bytes() // 0x04 || x || y
		if err != nil {
			panic(err)
		}
		n := (len(pt) - 1) / 2
		return map[string]string{"crv": k.Curve.Params().Name, "kty": "EC", "x": b64(pt[1 : 1+n]), "y": b64(pt[1+n:])}
	case *rsa.PrivateKey:
		return map[string]string{"e": b64(big.NewInt(int64(k.E)).Bytes()), "kty": "RSA", "n": b64(k.N.Bytes())}
	}
	panic(fmt.Sprintf("unsupported key %T", key))
}

// lcCertbotJWK is key as certbot stores it in private_key.json.
func lcCertbotJWK(t testing.TB, key crypto.Signer) string {
	t.Helper()
	m := map[string]string{}
	for k, v := range lcPublicJWK(key) {
		m[k] = v
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		require.NoError(t, err)
		m["d"] = b64(d)
	case *rsa.PrivateKey:
		k.Precompute()
		m["d"], m["p"], m["q"] = b64(k.D.Bytes()), b64(k.Primes[0].Bytes()), b64(k.Primes[1].Bytes())
		m["dp"], m["dq"], m["qi"] = b64(k.Precomputed.Dp.Bytes()), b64(k.Precomputed.Dq.Bytes()), b64(k.Precomputed.Qinv.Bytes())
	}
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return string(out)
}

func lcSign(key crypto.Signer, input []byte) (alg string, sig []byte, err error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		var digest []byte
		if size == 32 {
			alg = "ES256"
			h := sha256.Sum256(input)
			digest = h[:]
		} else {
			alg = "ES384"
			h := crypto.SHA384.New()
			h.Write(input)
			digest = h.Sum(nil)
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return "", nil, err
		}
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return alg, sig, nil
	case *rsa.PrivateKey:
		h := sha256.Sum256(input)
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
		return "RS256", sig, err
	}
	return "", nil, fmt.Errorf("unsupported key %T", key)
}

func (a *lcACME) nonce(t testing.TB) string {
	t.Helper()
	resp, err := a.hc.Head(a.dir.NewNonce)
	require.NoError(t, err)
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	require.NotEmpty(t, n)
	return n
}

// post sends payload (nil: POST-as-GET) to url signed by key, with kid or (kid empty) the key's
// jwk; badNonce answers (Pebble rejects some nonces on purpose) are retried.
func (a *lcACME) post(t testing.TB, url string, key crypto.Signer, kid string, payload any) *lcAnswer {
	t.Helper()
	body := []byte{}
	if payload != nil {
		var err error
		body, err = json.Marshal(payload)
		require.NoError(t, err)
	}
	nonce := a.nonce(t)
	for attempt := 0; ; attempt++ {
		alg, _, err := lcSign(key, nil)
		require.NoError(t, err)
		header := map[string]any{"alg": alg, "nonce": nonce, "url": url}
		if kid != "" {
			header["kid"] = kid
		} else {
			header["jwk"] = lcPublicJWK(key)
		}
		hj, err := json.Marshal(header)
		require.NoError(t, err)
		input := b64(hj) + "." + b64(body)
		_, sig, err := lcSign(key, []byte(input))
		require.NoError(t, err)
		jws, err := json.Marshal(map[string]string{"protected": b64(hj), "payload": b64(body), "signature": b64(sig)})
		require.NoError(t, err)
		resp, err := a.hc.Post(url, "application/jose+json", bytes.NewReader(jws))
		require.NoError(t, err)
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		ans := &lcAnswer{Status: resp.StatusCode, Location: resp.Header.Get("Location")}
		_ = json.Unmarshal(raw, &ans.Body)
		if ans.Status == http.StatusBadRequest && strings.HasSuffix(fmt.Sprint(ans.Body["type"]), ":badNonce") && attempt < 5 {
			nonce = resp.Header.Get("Replay-Nonce")
			continue
		}
		return ans
	}
}

// register creates an account for key, as certbot does, and returns its URL.
func (a *lcACME) register(t testing.TB, key crypto.Signer, contact string) string {
	t.Helper()
	ans := a.post(t, a.dir.NewAccount, key, "", map[string]any{"termsOfServiceAgreed": true, "contact": []string{"mailto:" + contact}})
	require.Equal(t, http.StatusCreated, ans.Status, "register: %s", ans.Problem())
	require.NotEmpty(t, ans.Location)
	return ans.Location
}

// lookup asks which account key owns (onlyReturnExisting).
func (a *lcACME) lookup(t testing.TB, key crypto.Signer) *lcAnswer {
	t.Helper()
	return a.post(t, a.dir.NewAccount, key, "", map[string]any{"onlyReturnExisting": true})
}

// newOrder places an order for domain signed by key for the account at kid.
func (a *lcACME) newOrder(t testing.TB, key crypto.Signer, kid, domain string) *lcAnswer {
	t.Helper()
	return a.post(t, a.dir.NewOrder, key, kid, map[string]any{
		"identifiers": []map[string]string{{"type": "dns", "value": domain}}, "profile": DefaultProfile})
}

func lcKeyPEM(t testing.TB, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func lcEC256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// lcRoleAndDNS creates DNS config <id>-dns and role <id> (certificate names <id>/*, names under
// <id>.<zone>, forced renewals at any time) for account.
func lcRoleAndDNS(t testing.TB, c *vaultapi.Client, id, account string) {
	t.Helper()
	env.CreateDNS(t, c, id+"-dns", nil)
	CreateRole(t, c, id, map[string]any{
		"account": account, "dns": id + "-dns",
		"allowed_domains": id + "." + env.Zone, "allow_subdomains": true,
		"allowed_cert_names": id + "/*", "forced_renewal_interval": "0s",
	})
}

func lcStr(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// ---------------------------------------------------------------------------------------------
// (a) Import of a certbot account

// TestAccountImportCertbot registers an account at Pebble the way certbot does (RSA key), then
// imports it into Vault from certbot's files: private_key.json (a JWK) and regr.json's "uri" as
// account_url. Pebble must confirm it without a new registration (the account URL is certbot's),
// and the imported account issues a certificate. A URL of another account is refused.
func TestAccountImportCertbot(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	id := Unique("certbot")
	ca := lcDialACME(t, env.PebbleDirectory, []byte(env.PebbleCAPEM(t)))

	key, err := rsa.GenerateKey(rand.Reader, 2048) // certbot's default account key
	require.NoError(t, err)
	certbotURL := ca.register(t, key, "certbot@example.test")
	other := lcEC256(t)
	otherURL := ca.register(t, other, "other@example.test")

	acct := id + "-acct"
	data := env.AccountData(t, map[string]any{"private_key": lcCertbotJWK(t, key), "account_url": otherURL, "contact": nil})
	r := MustDo(t, c, http.MethodPut, Mount+"/accounts/"+acct, data)
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r)
	assert.Contains(t, r.ErrorText(), "not \""+otherURL+"\"", "names the URL given")
	assert.Contains(t, r.ErrorText(), certbotURL, "and the key's account")
	assert.NotContains(t, string(r.Body), lcCertbotJWK(t, key)[20:60], "never echoes the key")
	require.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/accounts/"+acct, nil).Status, "nothing stored")

	data["account_url"] = certbotURL
	r = MustWrite(t, c, Mount+"/accounts/"+acct, data)
	assert.Equal(t, certbotURL, r.Data["account_url"], "Pebble counted no new account: the URL is certbot's")
	assert.Equal(t, "rsa2048", r.Data["key_type"])
	assert.Equal(t, []any{"certbot@example.test"}, r.Data["contact"], "the CA's contact")
	assert.NotContains(t, r.Data, "private_key")
	look := ca.lookup(t, key)
	require.Equal(t, http.StatusOK, look.Status, look.Problem())
	assert.Equal(t, certbotURL, look.Location, "the key still owns certbot's account only")

	lcRoleAndDNS(t, c, id, acct)
	cert := IssueCert(t, c, id+"/www", map[string]any{"role": id, "domains": "www." + id + "." + env.Zone}, 3*time.Minute)
	assert.Equal(t, []string{"www." + id + "." + env.Zone}, cert.Leaf.DNSNames)
	assert.True(t, KeyMatches(cert.Key, cert.Leaf))

	// Without account_url an imported key is looked up: the same account, still no new one.
	again := id + "-again"
	r = MustWrite(t, c, Mount+"/accounts/"+again, env.AccountData(t, map[string]any{"private_key": lcCertbotJWK(t, key), "contact": nil}))
	assert.Equal(t, certbotURL, r.Data["account_url"])
}

// ---------------------------------------------------------------------------------------------
// (b) Key rollover while renewals run

// lcEvent is a request the proxy passed to Pebble.
type lcEvent struct {
	At   time.Time
	What string // "METHOD /path"
}

// TestAccountKeyRolloverDuringRenewals renews four certificates of one account at once and rolls
// the account's key over while they run (the proxy holds every finalize request for 1.5 s, and
// the rollover starts when the first is held, so renewals are in flight at both ends of the key
// change). Every renewal must succeed with no failed attempt, Pebble must have seen requests of
// the renewals after the key change, and Pebble must then refuse an order signed with the old key
// (and know no account for it): the rollover happened at the CA.
func TestAccountKeyRolloverDuringRenewals(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("rollover")
	acct := id + "-acct"
	oldKey := lcEC256(t)
	r := MustWrite(t, c, Mount+"/accounts/"+acct, env.AccountData(t, map[string]any{
		"directory_url": proxy.DirectoryURL(env.PebbleDirectory), "ca_bundle": string(proxy.CAPEM), "private_key": lcKeyPEM(t, oldKey),
	}))
	acctURL := lcStr(r.Data["account_url"])
	require.NotEmpty(t, acctURL)
	lcRoleAndDNS(t, c, id, acct)

	const n = 4
	names := make([]string, n)
	serials := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s/c%d", id, i)
		cert := IssueCert(t, c, names[i], map[string]any{"role": id, "domains": fmt.Sprintf("c%d.%s.%s", i, id, env.Zone)}, 3*time.Minute)
		serials[i] = cert.SerialNumber
	}

	var mu sync.Mutex
	var events []lcEvent
	firstFinalize := make(chan struct{})
	var once sync.Once
	proxy.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		events = append(events, lcEvent{At: time.Now(), What: r.Method + " " + r.URL.Path})
		mu.Unlock()
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/finalize-order/") {
			once.Do(func() { close(firstFinalize) })
			time.Sleep(1500 * time.Millisecond)
		}
		return false
	})
	t.Cleanup(func() { proxy.SetFault(nil) })

	ordersBefore := proxy.NewOrders()
	var wg sync.WaitGroup
	renewed := make([]*Resp, n)
	renewErr := make([]error, n)
	for i, name := range names {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			renewed[i], renewErr[i] = Do(ctx, c, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "60s"})
		})
	}
	select {
	case <-firstFinalize:
	case <-time.After(2 * time.Minute):
		t.Fatal("no renewal reached finalization within 2 minutes")
	}
	rolledAt := time.Now()
	rr := MustWrite(t, c, Mount+"/accounts/"+acct+"/rollover", map[string]any{"key_type": "ec384"})
	t.Logf("rollover answered after %s", time.Since(rolledAt).Round(time.Millisecond))
	assert.Equal(t, "ec384", rr.Data["key_type"])
	assert.Equal(t, acctURL, rr.Data["account_url"], "same account, new key")
	assert.NotContains(t, rr.Data, "private_key")
	wg.Wait()

	// Each renewal finished within its request (a failed attempt would wait a minute's backoff),
	// with one order each.
	for i, name := range names {
		require.NoError(t, renewErr[i], name)
		require.Equalf(t, http.StatusOK, renewed[i].Status, "renew %s: %s", name, renewed[i])
		cert := WaitCert(t, c, name, time.Minute)
		read := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
		require.Equal(t, http.StatusOK, read.Status, "%s", read)
		assert.NotEqual(t, serials[i], cert.SerialNumber, "%s was renewed", name)
		assert.Equal(t, "", lcStr(read.Data["last_error"]), "%s: no failed attempt", name)
		assert.EqualValues(t, 0, read.Data["attempts"], "%s: no failed attempt", name)
		assert.Equal(t, "valid", lcStr(read.Data["status"]), name)
		assert.EqualValues(t, 1, read.Data["renewals"], name)
	}
	assert.Equal(t, n, proxy.NewOrders()-ordersBefore, "one order per renewal, none retried")

	// Renewals were in flight across the key change: Pebble saw their requests on both sides.
	mu.Lock()
	change, before, after := -1, 0, 0
	for i, e := range events {
		if e.What == "POST /rollover-account-key" {
			change = i
		}
	}
	require.GreaterOrEqual(t, change, 0, "the key change went through the proxy to Pebble")
	for i, e := range events {
		if strings.HasPrefix(e.What, "POST /finalize-order/") || strings.HasPrefix(e.What, "POST /my-order/") || strings.HasPrefix(e.What, "POST /certZ/") {
			if i < change {
				before++
			} else {
				after++
			}
		}
	}
	mu.Unlock()
	t.Logf("order requests before the key change: %d, after: %d", before, after)
	assert.Positive(t, before, "renewals had started before the key change")
	assert.Positive(t, after, "renewals went on after the key change, signed with the new key")

	// Pebble holds the new key: an order signed with the old key is refused, and the old key
	// owns no account any more.
	ca := lcDialACME(t, proxy.DirectoryURL(env.PebbleDirectory), proxy.CAPEM)
	ord := ca.newOrder(t, oldKey, acctURL, "late."+id+"."+env.Zone)
	require.GreaterOrEqual(t, ord.Status, 400, "an order signed with the old key must be refused: %d %v", ord.Status, ord.Body)
	// The new key is P-384: Pebble refuses the old key's ES256 before it checks the signature.
	assert.Contains(t, ord.Problem(), "badSignatureAlgorithm: signature type 'ES256'")
	look := ca.lookup(t, oldKey)
	assert.Equal(t, http.StatusBadRequest, look.Status)
	assert.Contains(t, look.Problem(), "accountDoesNotExist")

	// And the account goes on: a new certificate with the new key.
	IssueCert(t, c, id+"/after", map[string]any{"role": id, "domains": "after." + id + "." + env.Zone}, 3*time.Minute)
}

// ---------------------------------------------------------------------------------------------
// (c) Deactivation

// TestAccountDeactivate deactivates an account with an issued certificate: Pebble then knows the
// account as deactivated, the next renewal fails with a last_error that says so without any
// request to the CA (no order), and the account's key and contact can no longer change.
func TestAccountDeactivate(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("deact")
	acct := id + "-acct"
	key := lcEC256(t)
	MustWrite(t, c, Mount+"/accounts/"+acct, env.AccountData(t, map[string]any{
		"directory_url": proxy.DirectoryURL(env.PebbleDirectory), "ca_bundle": string(proxy.CAPEM), "private_key": lcKeyPEM(t, key),
	}))
	lcRoleAndDNS(t, c, id, acct)
	name := id + "/www"
	IssueCert(t, c, name, map[string]any{"role": id, "domains": "www." + id + "." + env.Zone}, 3*time.Minute)

	r := MustWrite(t, c, Mount+"/accounts/"+acct+"/deactivate", nil)
	assert.Equal(t, "deactivated", r.Data["status"])
	require.Len(t, r.Warnings, 1, "%s", r)
	assert.Contains(t, r.Warnings[0], "role(s) "+id+" use account")
	assert.Equal(t, "deactivated", MustDo(t, c, http.MethodGet, Mount+"/accounts/"+acct, nil).Data["status"])

	ca := lcDialACME(t, proxy.DirectoryURL(env.PebbleDirectory), proxy.CAPEM)
	look := ca.lookup(t, key)
	assert.Equal(t, http.StatusForbidden, look.Status, "Pebble: %s", look.Problem())
	assert.Contains(t, look.Problem(), "unauthorized: An account with the provided public key exists but is deactivated")

	var mu sync.Mutex
	var seen []string
	proxy.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		return false
	})
	t.Cleanup(func() { proxy.SetFault(nil) })
	orders := proxy.NewOrders()
	MustDo(t, c, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "30s"})
	read := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
	require.Equal(t, http.StatusOK, read.Status, "the old certificate is still served: %s", read)
	assert.Contains(t, lcStr(read.Data["last_error"]), `account "`+acct+`" of role "`+id+`" is deactivated at its CA: point the role at another account`)
	assert.EqualValues(t, 1, read.Data["attempts"])
	assert.Equal(t, orders, proxy.NewOrders(), "no order")
	mu.Lock()
	assert.Empty(t, seen, "no request to the CA at all")
	mu.Unlock()

	r = MustDo(t, c, http.MethodPut, Mount+"/accounts/"+acct+"/rollover", nil)
	assert.Equal(t, http.StatusBadRequest, r.Status)
	assert.Contains(t, r.ErrorText(), "is deactivated at its CA: its key cannot change")
	r = MustDo(t, c, http.MethodPut, Mount+"/accounts/"+acct, map[string]any{"contact": "new@example.test"})
	assert.Equal(t, http.StatusBadRequest, r.Status)
	assert.Contains(t, r.ErrorText(), "is deactivated at its CA: its contact cannot change")
}

// ---------------------------------------------------------------------------------------------
// (d) Contact update

// TestAccountContactUpdate changes an account's contact through the API and the vault CLI and
// reads it back from Pebble (POST-as-GET of the account, signed with its key).
func TestAccountContactUpdate(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	acct := Unique("contact") + "-acct"
	key := lcEC256(t)
	r := MustWrite(t, c, Mount+"/accounts/"+acct, env.AccountData(t, map[string]any{"private_key": lcKeyPEM(t, key), "contact": "first@example.test"}))
	acctURL := lcStr(r.Data["account_url"])
	ca := lcDialACME(t, env.PebbleDirectory, []byte(env.PebbleCAPEM(t)))
	atCA := func() []any {
		ans := ca.post(t, acctURL, key, acctURL, nil)
		require.Equal(t, http.StatusOK, ans.Status, ans.Problem())
		contact, _ := ans.Body["contact"].([]any)
		return contact
	}
	assert.Equal(t, []any{"mailto:first@example.test"}, atCA())

	r = MustWrite(t, c, Mount+"/accounts/"+acct, map[string]any{"contact": "second@example.test,mailto:third@example.test"})
	assert.Equal(t, []any{"second@example.test", "third@example.test"}, r.Data["contact"])
	assert.Equal(t, []any{"mailto:second@example.test", "mailto:third@example.test"}, atCA())
	assert.Equal(t, []any{"second@example.test", "third@example.test"}, MustDo(t, c, http.MethodGet, Mount+"/accounts/"+acct, nil).Data["contact"])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _, err := env.CLI(ctx, env.VaultToken, "write", Mount+"/accounts/"+acct, "contact=cli@example.test")
	require.NoError(t, err)
	assert.Equal(t, []any{"mailto:cli@example.test"}, atCA())

	r = MustDo(t, c, http.MethodPut, Mount+"/accounts/"+acct, map[string]any{"contact": "not an address"})
	assert.Equal(t, http.StatusBadRequest, r.Status)
	assert.Equal(t, []any{"mailto:cli@example.test"}, atCA(), "a refused update changes nothing at the CA")
}

// ---------------------------------------------------------------------------------------------
// (e) External account binding required

// lcPebble is a Pebble of one test.
type lcPebble struct {
	Directory string
	Log       string
}

// lcStartPebble starts a Pebble on 127.0.0.1 with the environment's configuration changed by
// edit (its DNS is the environment's BIND); it is stopped when t ends.
func lcStartPebble(t testing.TB, edit func(cfg map[string]any)) *lcPebble {
	t.Helper()
	b, err := os.ReadFile(env.PebbleConfig)
	require.NoError(t, err, "the environment's Pebble configuration (scripts/env-up.sh writes it)")
	var cfg map[string]map[string]any
	require.NoError(t, json.Unmarshal(b, &cfg))
	pc := cfg["pebble"]
	require.NotNil(t, pc)
	port := freePort(t)
	pc["listenAddress"] = fmt.Sprintf("127.0.0.1:%d", port)
	pc["managementListenAddress"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	edit(pc)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "pebble.json")
	out, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgFile, out, 0o600))
	p := &lcPebble{Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", port), Log: filepath.Join(dir, "pebble.log")}
	_, err = os.Stat(env.PebbleBin)
	require.NoError(t, err, "pebble binary: run `bash scripts/tools.sh pebble`")
	cmd := exec.Command(env.PebbleBin, "-config", cfgFile, "-dnsserver", env.DNSAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=0")
	done := startLogged(t, cmd, p.Log, syscall.SIGTERM, "the test's Pebble")

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(env.PebbleCAPEM(t)))
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(p.Log)
			t.Fatalf("the test's Pebble exited:\n%s", b)
		case <-time.After(200 * time.Millisecond):
		}
		require.Truef(t, time.Now().Before(deadline), "the test's Pebble did not answer at %s within 30 s: %v", p.Directory, err)
	}
}

// TestAccountEABRequired runs a Pebble that requires external account binding: an account
// without EAB is refused with a clear 400 and nothing stored, one with a wrong HMAC key too, and
// one with the CA's kid and HMAC key is registered and issues a certificate.
func TestAccountEABRequired(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	require.NotEmpty(t, env.PebbleEABKID, "scripts/env-up.sh configures an EAB key (PEBBLE_EAB_KID)")
	c := env.RootClient(t)
	pebble := lcStartPebble(t, func(pc map[string]any) {
		pc["externalAccountBindingRequired"] = true
		pc["externalAccountMACKeys"] = map[string]any{env.PebbleEABKID: env.PebbleEABHMACKey}
	})
	id := Unique("eab")
	acct := id + "-acct"
	base := map[string]any{"directory_url": pebble.Directory}

	r := MustDo(t, c, http.MethodPut, Mount+"/accounts/"+acct, env.AccountData(t, base))
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r)
	assert.Contains(t, r.ErrorText(), "externalAccountRequired")
	require.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/accounts/"+acct, nil).Status, "nothing stored")

	wrong := b64([]byte("0123456789abcdef0123456789abcdef"))
	r = MustDo(t, c, http.MethodPut, Mount+"/accounts/"+acct, env.AccountData(t, merge(base, map[string]any{"eab_kid": env.PebbleEABKID, "eab_hmac_key": wrong})))
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r)
	assert.NotContains(t, string(r.Body), wrong)

	r = MustWrite(t, c, Mount+"/accounts/"+acct, env.AccountData(t, merge(base, map[string]any{"eab_kid": env.PebbleEABKID, "eab_hmac_key": env.PebbleEABHMACKey})))
	assert.Equal(t, "valid", r.Data["status"])
	assert.Equal(t, env.PebbleEABKID, r.Data["eab_kid"])
	assert.True(t, strings.HasPrefix(lcStr(r.Data["account_url"]), strings.TrimSuffix(pebble.Directory, "/dir")+"/"), "registered at the EAB Pebble")
	assert.NotContains(t, string(r.Body), env.PebbleEABHMACKey)

	lcRoleAndDNS(t, c, id, acct)
	cert := IssueCert(t, c, id+"/www", map[string]any{"role": id, "domains": "www." + id + "." + env.Zone}, 3*time.Minute)
	assert.True(t, KeyMatches(cert.Key, cert.Leaf))
}
