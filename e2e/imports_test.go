package e2e

// Imports and what comes with them, end to end with real parts: a real certbot's account and
// certificate migrated by scripts/migrate-certbot.sh, lecertvend's KV layout migrated by
// scripts/migrate-lecertvend.sh, certificates signed from CSRs made by openssl, every key type,
// preferred chains from a Pebble with alternate roots, and revoke_on_delete checked with Pebble's
// management API. Helpers are in imports_helpers_test.go.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestImportCertbot: a real certbot registers an account at Pebble and obtains a certificate with
// HTTP-01; scripts/migrate-certbot.sh imports both. The certificate is served at once with certbot's
// serial and key, the CA saw no new order during the import (nor during a second run, which changes
// nothing), and the next renewal is ordered with the imported account (the order's JWS kid and the
// account Pebble validated for are certbot's regr.json "uri") and proved with DNS-01 (BIND saw the
// record). Pebble is the test's own (no nonce rejections, no authorization reuse, so the renewal
// must solve a challenge), with a counting proxy in front that certbot and Vault both use.
func TestImportCertbot(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	id := Unique("certbot")
	domain := http01Name(t, id)

	pb := startPrivatePebble(t)
	caPEM, err := os.ReadFile(env.PebbleTLSCA)
	require.NoError(t, err)
	proxy, err := NewACMEProxy(pb.Base(), caPEM)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	rec := recordOrderAccounts(proxy)
	directory := proxy.DirectoryURL(pb.Directory)

	// certbot, for real: account + certificate over HTTP-01 (standalone on Pebble's httpPort).
	base := t.TempDir()
	caFile := filepath.Join(base, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, proxy.CAPEM, 0o600))
	start := time.Now()
	runCertbot(t, base, caFile, "certonly", "--standalone", "--preferred-challenges", "http",
		"--http-01-address", "127.0.0.1", "--http-01-port", strconv.Itoa(pb.HTTPPort),
		"--server", directory, "--agree-tos", "--register-unsafely-without-email", "-d", domain)
	t.Logf("certbot obtained %s in %s", domain, time.Since(start).Round(time.Millisecond))
	cfgDir := filepath.Join(base, "config")
	require.Equal(t, 1, proxy.NewOrders(), "certbot's order")

	regrs, err := filepath.Glob(filepath.Join(cfgDir, "accounts", "*", "*", "*", "regr.json"))
	require.NoError(t, err)
	require.Len(t, regrs, 1, "certbot made one account under %s/accounts", cfgDir)
	var regr struct {
		URI string `json:"uri"`
	}
	b, err := os.ReadFile(regrs[0])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &regr))
	require.NotEmpty(t, regr.URI, "regr.json uri")
	require.Equal(t, []string{regr.URI}, rec.Kids(), "certbot ordered with its account")

	live := filepath.Join(cfgDir, "live", domain)
	b, err = os.ReadFile(filepath.Join(live, "cert.pem"))
	require.NoError(t, err)
	cbCerts, err := ParseCertsPEM(string(b))
	require.NoError(t, err)
	cbLeaf := cbCerts[0]
	b, err = os.ReadFile(filepath.Join(live, "privkey.pem"))
	require.NoError(t, err)
	cbKey, err := ParsePrivateKeyPEM(string(b))
	require.NoError(t, err)
	require.True(t, KeyMatches(cbKey, cbLeaf))
	b, err = os.ReadFile(filepath.Join(live, "chain.pem"))
	require.NoError(t, err)
	cbChain, err := ParseCertsPEM(string(b))
	require.NoError(t, err)

	acct := id + "-acct"
	certName := id + "/" + domain
	proxy.Reset()
	rec.Reset()

	// A dry run says what it would do and writes nothing.
	out, err := runScript(t, "migrate-certbot.sh", "--config-dir", cfgDir, "--mount", Mount, "--role", id,
		"--name-prefix", id+"/", "--account-name", acct, "--ca-bundle", caFile, "--dry-run")
	require.NoError(t, err, out)
	assert.Contains(t, out, "would import account")
	assert.Contains(t, out, "-> "+Mount+"/accounts/"+acct+" (account URL "+regr.URI+", directory "+directory)
	assert.Contains(t, out, "would migrate "+live+" -> "+Mount+"/certs/"+certName)
	assert.Contains(t, out, "accounts: 1 to import (dry run, nothing written), 0 skipped, 0 failed")
	assert.Contains(t, out, "certificates: 1 to migrate (dry run, nothing written), 0 skipped, 0 failed")
	require.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/accounts/"+acct, nil).Status, "dry run wrote the account")
	require.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/certs/"+certName, nil).Status, "dry run wrote the certificate")

	// 1. The account (the role that renews the certificate needs it).
	out, err = runScript(t, "migrate-certbot.sh", "--config-dir", cfgDir, "--mount", Mount, "--accounts-only",
		"--account-name", acct, "--ca-bundle", caFile)
	require.NoError(t, err, out)
	assert.Contains(t, out, "summary: accounts: 1 imported, 0 skipped, 0 failed")
	a := MustDo(t, c, http.MethodGet, Mount+"/accounts/"+acct, nil)
	require.Equal(t, http.StatusOK, a.Status, "%s", a)
	assert.Equal(t, regr.URI, a.Data["account_url"], "the imported account is certbot's, not a new registration")
	assert.Equal(t, directory, a.Data["directory_url"])
	bodyHasNo(t, "read accounts/"+acct, a, "PRIVATE KEY")
	bodyHasNo(t, "read accounts/"+acct, a, `"d":`)

	// 2. The role, with the imported account and DNS-01 for renewals.
	env.CreateDNS(t, c, id+"-dns", nil)
	CreateRole(t, c, id, map[string]any{
		"account": acct, "dns": id + "-dns",
		"allowed_domains": domain, "allow_bare_domains": true, "allowed_cert_names": id + "/*",
		"forced_renewal_interval": "0s", "allow_imports": true,
	})

	// 3. The certificates.
	out, err = runScript(t, "migrate-certbot.sh", "--config-dir", cfgDir, "--mount", Mount, "--certs-only",
		"--role", id, "--name-prefix", id+"/")
	require.NoError(t, err, out)
	assert.Contains(t, out, "summary: certificates: 1 migrated, 0 skipped, 0 failed")
	assert.NotContains(t, out, "PRIVATE KEY")

	imported := readCertPlan(t, c, certName) // 200 at once: no waiting, no order
	assert.Equal(t, cbLeaf.SerialNumber, imported.Cert.Leaf.SerialNumber, "the imported certificate is certbot's")
	assert.True(t, SerialMatches(fmt.Sprint(imported.Cert.Data["serial_number"]), cbLeaf), "serial_number %v", imported.Cert.Data["serial_number"])
	assert.True(t, KeyMatches(imported.Cert.Key, cbLeaf), "the served key is certbot's")
	assert.Equal(t, "valid", imported.Status)
	assert.Equal(t, "imported", imported.Cert.Data["key_source"])
	require.NotEmpty(t, imported.Cert.CAChain, "ca_chain")
	assert.True(t, imported.Cert.CAChain[0].Equal(cbChain[0]), "ca_chain starts with certbot's chain.pem")
	assert.Equal(t, 0, proxy.NewOrders(), "orders at the CA during the import")
	assert.Empty(t, rec.Kids(), "new-order requests during the import")

	// A second run changes nothing.
	out, err = runScript(t, "migrate-certbot.sh", "--config-dir", cfgDir, "--mount", Mount, "--role", id,
		"--name-prefix", id+"/", "--account-name", acct, "--ca-bundle", caFile)
	require.NoError(t, err, out)
	assert.Contains(t, out, "summary: accounts: 0 imported, 1 skipped, 0 failed")
	assert.Contains(t, out, "summary: certificates: 0 migrated, 1 skipped (1 already migrated), 0 failed")
	again := readCertPlan(t, c, certName)
	assert.Equal(t, imported.Serial, again.Serial)
	assert.True(t, imported.IssuedAt.Equal(again.IssuedAt), "issued_at %s, then %s", imported.IssuedAt, again.IssuedAt)
	assert.Equal(t, 0, proxy.NewOrders(), "orders at the CA after the second run")

	// The same key written without account_url is looked up at the CA: the same account, nothing
	// registered. A forged account_url (another account's URL) is refused and nothing is stored.
	jwk, err := os.ReadFile(filepath.Join(filepath.Dir(regrs[0]), "private_key.json"))
	require.NoError(t, err)
	viaProxy := map[string]any{"directory_url": directory, "ca_bundle": string(proxy.CAPEM), "contact": nil, "private_key": string(jwk)}
	lookup := MustDo(t, c, http.MethodPut, Mount+"/accounts/"+id+"-lookup", env.AccountData(t, viaProxy))
	require.Truef(t, lookup.Status/100 == 2, "import certbot's key without account_url: %s", clipResp(lookup))
	bodyHasNo(t, "write accounts/"+id+"-lookup", lookup, "PRIVATE KEY")
	a = MustDo(t, c, http.MethodGet, Mount+"/accounts/"+id+"-lookup", nil)
	require.Equal(t, http.StatusOK, a.Status, "%s", a)
	assert.Equal(t, regr.URI, a.Data["account_url"], "the key's account is found, not registered anew")
	forged := regr.URI[:strings.LastIndex(regr.URI, "/")+1] + "0123456789abcdef"
	r := MustDo(t, c, http.MethodPut, Mount+"/accounts/"+id+"-forged", env.AccountData(t, merge(viaProxy, map[string]any{"account_url": forged})))
	assert.Equalf(t, http.StatusBadRequest, r.Status, "an account_url the key does not own: %s", clipResp(r))
	bodyHasNo(t, "write accounts/"+id+"-forged", r, `"d":`)
	assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/accounts/"+id+"-forged", nil).Status, "a refused import stores nothing")
	t.Logf("forged account_url: %s", clipResp(r))
	assert.Equal(t, 0, proxy.NewOrders(), "orders at the CA from account imports")

	// The next renewal uses the imported account and DNS-01.
	r = MustDo(t, c, http.MethodPut, Mount+"/renew/"+certName, map[string]any{"wait": "60s"})
	require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "renew: %s", r)
	bodyHasNo(t, "renew/"+certName, r, "PRIVATE KEY")
	renewed := waitRenewed(t, c, certName, imported.Serial, time.Second, time.Now().Add(3*time.Minute))
	assert.Equal(t, 1, proxy.NewOrders(), "orders for the renewal")
	assert.Equal(t, []string{regr.URI}, rec.Kids(), "the renewal's order is signed with the imported account (JWS kid)")
	assert.GreaterOrEqual(t, rec.Challenges(), 1, "the renewal answered a challenge")
	assert.Equal(t, "vault", renewed.Cert.Data["key_source"], "key_source after the first renewal")
	assert.False(t, KeyMatches(renewed.Cert.Key, cbLeaf), "the renewal has a fresh key")
	assert.ElementsMatch(t, cbLeaf.DNSNames, renewed.Cert.Leaf.DNSNames)
	pebbleLog, err := os.ReadFile(pb.Log)
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(pebbleLog), fmt.Sprintf("AccountURL:%q", regr.URI)),
		"Pebble validated for certbot's account twice (certbot's order, the renewal)")
	assert.Equal(t, 1, strings.Count(string(pebbleLog), "There are now 1 accounts in memory"), "certbot registered its account")
	assert.NotContains(t, string(pebbleLog), "There are now 2 accounts in memory", "neither the import nor the renewal registered another account")
	namedLog, err := os.ReadFile(filepath.Join(env.StateDir, "named.log"))
	require.NoError(t, err)
	assert.Contains(t, string(namedLog), "adding an RR at '_acme-challenge."+domain+"' TXT", "the renewal was proved with DNS-01 at BIND")
}

// TestMigrateLecertvend: three certificates in lecertvend's KV v2 layout (one with the full chain in
// cert as lecertvend writes it, two with a chain field) and lecertvend's own credentials secret;
// scripts/migrate-lecertvend.sh imports the three under another name and role, which serves each at
// once with the same serial and key, consul-template renders it, the CA sees no order, and a second
// run (and a repeated write of the same import) changes nothing.
func TestMigrateLecertvend(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("lcv")
	domain := id + "." + env.Zone
	is := env.SetupProxiedIssuer(t, c, proxy, id, DefaultProfile)

	// The certificates, obtained from the plugin itself under other names.
	type entry struct {
		secret    string
		fullchain bool // cert holds the chain too, no chain field (lecertvend's own layout)
		src       *Cert
	}
	entries := []*entry{{secret: "www"}, {secret: "login", fullchain: true}, {secret: "api"}}
	for _, e := range entries {
		e.src = IssueCert(t, c, id+"/src-"+e.secret, map[string]any{"role": is.Role, "domains": e.secret + "." + domain}, 2*time.Minute)
	}

	// lecertvend's KV v2 mount and layout: <prefix>/<team>/<domain>/<secret>.
	kv := Unique("kv-lecertvend")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _, err := env.CLI(ctx, env.VaultToken, "secrets", "enable", "-path="+kv, "kv-v2")
	require.NoError(t, err)
	t.Cleanup(func() { _, _, _ = env.CLI(context.Background(), env.VaultToken, "secrets", "disable", kv) })
	team := "team-" + id
	prefix := "lecertvend/" + team
	kvPath := func(e *entry) string { return prefix + "/" + domain + "/" + e.secret }
	for _, e := range entries {
		chain := ""
		for _, ca := range e.src.CAChain {
			chain += string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
		}
		data := map[string]any{"cert": e.src.Data["certificate"], "key": e.src.Data["private_key"], "chain": chain}
		if e.fullchain {
			data = map[string]any{"cert": strings.TrimSpace(fmt.Sprint(e.src.Data["certificate"])) + "\n" + chain, "key": e.src.Data["private_key"]}
		}
		MustWrite(t, c, kv+"/data/"+kvPath(e), map[string]any{"data": data})
	}
	cfToken := "cf-" + base64.RawURLEncoding.EncodeToString([]byte(id+"-do-not-print"))
	MustWrite(t, c, kv+"/data/"+prefix+"/lecertvend", map[string]any{"data": map[string]any{"cfToken": cfToken, "contact": "ops@example.test"}})

	// The engine's role for the migrated certificates: same account, names under <team>/.
	role := id + "-migrated"
	CreateRole(t, c, role, map[string]any{
		"account": is.Account, "dns": is.DNS, "allowed_domains": domain, "allow_subdomains": true,
		"allowed_cert_names": team + "/*", "allow_imports": true,
	})
	name := func(e *entry) string { return team + "/" + domain + "/" + e.secret }
	args := []string{"--kv-mount", kv, "--prefix", prefix, "--mount", Mount, "--role", role, "--name-prefix", team + "/"}

	out, err := runScript(t, "migrate-lecertvend.sh", append(args, "--dry-run")...)
	require.NoError(t, err, out)
	assert.Contains(t, out, "summary: certificates: 3 to migrate (dry run, nothing written), 1 skipped (1 not a certificate (no cert field)), 0 failed")
	for _, e := range entries {
		assert.Contains(t, out, "would migrate "+kv+"/"+kvPath(e)+" -> "+Mount+"/certs/"+name(e))
		assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/certs/"+name(e), nil).Status, "dry run wrote %s", name(e))
	}

	proxy.Reset()
	start := time.Now()
	out, err = runScript(t, "migrate-lecertvend.sh", args...)
	took := time.Since(start)
	require.NoError(t, err, out)
	assert.Contains(t, out, "summary: certificates: 3 migrated, 1 skipped (1 not a certificate (no cert field)), 0 failed")
	assert.Contains(t, out, "skipped "+kv+"/"+prefix+"/lecertvend: not a certificate")
	assert.NotContains(t, out, "PRIVATE KEY")
	assert.NotContains(t, out, cfToken)
	t.Logf("migrated 3 certificates in %s", took.Round(time.Millisecond))

	reads := map[string]certRead{}
	for _, e := range entries {
		got := readCertPlan(t, c, name(e)) // 200 at once
		reads[e.secret] = got
		assert.Equal(t, e.src.Leaf.SerialNumber, got.Cert.Leaf.SerialNumber, "%s serves the migrated certificate", name(e))
		assert.True(t, KeyMatches(got.Cert.Key, e.src.Leaf), "%s serves the migrated key", name(e))
		assert.Equal(t, "valid", got.Status)
		assert.Equal(t, "imported", got.Cert.Data["key_source"])
		assert.Equal(t, role, got.Cert.Data["role"])
		require.NotEmpty(t, got.Cert.CAChain, "%s ca_chain", name(e))
		assert.True(t, got.Cert.CAChain[0].Equal(e.src.CAChain[0]), "%s chain", name(e))
	}
	assert.Equal(t, 0, proxy.NewOrders(), "orders at the CA during the migration")

	// A reader sees it at once: consul-template with a token that may read one certificate only.
	first := entries[0]
	ct := startConsulTemplate(t, readToken(t, c, name(first)),
		fmt.Sprintf(`{{ with secret "%s/certs/%s" }}{{ .Data.certificate }}{{ end }}`, Mount, name(first)))
	ctCtx, ctCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ctCancel()
	seen, err := ct.waitRendered(ctCtx, first.src.Leaf.SerialNumber.Text(16))
	require.NoError(t, err, "consul-template renders the migrated certificate")
	t.Logf("consul-template rendered the migrated certificate %s after the migration ended", seen.Sub(start.Add(took)).Round(time.Millisecond))

	// Again: nothing changes.
	out, err = runScript(t, "migrate-lecertvend.sh", args...)
	require.NoError(t, err, out)
	assert.Contains(t, out, "summary: certificates: 0 migrated, 4 skipped (3 already migrated, 1 not a certificate (no cert field)), 0 failed")
	for _, e := range entries {
		got := readCertPlan(t, c, name(e))
		assert.Equal(t, reads[e.secret].Serial, got.Serial, "%s after the second run", name(e))
		assert.True(t, reads[e.secret].IssuedAt.Equal(got.IssuedAt), "%s issued_at %s, then %s", name(e), reads[e.secret].IssuedAt, got.IssuedAt)
	}

	// The engine's own write of the same import is idempotent too (the script relies on it being
	// safe to repeat): same certificate, same issued_at, no order.
	e := entries[1]
	w := MustWrite(t, c, Mount+"/certs/"+name(e), map[string]any{
		"role": role, "certificate": e.src.Data["certificate"], "private_key": e.src.Data["private_key"],
		"chain": strings.Join(pemsOf(e.src.CAChain), ""),
	})
	bodyHasNo(t, "write certs/"+name(e), w, "PRIVATE KEY")
	got := readCertPlan(t, c, name(e))
	assert.Equal(t, reads[e.secret].Serial, got.Serial)
	assert.True(t, reads[e.secret].IssuedAt.Equal(got.IssuedAt), "a repeated import write changed issued_at from %s to %s", reads[e.secret].IssuedAt, got.IssuedAt)
	assert.Equal(t, reads[e.secret].Renewals, got.Renewals)
	assert.Equal(t, 0, proxy.NewOrders(), "orders at the CA after the second run and the repeated write")
}

// TestMigrateLecertvendRefusals: what must not be migrated is not, and the script says why without
// printing a key: an expired certificate and one without a key field are skipped; one for names
// outside the role and one whose key is another certificate's are refused by the engine (failed,
// exit status 1); nothing is stored for any of them.
func TestMigrateLecertvendRefusals(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	id := Unique("lcvbad")
	domain := id + "." + env.Zone
	is := env.SetupIssuer(t, c, id, nil, map[string]any{
		"allowed_domains": domain, "allow_subdomains": true, "allowed_cert_names": id + "/*", "allow_imports": true,
	})
	a := IssueCert(t, c, id+"/src-a", map[string]any{"role": is.Role, "domains": "a." + domain}, 2*time.Minute)
	b := IssueCert(t, c, id+"/src-b", map[string]any{"role": is.Role, "domains": "b." + domain}, 2*time.Minute)

	// An expired self-signed certificate with its key.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: bigSerial(t), Subject: pkix.Name{CommonName: "old." + domain},
		DNSNames: []string{"old." + domain}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	expiredPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	expiredKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	kv := Unique("kv-lcvbad")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _, err = env.CLI(ctx, env.VaultToken, "secrets", "enable", "-path="+kv, "kv-v2")
	require.NoError(t, err)
	t.Cleanup(func() { _, _, _ = env.CLI(context.Background(), env.VaultToken, "secrets", "disable", kv) })
	prefix := "lecertvend/" + id
	chainOf := func(c *Cert) string { return strings.Join(pemsOf(c.CAChain), "") }
	secrets := map[string]map[string]any{
		"expired":   {"cert": expiredPEM, "key": expiredKey},
		"no-key":    {"cert": a.Data["certificate"], "chain": chainOf(a)},
		"outside":   {"cert": a.Data["certificate"], "key": a.Data["private_key"], "chain": chainOf(a)},
		"wrong-key": {"cert": b.Data["certificate"], "key": a.Data["private_key"], "chain": chainOf(b)},
	}
	for s, data := range secrets {
		MustWrite(t, c, kv+"/data/"+prefix+"/"+domain+"/"+s, map[string]any{"data": data})
	}
	// The role of the migrated certificates allows b.<domain> only: a.<domain> is outside it.
	role := id + "-migrated"
	CreateRole(t, c, role, map[string]any{
		"account": is.Account, "dns": is.DNS, "allowed_domains": "b." + domain, "allow_bare_domains": true,
		"allowed_cert_names": id + "-team/*", "allow_imports": true,
	})
	out, err := runScript(t, "migrate-lecertvend.sh", "--kv-mount", kv, "--prefix", prefix, "--mount", Mount,
		"--role", role, "--name-prefix", id+"-team/")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the script fails when something failed:\n%s", out)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, out, "summary: certificates: 0 migrated, 2 skipped (1 expired, 1 no private key (no key field)), 2 failed")
	assert.Contains(t, out, "FAILED "+kv+"/"+prefix+"/"+domain+"/outside: vault write "+Mount+"/certs/"+id+"-team/"+domain+"/outside: HTTP 400")
	assert.Contains(t, out, "FAILED "+kv+"/"+prefix+"/"+domain+"/wrong-key: vault write "+Mount+"/certs/"+id+"-team/"+domain+"/wrong-key: HTTP 400")
	assert.NotContains(t, out, "PRIVATE KEY")
	assert.NotContains(t, out, "BEGIN")
	for s := range secrets {
		assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/certs/"+id+"-team/"+domain+"/"+s, nil).Status, "%s stored", s)
	}
}

func bigSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	require.NoError(t, err)
	return n
}

func pemsOf(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	return out
}

// TestCSRSigning: openssl makes an RSA 2048 and an EC P-256 key and a CSR each; certs/<name>
// csr=@req.pem (the real CLI) is signed for the CSR's key, no private key is ever returned anywhere
// in the mount, and renew/<name> gives a new certificate for the same key. As an attacker: CSRs
// with a name outside the role, a bad signature, IP, e-mail or URI SANs, a weak key, names that
// contradict domains, and huge ones are refused with 400 (without echoing the input) and store
// nothing.
func TestCSRSigning(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	id := Unique("csr")
	domain := id + "." + env.Zone
	is := env.SetupIssuer(t, c, id, nil, map[string]any{
		"allowed_domains": domain, "allow_bare_domains": true, "allow_subdomains": true,
		"allowed_cert_names": id + "/*", "key_type": "ec256", "allowed_key_types": "rsa2048,ec256",
		"forced_renewal_interval": "0s",
	})
	dir := t.TempDir()
	openssl := func(args ...string) {
		t.Helper()
		out, err := exec.Command("openssl", args...).CombinedOutput()
		require.NoError(t, err, "openssl %s: %s", strings.Join(args, " "), out)
	}

	t.Run("signed", func(t *testing.T) {
		for _, tc := range []struct{ kind, keyType string }{{"rsa", "rsa2048"}, {"ec", "ec256"}} {
			t.Run(tc.kind, func(t *testing.T) {
				// Sequential: the test holds devPluginMu.RLock, and a parallel subtest would wait for a
				// parallel slot that tests waiting for devPluginMu hold (a deadlock seen in CI).
				host := tc.kind + "." + domain
				keyFile, csrFile := filepath.Join(dir, tc.kind+".key"), filepath.Join(dir, tc.kind+".csr")
				if tc.kind == "rsa" {
					openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyFile)
				} else {
					openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyFile)
				}
				openssl("req", "-new", "-key", keyFile, "-subj", "/CN="+host, "-addext", "subjectAltName=DNS:"+host, "-out", csrFile)
				csrPEM, err := os.ReadFile(csrFile)
				require.NoError(t, err)
				block, _ := pem.Decode(csrPEM)
				require.NotNil(t, block)
				csr, err := x509.ParseCertificateRequest(block.Bytes)
				require.NoError(t, err)
				csrPub := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool })

				name := id + "/" + tc.kind
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				stdout, _, err := env.CLI(ctx, env.VaultToken, "write", "-format=json", Mount+"/certs/"+name,
					"role="+is.Role, "csr=@"+csrFile, "wait=60s")
				require.NoError(t, err)
				assert.NotContains(t, stdout, "PRIVATE KEY", "the write's answer")
				got := waitCertNoKey(t, c, name, 2*time.Minute)
				assert.True(t, csrPub.Equal(got.Leaf.PublicKey), "the certificate is for the CSR's key")
				assert.ElementsMatch(t, []string{host}, got.Leaf.DNSNames)
				assert.Equal(t, tc.keyType, KeyType(got.Leaf.PublicKey))
				d := got.Resp.Data
				if pk, ok := d["private_key"]; ok {
					assert.Empty(t, pk, "a CSR certificate's read has no private_key")
				}
				assert.Equal(t, "csr", d["key_source"])
				assert.Equal(t, true, d["key_reused"])
				assert.Equal(t, strings.TrimSpace(string(csrPEM)), strings.TrimSpace(fmt.Sprint(d["csr"])))
				assert.Equal(t, tc.keyType, d["key_type"])
				bodyHasNo(t, "read certs/"+name, got.Resp, "PRIVATE KEY")

				r := MustDo(t, c, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "60s"})
				require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "renew: %s", r)
				bodyHasNo(t, "renew/"+name, r, "PRIVATE KEY")
				renewed := waitNewSerial(t, c, name, got.Leaf, 2*time.Minute)
				assert.True(t, csrPub.Equal(renewed.Leaf.PublicKey), "the renewal keeps the CSR's key")
				assert.Equal(t, "csr", renewed.Resp.Data["key_source"])
				bodyHasNo(t, "read certs/"+name+" after renewal", renewed.Resp, "PRIVATE KEY")
			})
		}
	})

	// Nothing of the whole mount's answers holds a private key of a CSR certificate: list, status.
	for _, p := range []struct{ method, path string }{
		{"LIST", Mount + "/certs/" + id + "/"}, {http.MethodGet, Mount + "/status/certs"},
		{http.MethodGet, Mount + "/certs/" + id + "/rsa"}, {http.MethodGet, Mount + "/certs/" + id + "/ec"},
	} {
		r := MustDo(t, c, p.method, p.path, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s %s: %s", p.method, p.path, r)
		bodyHasNo(t, p.method+" "+p.path, r, "PRIVATE KEY")
	}

	t.Run("attacker", func(t *testing.T) {
		ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		weak, err := rsa.GenerateKey(rand.Reader, 1024)
		require.NoError(t, err)
		in := "bad." + domain
		mk := func(tmpl *x509.CertificateRequest, key crypto.Signer) string {
			der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
			require.NoError(t, err)
			return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		}
		good := func(host string) *x509.CertificateRequest {
			return &x509.CertificateRequest{Subject: pkix.Name{CommonName: host}, DNSNames: []string{host}}
		}
		badSig := func() string {
			der, err := x509.CreateCertificateRequest(rand.Reader, good(in), ecKey)
			require.NoError(t, err)
			der[len(der)-3] ^= 0xff // inside the signature: still parses, no longer verifies
			_, perr := x509.ParseCertificateRequest(der)
			require.NoError(t, perr)
			return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		}()
		withIP := good(in)
		withIP.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		withEmail := good(in)
		withEmail.EmailAddresses = []string{"attacker@" + domain}
		withURI := good(in)
		withURI.URIs = []*url.URL{{Scheme: "spiffe", Host: "example.test", Path: "/evil"}}
		many := good(in)
		for i := range 3000 {
			many.DNSNames = append(many.DNSNames, fmt.Sprintf("n%04d.%s", i, domain))
		}
		junk := make([]byte, 256<<10) // below Vault's own 1 MiB limit on JSON strings (a 500 from Vault itself), so the plugin answers
		_, err = rand.Read(junk)
		require.NoError(t, err)
		hugeJunk := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: junk}))

		cases := []struct {
			name   string
			csr    string
			extra  map[string]any
			echo   string // a piece of the input the answer must not hold
			maxLen int    // the answer's size bound (0: 4 KiB)
		}{
			{name: "outside-role", csr: mk(good("evil.example.org"), ecKey)},
			{name: "cn-outside-role", csr: mk(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil.example.org"}, DNSNames: []string{in}}, ecKey)},
			{name: "other-tenant-zone", csr: mk(good("www.other-"+domain), ecKey)},
			{name: "bad-signature", csr: badSig},
			{name: "ip-san", csr: mk(withIP, ecKey)},
			{name: "email-san", csr: mk(withEmail, ecKey)},
			{name: "uri-san", csr: mk(withURI, ecKey)},
			{name: "weak-rsa1024", csr: mk(good(in), weak)},
			{name: "domains-contradict", csr: mk(good(in), ecKey), extra: map[string]any{"domains": "other." + domain}},
			{name: "3000-names", csr: mk(many, ecKey), echo: "n2999." + domain, maxLen: 8 << 10},
			{name: "256KiB-junk", csr: hugeJunk, echo: strings.Split(hugeJunk, "\n")[5]},
			{name: "not-pem", csr: "-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all\n-----END CERTIFICATE REQUEST-----\n", echo: "not base64 at all"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				// Sequential: the test holds devPluginMu.RLock, and a parallel subtest would wait for a
				// parallel slot that tests waiting for devPluginMu hold (a deadlock seen in CI).
				name := id + "/evil-" + tc.name
				data := map[string]any{"role": is.Role, "csr": tc.csr, "wait": "0s"}
				for k, v := range tc.extra {
					data[k] = v
				}
				r := MustDo(t, c, http.MethodPut, Mount+"/certs/"+name, data)
				require.Equalf(t, http.StatusBadRequest, r.Status, "%s", clipResp(r))
				assert.NotEmpty(t, r.ErrorText(), "a 400 says what is wrong")
				limit := tc.maxLen
				if limit == 0 {
					limit = 4 << 10
				}
				assert.LessOrEqualf(t, len(r.Body), limit, "the answer is bounded: %s", clipResp(r))
				if tc.echo != "" {
					assert.NotContains(t, string(r.Body), tc.echo, "the answer echoes the input")
				}
				assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil).Status, "a refused CSR stores nothing")
				t.Logf("%s: %s", tc.name, clipResp(r))
			})
		}
	})
}

// TestImportAttacks: imports the engine must refuse with 400, without echoing the key and without
// storing anything: the key inside the certificate field, an encrypted key, another certificate's
// key, a chain that does not sign the leaf, names outside the role, an expired certificate, a CA
// certificate, and oversized input.
func TestImportAttacks(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	id := Unique("impatk")
	domain := id + "." + env.Zone
	is := env.SetupIssuer(t, c, id, nil, map[string]any{
		"allowed_domains": domain, "allow_subdomains": true, "allowed_cert_names": id + "/*", "allow_imports": true,
	})
	a := IssueCert(t, c, id+"/src-a", map[string]any{"role": is.Role, "domains": "a." + domain}, 2*time.Minute)
	b := IssueCert(t, c, id+"/src-b", map[string]any{"role": is.Role, "domains": "b." + domain}, 2*time.Minute)
	leafA := fmt.Sprint(a.Data["certificate"])
	keyA := fmt.Sprint(a.Data["private_key"])
	keyLine := strings.Split(keyA, "\n")[1] // a line of the key's base64
	chainA := strings.Join(pemsOf(a.CAChain), "")

	selfSigned := func(tmpl *x509.Certificate) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl.SerialNumber = bigSerial(t)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		require.NoError(t, err)
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	}
	expired, expiredKey := selfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "old." + domain}, DNSNames: []string{"old." + domain},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	caCert, caKey := selfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "ca." + domain}, DNSNames: []string{"ca." + domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature})
	outside, outsideKey := selfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "www.example.org"}, DNSNames: []string{"www.example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)})
	block, _ := pem.Decode([]byte(keyA))
	require.NotNil(t, block)
	//lint:ignore SA1019 an encrypted PEM key is exactly what an operator may paste by mistake
	encBlock, err := x509.EncryptPEMBlock(rand.Reader, "ENCRYPTED PRIVATE KEY", block.Bytes, []byte("pw"), x509.PEMCipherAES256)
	require.NoError(t, err)
	encKey := string(pem.EncodeToMemory(encBlock))
	junk := make([]byte, 100<<10)
	_, err = rand.Read(junk)
	require.NoError(t, err)
	hugeCert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: junk}))

	cases := []struct {
		name string
		data map[string]any
	}{
		{"key-in-certificate", map[string]any{"certificate": leafA + keyA, "private_key": keyA}},
		{"key-in-chain", map[string]any{"certificate": leafA, "private_key": keyA, "chain": keyA}},
		{"encrypted-key", map[string]any{"certificate": leafA, "private_key": encKey}},
		{"other-certificates-key", map[string]any{"certificate": fmt.Sprint(b.Data["certificate"]), "private_key": keyA}},
		{"chain-not-signing", map[string]any{"certificate": leafA, "private_key": keyA, "chain": env.PebbleCAPEM(t)}},
		{"names-outside-role", map[string]any{"certificate": outside, "private_key": outsideKey}},
		{"domains-contradict", map[string]any{"certificate": leafA, "private_key": keyA, "chain": chainA, "domains": "b." + domain}},
		{"expired", map[string]any{"certificate": expired, "private_key": expiredKey}},
		{"ca-certificate", map[string]any{"certificate": caCert, "private_key": caKey}},
		{"no-key", map[string]any{"certificate": leafA, "chain": chainA}},
		{"100KiB-certificate", map[string]any{"certificate": hugeCert, "private_key": keyA}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Sequential: the test holds devPluginMu.RLock, and a parallel subtest would wait for a
			// parallel slot that tests waiting for devPluginMu hold (a deadlock seen in CI).
			name := id + "/evil-" + tc.name
			r := MustDo(t, c, http.MethodPut, Mount+"/certs/"+name, merge(map[string]any{"role": is.Role, "wait": "0s"}, tc.data))
			require.Equalf(t, http.StatusBadRequest, r.Status, "%s", clipResp(r))
			assert.NotEmpty(t, r.ErrorText(), "a 400 says what is wrong")
			assert.LessOrEqual(t, len(r.Body), 4<<10, "the answer is bounded: %s", clipResp(r))
			bodyHasNo(t, "write certs/"+name, r, "PRIVATE KEY")
			bodyHasNo(t, "write certs/"+name, r, keyLine)
			assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil).Status, "a refused import stores nothing")
			t.Logf("%s: %s", tc.name, clipResp(r))
		})
	}
}

// clipResp is r for a message, at most 600 characters of its body.
func clipResp(r *Resp) string {
	s := r.String()
	if len(s) > 600 {
		s = s[:600] + fmt.Sprintf("... (%d bytes)", len(r.Body))
	}
	return s
}

// pluginKeyTypes are the key types the running plugin accepts for certs/<name> key_type (its
// OpenAPI enum, i.e. acme.KeyTypes()).
func pluginKeyTypes(t testing.TB) []string {
	t.Helper()
	r := MustDo(t, env.RootClient(t), http.MethodGet, Mount+"/certs/x?help=1", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", clipResp(r))
	var help struct {
		OpenAPI struct {
			Components struct {
				Schemas map[string]struct {
					Properties map[string]struct {
						Enum []string `json:"enum"`
					} `json:"properties"`
				} `json:"schemas"`
			} `json:"components"`
		} `json:"openapi"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &help))
	for name, s := range help.OpenAPI.Components.Schemas {
		if strings.HasSuffix(name, "WriteCertificateRequest") && len(s.Properties["key_type"].Enum) > 0 {
			kts := append([]string(nil), s.Properties["key_type"].Enum...)
			sort.Strings(kts)
			return kts
		}
	}
	require.FailNow(t, "no key_type enum in the OpenAPI of certs/<name>", "%s", clipResp(r))
	return nil
}

// TestKeyTypes: a certificate of every key type the plugin offers is issued by Pebble with a key of
// that type and size; and one role holds an RSA and an EC certificate for the same names.
func TestKeyTypes(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	kts := pluginKeyTypes(t)
	require.Equal(t, []string{"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"}, kts, "the plugin's key types (acme.KeyTypes) changed: update this test")
	id := Unique("ktypes")
	domain := id + "." + env.Zone
	is := env.SetupIssuer(t, c, id, nil, map[string]any{
		"allowed_domains": domain, "allow_subdomains": true, "allowed_cert_names": id + "/*", "allowed_key_types": "*",
	})

	t.Run("group", func(t *testing.T) {
		for _, kt := range kts {
			t.Run(kt, func(t *testing.T) {
				// Sequential: the test holds devPluginMu.RLock, and a parallel subtest would wait for a
				// parallel slot that tests waiting for devPluginMu hold (a deadlock seen in CI).
				start := time.Now()
				cert := IssueCert(t, c, id+"/"+kt, map[string]any{"role": is.Role, "domains": kt + "." + domain, "key_type": kt}, 3*time.Minute)
				assert.Equal(t, kt, KeyType(cert.Leaf.PublicKey), "the certificate's key")
				assert.Equal(t, kt, KeyType(cert.Key.Public()), "the private key")
				assert.True(t, KeyMatches(cert.Key, cert.Leaf))
				assert.Equal(t, kt, cert.Data["key_type"])
				assert.Equal(t, strings.TrimRight(kt, "0123456789"), cert.Data["private_key_type"])
				t.Logf("%s issued in %s", kt, time.Since(start).Round(time.Millisecond))
			})
		}
		t.Run("dual-rsa-and-ec", func(t *testing.T) {
			// Sequential: the test holds devPluginMu.RLock, and a parallel subtest would wait for a
			// parallel slot that tests waiting for devPluginMu hold (a deadlock seen in CI).
			names := "dual." + domain + ",www.dual." + domain
			rsaCert := IssueCert(t, c, id+"/dual-rsa", map[string]any{"role": is.Role, "domains": names, "key_type": "rsa2048"}, 3*time.Minute)
			ecCert := IssueCert(t, c, id+"/dual-ec", map[string]any{"role": is.Role, "domains": names, "key_type": "ec256"}, 3*time.Minute)
			assert.Equal(t, "rsa2048", KeyType(rsaCert.Leaf.PublicKey))
			assert.Equal(t, "ec256", KeyType(ecCert.Leaf.PublicKey))
			assert.ElementsMatch(t, rsaCert.Leaf.DNSNames, ecCert.Leaf.DNSNames, "the same names")
			assert.ElementsMatch(t, strings.Split(names, ","), ecCert.Leaf.DNSNames)
			assert.NotEqual(t, rsaCert.Leaf.SerialNumber, ecCert.Leaf.SerialNumber)
			// Both stay served side by side.
			assert.Equal(t, rsaCert.Leaf.SerialNumber, readCertPlan(t, c, id+"/dual-rsa").Cert.Leaf.SerialNumber)
			assert.Equal(t, ecCert.Leaf.SerialNumber, readCertPlan(t, c, id+"/dual-ec").Cert.Leaf.SerialNumber)
		})
	})
}

// TestPreferredChain: a Pebble with two alternate roots (PEBBLE_ALTERNATE_ROOTS=2) offers three
// chains. A role whose preferred_chain is the CN of alternate root 2 stores the chain that ends at
// that root; a role without one stores the default chain (root 0).
func TestPreferredChain(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	pb := startPrivatePebble(t, "PEBBLE_ALTERNATE_ROOTS=2")
	roots := pebbleRoots(t, pb.Management, 3)
	cns := map[string]bool{}
	for _, r := range roots {
		cns[r.Subject.CommonName] = true
	}
	require.Len(t, cns, 3, "three roots with distinct names")

	id := Unique("chain")
	domain := id + "." + env.Zone
	env.CreateAccount(t, c, id+"-acct", map[string]any{"directory_url": pb.Directory})
	env.CreateDNS(t, c, id+"-dns", nil)
	common := map[string]any{"account": id + "-acct", "dns": id + "-dns", "allowed_domains": domain, "allow_subdomains": true, "allowed_cert_names": id + "/*"}
	want := roots[2].Subject.CommonName
	CreateRole(t, c, id+"-pref", merge(common, map[string]any{"preferred_chain": want}))
	CreateRole(t, c, id+"-def", common)
	rr := MustDo(t, c, http.MethodGet, Mount+"/roles/"+id+"-pref", nil)
	require.Equal(t, http.StatusOK, rr.Status, "%s", rr)
	assert.Equal(t, want, rr.Data["preferred_chain"])

	check := func(name, role string, root *x509.Certificate) {
		t.Helper()
		cert := IssueCert(t, c, name, map[string]any{"role": role, "domains": strings.TrimPrefix(name, id+"/") + "." + domain}, 2*time.Minute)
		require.NotEmpty(t, cert.CAChain, "%s: ca_chain", name)
		top := cert.CAChain[len(cert.CAChain)-1]
		assert.Equal(t, root.Subject.CommonName, top.Issuer.CommonName, "%s: the chain's top certificate is issued by %q", name, root.Subject.CommonName)
		assert.NoError(t, top.CheckSignatureFrom(root), "%s: the chain's top certificate is signed by %q", name, root.Subject.CommonName)
		inter := x509.NewCertPool()
		for _, ca := range cert.CAChain {
			inter.AddCert(ca)
		}
		rootPool := x509.NewCertPool()
		rootPool.AddCert(root)
		_, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: inter, CurrentTime: time.Now()})
		assert.NoError(t, err, "%s verifies up to %q with its stored chain", name, root.Subject.CommonName)
		if cert.IssuingCA != nil {
			assert.True(t, cert.IssuingCA.Equal(cert.CAChain[0]), "%s: issuing_ca is the chain's first certificate", name)
		}
		t.Logf("%s: chain %d certificate(s), top issued by %q", name, len(cert.CAChain), top.Issuer.CommonName)
	}
	check(id+"/pref", id+"-pref", roots[2])
	check(id+"/def", id+"-def", roots[0])
}

// TestRevokeOnDelete: deleting a certificate of a role with revoke_on_delete revokes it at the CA
// (Pebble's management API says Revoked, reason cessationOfOperation); while the CA cannot be
// reached the delete fails and nothing is deleted; a role without it deletes without revoking.
func TestRevokeOnDelete(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("rod")
	domain := id + "." + env.Zone
	is := env.SetupProxiedIssuer(t, c, proxy, id, DefaultProfile)
	revRole := id + "-revoke"
	CreateRole(t, c, revRole, map[string]any{
		"account": is.Account, "dns": is.DNS, "allowed_domains": domain, "allow_subdomains": true,
		"allowed_cert_names": id + "/*", "revoke_on_delete": true,
	})
	rr := MustDo(t, c, http.MethodGet, Mount+"/roles/"+revRole, nil)
	require.Equal(t, http.StatusOK, rr.Status, "%s", rr)
	assert.Equal(t, true, rr.Data["revoke_on_delete"])

	keep := IssueCert(t, c, id+"/keep", map[string]any{"role": is.Role, "domains": "keep." + domain}, 2*time.Minute)
	gone := IssueCert(t, c, id+"/gone", map[string]any{"role": revRole, "domains": "gone." + domain}, 2*time.Minute)
	require.Equal(t, "Valid", certStatusAt(t, env.PebbleManagement, gone.Leaf).Status)

	// The CA cannot be reached: the delete fails, the certificate stays.
	proxy.SetFault(Unreachable())
	start := time.Now()
	r := MustDo(t, c, http.MethodDelete, Mount+"/certs/"+id+"/gone", nil)
	proxy.SetFault(nil)
	t.Logf("delete while the CA is unreachable: %s after %s", clipResp(r), time.Since(start).Round(time.Millisecond))
	require.GreaterOrEqual(t, r.Status, 400, "delete while the CA is unreachable: %s", r)
	assert.Regexp(t, regexp.MustCompile(`(?i)revo`), r.ErrorText(), "the error says the revocation failed")
	still := readCertPlan(t, c, id+"/gone")
	assert.Equal(t, gone.Leaf.SerialNumber, still.Cert.Leaf.SerialNumber, "nothing deleted")
	assert.Equal(t, "Valid", certStatusAt(t, env.PebbleManagement, gone.Leaf).Status)

	// The CA is back: deleted and revoked.
	r = MustDo(t, c, http.MethodDelete, Mount+"/certs/"+id+"/gone", nil)
	require.Containsf(t, []int{http.StatusOK, http.StatusNoContent}, r.Status, "delete: %s", r)
	assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/certs/"+id+"/gone", nil).Status)
	st := certStatusAt(t, env.PebbleManagement, gone.Leaf)
	assert.Equal(t, "Revoked", st.Status, "Pebble: %+v", st)
	if assert.NotNil(t, st.Reason, "revocation reason") {
		assert.Equal(t, uint(5), *st.Reason, "reason cessationOfOperation (5)")
	}

	// Without revoke_on_delete: deleted, not revoked.
	r = MustDo(t, c, http.MethodDelete, Mount+"/certs/"+id+"/keep", nil)
	require.Containsf(t, []int{http.StatusOK, http.StatusNoContent}, r.Status, "delete: %s", r)
	assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/certs/"+id+"/keep", nil).Status)
	assert.Equal(t, "Valid", certStatusAt(t, env.PebbleManagement, keep.Leaf).Status, "a role without revoke_on_delete does not revoke")
}
