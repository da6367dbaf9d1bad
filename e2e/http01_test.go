package e2e

// HTTP-01 answered by Vault, proven with real parts only: Pebble validates
// http://<name>:<httpPort>/.well-known/acme-challenge/<token>; the name resolves at BIND (Pebble's
// -dnsserver; every name under env.HTTP01Base is 127.0.0.1, see env-up.sh) to 127.0.0.1, where a
// real nginx listens on Pebble's httpPort and proxies the request to Vault's unauthenticated
// <mount>/challenge/<token>, exactly as the README tells operators to (nginx_test.go).

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pebbleVAUserAgent starts the User-Agent of Pebble's validation requests.
const pebbleVAUserAgent = "LetsEncrypt-Pebble-VA"

// acmeTokenRE is the form of an ACME token as it appears in a challenge URL.
var acmeTokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{22,}$`)

// http01Issuer writes account <id>-acct (Pebble, or accountOverrides) and role <id> proving its
// names with HTTP-01 only: names <id>.<HTTP01Base> and under it, certificate names <id> and <id>/*,
// renewals by hand at any time (forced_renewal_interval 0). roleFields override (nil deletes).
func http01Issuer(t testing.TB, e *Env, c *vaultapi.Client, id string, accountOverrides, roleFields map[string]any) string {
	t.Helper()
	e.CreateAccount(t, c, id+"-acct", accountOverrides)
	CreateRole(t, c, id, merge(map[string]any{
		"account":                 id + "-acct",
		"allowed_challenges":      "http-01",
		"allowed_domains":         id + "." + e.HTTP01Base,
		"allow_bare_domains":      true,
		"allow_subdomains":        true,
		"allowed_cert_names":      id + "," + id + "/*",
		"forced_renewal_interval": "0s",
	}, roleFields))
	return id
}

// pebbleValidations returns the requests of Pebble's validation authority for host that nginx
// forwarded to Vault.
func pebbleValidations(t testing.TB, ng *nginxProxy, host string) []nginxAccess {
	t.Helper()
	var out []nginxAccess
	for _, a := range ng.Challenges(t) {
		if strings.HasPrefix(a.UserAgent, pebbleVAUserAgent) && strings.EqualFold(a.Host, host) {
			out = append(out, a)
		}
	}
	return out
}

// requireValidatedThrough checks that Pebble validated host through ng and that Vault, reached at
// upstream, answered every such request with 200; it returns those requests.
func requireValidatedThrough(t testing.TB, ng *nginxProxy, host, upstream string) []nginxAccess {
	t.Helper()
	hits := pebbleValidations(t, ng, host)
	require.NotEmptyf(t, hits, "no HTTP-01 validation of %s reached nginx; access log: %+v", host, ng.Access(t))
	for _, h := range hits {
		assert.Equal(t, "GET", h.Method, "%+v", h)
		assert.Equal(t, "200", h.Status, "nginx's answer to the CA: %+v", h)
		assert.Equal(t, upstream, h.Upstream, "nginx's upstream: %+v", h)
		assert.Equal(t, "200", h.UpstreamStatus, "Vault's answer: %+v", h)
		assert.Regexp(t, acmeTokenRE, strings.TrimPrefix(h.URI, "/.well-known/acme-challenge/"), "token in %q", h.URI)
	}
	return hits
}

// requireTokenGone waits (up to 15 s) until Vault answers 404 for a used token, through nginx
// and directly, without a Vault token: a key authorization is served only while its order is in
// flight.
func requireTokenGone(t testing.TB, ng *nginxProxy, vaultAddr, uri string) {
	t.Helper()
	token := strings.TrimPrefix(uri, "/.well-known/acme-challenge/")
	hc := anonymousClient()
	waitFor(t, 15*time.Second, "the used token "+token+" to answer 404", func() (bool, string) {
		_, viaNginx, err1 := getNoToken(hc, ng.URL(uri))
		_, direct, err2 := getNoToken(hc, vaultAddr+"/v1/"+Mount+"/challenge/"+token)
		return err1 == nil && err2 == nil && viaNginx == http.StatusNotFound && direct == http.StatusNotFound,
			fmt.Sprintf("through nginx %d (%v), from Vault %d (%v)", viaNginx, err1, direct, err2)
	})
}

// anonymousClient is an HTTP client that sends no Vault token and follows no redirect.
func anonymousClient() *http.Client {
	return &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// requireChainsToPebble checks that cert chains to Pebble's current root through its ca_chain for name (a
// DNS name or an IP address) as a TLS server certificate, and that its key matches.
func requireChainsToPebble(t testing.TB, cert *Cert, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := env.PebbleRoot(ctx)
	require.NoError(t, err)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, ca := range cert.CAChain {
		inter.AddCert(ca)
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err, "the certificate must be valid for %s and chain to Pebble's root", name)
	require.True(t, KeyMatches(cert.Key, cert.Leaf), "private_key matches the certificate")
}

// waitRenewedSerial reads certs/<name> until it serves a certificate whose serial is not old; a
// failed attempt ends the wait at once with its last_error.
func waitRenewedSerial(t testing.TB, c *vaultapi.Client, name, old string, timeout time.Duration) *Cert {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := MustDo(t, c, http.MethodGet, Mount+"/certs/"+name, nil)
		require.Containsf(t, []int{http.StatusOK, http.StatusServiceUnavailable}, r.Status, "read certs/%s: %s", name, r)
		if r.Status == http.StatusOK {
			if s := fmt.Sprint(r.Data["serial_number"]); s != old {
				cert, err := ParseCert(r.Data)
				require.NoError(t, err, "read certs/%s: %s", name, r)
				return cert
			}
			if le := fmt.Sprint(r.Data["last_error"]); intField(r.Data, "attempts") > 0 && le != "" && le != "<nil>" {
				require.FailNowf(t, "renewal failed", "certs/%s: attempts %v, last_error %s", name, r.Data["attempts"], le)
			}
		}
		require.Falsef(t, r.FailedAttempt(), "certs/%s: %s", name, r)
		require.Truef(t, time.Now().Before(deadline), "certs/%s still serves serial %s after %s: %s", name, old, timeout, r)
		time.Sleep(500 * time.Millisecond)
	}
}

// renewUntilHTTP01 renews certs/<name> by hand (renew/<name>), each time requiring a new serial,
// until one renewal was validated through ng again, and returns the last certificate and how
// many renewals that took. Pebble reuses a still-valid authorization for about half of its new
// orders (PEBBLE_AUTHZREUSE, default 50%), so a renewal may need no challenge at all; twelve in a
// row without one happen with a chance of 0.03 %.
func renewUntilHTTP01(t testing.TB, c *vaultapi.Client, ng *nginxProxy, name, host string, prev *Cert) (*Cert, int) {
	t.Helper()
	const maxRenewals = 12
	for i := 1; i <= maxRenewals; i++ {
		before := len(pebbleValidations(t, ng, host))
		start := time.Now()
		r := MustDo(t, c, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "60s"})
		require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "renew/%s: %s", name, r)
		cur := waitRenewedSerial(t, c, name, prev.SerialNumber, 2*time.Minute)
		validations := len(pebbleValidations(t, ng, host)) - before
		t.Logf("renewal %d of %s: serial %s -> %s in %s, %d HTTP-01 validation(s) through nginx",
			i, name, prev.SerialNumber, cur.SerialNumber, time.Since(start).Round(time.Millisecond), validations)
		require.NotEqual(t, prev.Leaf.SerialNumber, cur.Leaf.SerialNumber, "a renewal is a new certificate")
		prev = cur
		if validations > 0 {
			return cur, i
		}
	}
	require.FailNowf(t, "no renewal was validated over HTTP-01", "%d renewals of %s all reused Pebble's authorization", maxRenewals, name)
	return nil, 0
}

// namedLogPath is STATE_DIR/named.log (BIND runs with -g: every dynamic update is logged there as
// "updating zone '<zone>/IN': adding an RR at '<name>' TXT ...").
func namedLogPath() string { return filepath.Join(env.StateDir, "named.log") }

// namedLogMark is the current length of BIND's log, for namedUpdatesSince.
func namedLogMark(t testing.TB) int64 {
	t.Helper()
	st, err := os.Stat(namedLogPath())
	require.NoError(t, err)
	return st.Size()
}

// namedUpdatesSince returns BIND's "updating zone" log lines written after mark.
func namedUpdatesSince(t testing.TB, mark int64) []string {
	t.Helper()
	b, err := os.ReadFile(namedLogPath())
	require.NoError(t, err)
	require.GreaterOrEqual(t, int64(len(b)), mark, "named.log shrank")
	var out []string
	for _, line := range strings.Split(string(b[mark:]), "\n") {
		if strings.Contains(line, "updating zone") {
			out = append(out, line)
		}
	}
	return out
}

// TestHTTP01DNSName issues a certificate for a DNS name proven with HTTP-01: Pebble fetches the
// token from nginx, nginx from Vault's unauthenticated challenge path (200, the key
// authorization), nothing is written to DNS, and the token is no longer answered once the order
// is done. Renewals by hand give new certificates and go through HTTP-01 again.
func TestHTTP01DNSName(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	port := lockHTTP01Port(t)
	c := env.RootClient(t)
	ng := startNginx(t, port, env.VaultAddr, Mount)
	vaultHost := strings.TrimPrefix(env.VaultAddr, "http://")

	id := Unique("h01dns")
	role := http01Issuer(t, env, c, id, nil, nil)
	domain := "www." + id + "." + env.HTTP01Base
	name := id + "/www"
	mark := namedLogMark(t)

	start := time.Now()
	cert := IssueCert(t, c, name, map[string]any{"role": role, "domains": domain, "challenge": "http-01"}, 2*time.Minute)
	t.Logf("HTTP-01 certificate for %s issued in %s, serial %s", domain, time.Since(start).Round(time.Millisecond), cert.SerialNumber)
	require.Equal(t, []string{domain}, cert.Leaf.DNSNames, "SANs")
	require.Empty(t, cert.Leaf.IPAddresses, "IP SANs")
	requireChainsToPebble(t, cert, domain)
	assert.Equal(t, []string{domain}, asStrings(cert.Data["domains"]))
	assert.Empty(t, cert.Data["last_error"])
	if ch, ok := cert.Data["challenge"]; ok {
		assert.Equal(t, "http-01", ch, "challenge on the read")
	}

	hits := requireValidatedThrough(t, ng, domain, vaultHost)
	t.Logf("nginx access log: %d validation(s) of %s by Pebble, e.g. %+v", len(hits), domain, hits[0])
	requireTokenGone(t, ng, env.VaultAddr, hits[0].URI)
	for _, u := range namedUpdatesSince(t, mark) {
		assert.NotContains(t, u, domain, "HTTP-01 writes nothing to DNS")
	}

	renewed, n := renewUntilHTTP01(t, c, ng, name, domain, cert)
	require.Equal(t, []string{domain}, renewed.Leaf.DNSNames)
	requireChainsToPebble(t, renewed, domain)
	t.Logf("renewed %d time(s); the last one validated over HTTP-01 through nginx", n)
	last := pebbleValidations(t, ng, domain)
	requireValidatedThrough(t, ng, domain, vaultHost)
	requireTokenGone(t, ng, env.VaultAddr, last[len(last)-1].URI)
}

// TestHTTP01IPAddress issues and renews a certificate for the IP address 127.0.0.1 (RFC 8738)
// as a tenant whose token may only manage certs/<team>/*, through a role allowing 127.0.0.1/32 and
// HTTP-01; then tries, as that tenant and as root, every way around the role's rules: addresses
// outside allowed_ip_sans in every spelling, IP addresses with DNS-01, wildcards with HTTP-01,
// challenges the role does not allow, extra fields, another role, the role itself. Each is a 400 (or
// a 403 from Vault's policy) that names the rule, stores nothing and orders nothing.
func TestHTTP01IPAddress(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	port := lockHTTP01Port(t)
	root := env.RootClient(t)
	ng := startNginx(t, port, env.VaultAddr, Mount)
	vaultHost := strings.TrimPrefix(env.VaultAddr, "http://")

	id := Unique("h01ip")
	team := id
	proxy := env.NewPebbleProxy(t) // counts the orders the account makes
	acct := id + "-acct"
	env.CreateAccount(t, root, acct, map[string]any{"directory_url": proxy.DirectoryURL(env.PebbleDirectory), "ca_bundle": string(proxy.CAPEM)})
	env.CreateDNS(t, root, id+"-dns", nil)
	// The tenant's role: HTTP-01 only; 127.0.0.1 and names under <id>.<HTTP01Base>.
	CreateRole(t, root, id, map[string]any{
		"account": acct, "allowed_challenges": "http-01", "allowed_ip_sans": "127.0.0.1/32",
		"allowed_domains": id + "." + env.HTTP01Base, "allow_subdomains": true,
		"allowed_cert_names": team + "/*", "forced_renewal_interval": "0s",
	})
	// Also the tenant's: both challenges (DNS-01 first, the default), wildcards, 127.0.0.1.
	CreateRole(t, root, id+"-both", map[string]any{
		"account": acct, "dns": id + "-dns", "allowed_challenges": "dns-01,http-01", "allowed_ip_sans": "127.0.0.1/32",
		"allowed_domains": id + "." + env.Zone, "allow_subdomains": true, "allow_wildcard_certificates": true,
		"allowed_cert_names": team + "/*",
	})
	// Also the tenant's: DNS-01 only (the default), no IP addresses.
	CreateRole(t, root, id+"-dns01", map[string]any{
		"account": acct, "dns": id + "-dns", "allowed_domains": id + "." + env.Zone, "allow_subdomains": true,
		"allowed_cert_names": team + "/*",
	})
	// The operator's: any address, other certificate names.
	CreateRole(t, root, id+"-wide", map[string]any{
		"account": acct, "allowed_challenges": "http-01", "allowed_ip_sans": "0.0.0.0/0,::/0",
		"allowed_domains": env.HTTP01Base, "allow_subdomains": true, "allowed_cert_names": "ops-" + id + "/*",
	})
	tenant := teamToken(t, root, team)
	loopback := net.ParseIP("127.0.0.1")

	t.Run("issue and renew 127.0.0.1 as the tenant", func(t *testing.T) {
		name := team + "/loopback"
		start := time.Now()
		cert := IssueCert(t, tenant, name, map[string]any{"role": id, "ip_sans": "127.0.0.1", "challenge": "http-01"}, 2*time.Minute)
		t.Logf("HTTP-01 certificate for 127.0.0.1 issued in %s, serial %s", time.Since(start).Round(time.Millisecond), cert.SerialNumber)
		require.Len(t, cert.Leaf.IPAddresses, 1, "IP SANs")
		require.True(t, cert.Leaf.IPAddresses[0].Equal(loopback), "IP SAN %s", cert.Leaf.IPAddresses[0])
		require.Empty(t, cert.Leaf.DNSNames, "no DNS SAN")
		requireChainsToPebble(t, cert, "127.0.0.1")
		assert.Equal(t, []string{"127.0.0.1"}, asStrings(cert.Data["ip_sans"]), "ip_sans on the read")
		assert.Empty(t, asStrings(cert.Data["domains"]), "domains on the read holds DNS names only")

		hits := requireValidatedThrough(t, ng, "127.0.0.1", vaultHost)
		t.Logf("nginx access log: %d validation(s) of 127.0.0.1 by Pebble, e.g. %+v", len(hits), hits[0])
		requireTokenGone(t, ng, env.VaultAddr, hits[0].URI)

		renewed, n := renewUntilHTTP01(t, tenant, ng, name, "127.0.0.1", cert)
		require.Len(t, renewed.Leaf.IPAddresses, 1)
		require.True(t, renewed.Leaf.IPAddresses[0].Equal(loopback))
		requireChainsToPebble(t, renewed, "127.0.0.1")
		t.Logf("renewed %d time(s) by the tenant; the last one validated over HTTP-01 through nginx", n)
	})

	type refusal struct {
		name    string
		client  *vaultapi.Client
		path    string // under the mount
		data    map[string]any
		status  int      // 400 unless set
		mention []string // the error names one of these (case-insensitive); none for a 403
	}
	cert := func(role string, data map[string]any) map[string]any {
		return merge(map[string]any{"role": role, "wait": "0s"}, data)
	}
	rule := []string{"allowed_ip_sans"}
	// 0.0.0.0, ::, broadcast: refused by a rule before the role's ("not a unicast address").
	outside := []string{"allowed_ip_sans", "unicast"}
	// Not an address: the message quotes what is wrong with it.
	malformed := []string{"ip_sans", "IP address", "allowed_ip_sans", "label", "numeric", "domain name", "IPv6 zone"}
	var cases []refusal
	n := 0
	certPath := func() string { n++; return fmt.Sprintf("certs/%s/bad-%d", team, n) }
	// Outside allowed_ip_sans, valid addresses, as the tenant (ip_sans and domains alike).
	for _, ip := range []string{"127.0.0.2", "::1", "[::1]", "::ffff:127.0.0.2", "0.0.0.0", "10.0.0.1", "255.255.255.255", "127.0.0.1,127.0.0.2", "::", "fe80::1"} {
		cases = append(cases,
			refusal{"ip_sans=" + ip, tenant, certPath(), cert(id, map[string]any{"ip_sans": ip, "challenge": "http-01"}), 0, outside},
			refusal{"domains=" + ip, tenant, certPath(), cert(id, map[string]any{"domains": ip, "challenge": "http-01"}), 0, outside})
	}
	// Not IP addresses in Go's (and the CA's) strict syntax, though some parsers read 127.0.0.1 in them.
	for _, ip := range []string{"0x7f.0.0.1", "127.1", "2130706433", "0177.0.0.1", "127.0.0.01", "127.0.0.1/32",
		"127.0.0.1%lo", "fe80::1%lo", "127.0.0.1:80", "1.2.3.4.5", "127.0.0.1\x00", "1 27.0.0.1", "::ffff:127.0.0.1%1"} {
		cases = append(cases, refusal{fmt.Sprintf("ip_sans=%q", ip), tenant, certPath(), cert(id, map[string]any{"ip_sans": ip, "challenge": "http-01"}), 0, malformed})
	}
	for _, d := range []string{"0x7f.0.0.1", "127.1", "2130706433", "0177.0.0.1"} {
		cases = append(cases, refusal{"domains=" + d, tenant, certPath(), cert(id, map[string]any{"domains": d, "challenge": "http-01"}), 0, malformed})
	}
	// ip_sans holds IP addresses (API.md): a DNS name there, even one the role allows, is a mistake
	// to report, not a name to certify.
	cases = append(cases, refusal{"ip_sans=<a DNS name>", tenant, certPath(), cert(id, map[string]any{"ip_sans": "a." + id + "." + env.HTTP01Base, "challenge": "http-01"}), 0,
		[]string{"ip_sans", "IP address"}})
	cases = append(cases,
		// IP addresses need HTTP-01: not with DNS-01, on a role that allows both.
		refusal{"IP with dns-01", tenant, certPath(), cert(id+"-both", map[string]any{"ip_sans": "127.0.0.1", "challenge": "dns-01"}), 0, []string{"http-01"}},
		refusal{"IP in domains with dns-01", tenant, certPath(), cert(id+"-both", map[string]any{"domains": "127.0.0.1", "challenge": "dns-01"}), 0, []string{"http-01"}},
		// Wildcards need DNS-01.
		refusal{"wildcard with http-01", tenant, certPath(), cert(id+"-both", map[string]any{"domains": "*." + id + "." + env.Zone, "challenge": "http-01"}), 0, []string{"dns-01"}},
		refusal{"wildcard and name with http-01", tenant, certPath(), cert(id+"-both", map[string]any{"domains": "a." + id + "." + env.Zone + ",*." + id + "." + env.Zone, "challenge": "http-01"}), 0, []string{"dns-01"}},
		// Challenges the role does not allow, or that do not exist.
		refusal{"dns-01 on an http-01 role", tenant, certPath(), cert(id, map[string]any{"domains": "a." + id + "." + env.HTTP01Base, "challenge": "dns-01"}), 0,
			[]string{"allowed_challenges", "does not allow the dns-01 challenge"}},
		refusal{"http-01 on a dns-01 role", tenant, certPath(), cert(id+"-dns01", map[string]any{"domains": "a." + id + "." + env.Zone, "challenge": "http-01"}), 0,
			[]string{"allowed_challenges", "does not allow the http-01 challenge"}},
		refusal{"IP on a dns-01 role", tenant, certPath(), cert(id+"-dns01", map[string]any{"ip_sans": "127.0.0.1"}), 0, []string{"allowed_ip_sans", "http-01"}},
	)
	for _, ch := range []string{"tls-alpn-01", "dns-account-01", "http-01,dns-01", "http-02", "dns-persist-01"} {
		cases = append(cases, refusal{"challenge=" + ch, tenant, certPath(), cert(id, map[string]any{"domains": "a." + id + "." + env.HTTP01Base, "challenge": ch}), 0, []string{"challenge"}})
	}
	cases = append(cases,
		// A tenant cannot widen the rules: extra fields on the certificate are not the role's.
		refusal{"role fields on the certificate", tenant, certPath(), cert(id, map[string]any{"ip_sans": "127.0.0.2", "challenge": "http-01",
			"allowed_ip_sans": "0.0.0.0/0", "allowed_challenges": "dns-01,http-01"}), 0, rule},
		// ... nor use the operator's wide role from its own folder ...
		refusal{"the operator's role", tenant, certPath(), cert(id+"-wide", map[string]any{"ip_sans": "10.0.0.1", "challenge": "http-01"}), 0, []string{"allowed_cert_names"}},
		// ... nor write in the operator's folder ...
		refusal{"the operator's folder", tenant, "certs/ops-" + id + "/x", cert(id+"-wide", map[string]any{"ip_sans": "10.0.0.1"}), http.StatusForbidden, nil},
		// ... nor change a role or make one.
		refusal{"rewrite the role", tenant, "roles/" + id, map[string]any{"allowed_ip_sans": "0.0.0.0/0", "allowed_challenges": "http-01", "account": acct,
			"allowed_cert_names": team + "/*"}, http.StatusForbidden, nil},
		refusal{"new role", tenant, "roles/" + id + "-mine", map[string]any{"allowed_ip_sans": "0.0.0.0/0", "allowed_challenges": "http-01", "account": acct,
			"allowed_cert_names": team + "/*"}, http.StatusForbidden, nil},
		// Roles validate what they allow (root).
		refusal{"role: unknown challenge", root, "roles/" + id + "-bad1", map[string]any{"account": acct, "allowed_challenges": "tls-alpn-01", "allowed_cert_names": "x/*"}, 0, []string{"allowed_challenges", "tls-alpn-01"}},
		refusal{"role: dns-01 without dns", root, "roles/" + id + "-bad2", map[string]any{"account": acct, "allowed_challenges": "dns-01,http-01", "allowed_cert_names": "x/*"}, 0, []string{"dns"}},
		refusal{"role: CIDR /33", root, "roles/" + id + "-bad3", map[string]any{"account": acct, "allowed_challenges": "http-01", "allowed_ip_sans": "127.0.0.1/33", "allowed_cert_names": "x/*"}, 0, rule},
		refusal{"role: not a CIDR", root, "roles/" + id + "-bad4", map[string]any{"account": acct, "allowed_challenges": "http-01", "allowed_ip_sans": "localhost", "allowed_cert_names": "x/*"}, 0, rule},
		refusal{"role: hex address", root, "roles/" + id + "-bad5", map[string]any{"account": acct, "allowed_challenges": "http-01", "allowed_ip_sans": "0x7f.0.0.1/32", "allowed_cert_names": "x/*"}, 0, rule},
	)

	t.Run("refused", func(t *testing.T) {
		ordersBefore := proxy.NewOrders()
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				want := tc.status
				if want == 0 {
					want = http.StatusBadRequest
				}
				r := MustDo(t, tc.client, http.MethodPut, Mount+"/"+tc.path, tc.data)
				if r.Status/100 == 2 && strings.HasPrefix(tc.path, "certs/") {
					// Accepted by mistake: stop its issuance before failing.
					t.Cleanup(func() { MustDo(t, root, http.MethodDelete, Mount+"/"+tc.path, nil) })
				}
				require.Equal(t, want, r.Status, "PUT %s %v: %s", tc.path, tc.data, r)
				if len(tc.mention) > 0 {
					assert.Truef(t, containsAnyFold(r.ErrorText(), tc.mention), "message %q should name one of %q", r.ErrorText(), tc.mention)
				}
				assert.NotContains(t, r.ErrorText(), "internal error")
				got := MustDo(t, root, http.MethodGet, Mount+"/"+tc.path, nil)
				if strings.HasPrefix(tc.path, "roles/"+id+"-") || strings.HasPrefix(tc.path, "certs/") {
					assert.Equal(t, http.StatusNotFound, got.Status, "nothing stored at %s: %s", tc.path, got)
				}
			})
		}
		// The tenant's role is unchanged.
		r := readMountOK(t, root, "roles/"+id)
		assert.Equal(t, []string{"127.0.0.1/32"}, asStrings(r.Data["allowed_ip_sans"]), "allowed_ip_sans")
		assert.Equal(t, []string{"http-01"}, asStrings(r.Data["allowed_challenges"]), "allowed_challenges")
		assert.Equal(t, ordersBefore, proxy.NewOrders(), "no refused certificate reached the CA")
		for _, h := range ng.Challenges(t) {
			assert.Truef(t, h.Host == "127.0.0.1" || strings.HasSuffix(h.Host, "."+env.HTTP01Base), "a validation for %q", h.Host)
		}
	})

	t.Run("challenge path is read-only", func(t *testing.T) {
		token := nginxNonce(t, 16)
		for _, cl := range []*vaultapi.Client{tenant, root} {
			for _, method := range []string{http.MethodPut, http.MethodPost, http.MethodDelete} {
				r := MustDo(t, cl, method, Mount+"/challenge/"+token, map[string]any{"key_authorization": token + ".x"})
				assert.Containsf(t, []int{http.StatusForbidden, http.StatusMethodNotAllowed, http.StatusNotFound, http.StatusBadRequest}, r.Status, "%s challenge/<token>: %s", method, r)
			}
		}
		_, status, err := getNoToken(anonymousClient(), env.VaultAddr+"/v1/"+Mount+"/challenge/"+token)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNotFound, status, "nothing was stored for the token")
	})

	// Spellings of 127.0.0.1 that may be accepted, as the address itself and nothing else: white
	// space around it (Vault's comma lists trim it) and the bracketed literal form.
	for i, spelling := range []string{" 127.0.0.1 ", "[127.0.0.1]"} {
		t.Run(fmt.Sprintf("ip_sans=%q", spelling), func(t *testing.T) {
			name := fmt.Sprintf("%s/spelling-%d", team, i)
			r := MustDo(t, tenant, http.MethodPut, Mount+"/certs/"+name, cert(id, map[string]any{"ip_sans": spelling, "challenge": "http-01"}))
			if r.Status == http.StatusBadRequest {
				assert.Truef(t, containsAnyFold(r.ErrorText(), malformed), "message %q", r.ErrorText())
				assert.Equal(t, http.StatusNotFound, MustDo(t, root, http.MethodGet, Mount+"/certs/"+name, nil).Status)
				return
			}
			require.Containsf(t, []int{http.StatusOK, http.StatusAccepted}, r.Status, "%s", r)
			assert.Equal(t, []string{"127.0.0.1"}, asStrings(r.Data["ip_sans"]), "stored canonical: %s", r)
			got := WaitCert(t, tenant, name, 2*time.Minute)
			assert.Equal(t, []string{"127.0.0.1"}, asStrings(got.Data["ip_sans"]), "stored canonical")
			require.Len(t, got.Leaf.IPAddresses, 1)
			assert.True(t, got.Leaf.IPAddresses[0].Equal(loopback))
			t.Logf("ip_sans=%q was taken as 127.0.0.1", spelling)
			MustDo(t, tenant, http.MethodDelete, Mount+"/certs/"+name, nil)
		})
	}
}

// isChallengeHelp reports whether body is Vault's help text of the challenge path (what ?help=1
// answers there).
func isChallengeHelp(body []byte) bool {
	return strings.HasPrefix(string(body), `{"help":`) && strings.Contains(string(body), "Matching Route: ^challenge/")
}

// randomACMEToken is a fresh token of the form CAs use (32 random bytes, base64url).
func randomACMEToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(b)
}

// readMountOK reads <mount>/<path> and requires 200.
func readMountOK(t testing.TB, c *vaultapi.Client, path string) *Resp {
	t.Helper()
	r := MustDo(t, c, http.MethodGet, Mount+"/"+path, nil)
	require.Equal(t, http.StatusOK, r.Status, "read %s: %s", path, r)
	return r
}

// TestHTTP01ChallengePathUnauthenticated attacks the mount's one unauthenticated path as anyone on
// the network would, without a Vault token, directly and through nginx: unknown tokens are 404;
// tokens with "../", encoded slashes, NUL, very long ones are 404 or 400 (never 500, never
// anything of another path); every other path of the mount still needs a token (403 from Vault).
func TestHTTP01ChallengePathUnauthenticated(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock()
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	// Something worth stealing in the mount.
	is := env.SetupIssuer(t, c, Unique("h01unauth"), nil, map[string]any{"allowed_domains": env.Zone, "allow_subdomains": true, "allowed_cert_names": "x/*"})
	ng := startNginx(t, freeTCPPort(t), env.VaultAddr, Mount)
	hc := anonymousClient()
	base := env.VaultAddr + "/v1/" + Mount

	secret := func(body []byte) bool {
		s := string(body)
		return strings.Contains(s, "BEGIN") || strings.Contains(s, "directory_url") || strings.Contains(s, "credentials") ||
			strings.Contains(s, is.Account) || strings.Contains(s, "\"keys\"")
	}
	// check sends GET rawURL (no token) and requires one of want; a redirect (Go's ServeMux cleans
	// "..") is followed by hand, still without a token, and must not lead to anything readable.
	check := func(t *testing.T, rawURL string, want ...int) {
		t.Helper()
		resp, err := hc.Get(rawURL)
		require.NoError(t, err, rawURL)
		for hops := 0; resp.StatusCode >= 300 && resp.StatusCode < 400 && hops < 3; hops++ {
			loc, err := resp.Location()
			_ = resp.Body.Close()
			require.NoError(t, err, "redirect from %s", rawURL)
			t.Logf("%.120s redirects (%d) to %s", rawURL, resp.StatusCode, loc)
			rawURL = loc.String()
			resp, err = hc.Get(rawURL)
			require.NoError(t, err, rawURL)
			want = append(want, http.StatusForbidden) // the cleaned path is another path: Vault wants a token
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		require.NoError(t, err)
		status := resp.StatusCode
		// ?help=1 on the challenge path is refused like an unknown token: nobody learns from the
		// proxy what sits behind it.
		assert.Falsef(t, isChallengeHelp(body), "GET %.200s without a token answered Vault's help text", rawURL)
		assert.Containsf(t, want, status, "GET %.200s without a token: %d %.200s", rawURL, status, body)
		assert.Less(t, status, 500, "GET %.200s: %d %.200s", rawURL, status, body)
		assert.Falsef(t, secret(body), "GET %.200s without a token returned %.300s", rawURL, body)
	}

	randomToken := randomACMEToken(t)
	t.Run("unknown token", func(t *testing.T) {
		check(t, base+"/challenge/"+randomToken, http.StatusNotFound)
		body, status, err := getNoToken(hc, ng.URL("/.well-known/acme-challenge/"+randomToken))
		require.NoError(t, err)
		assert.Equal(t, http.StatusNotFound, status)
		assert.False(t, secret(body))
	})

	attacks := []string{
		"../certs/x", "..%2fcerts%2fx", "..%2Fcerts", "%2e%2e/certs/x", "%2e%2e%2fcerts%2fx", "..", "%2e%2e", ".",
		"../../sys/mounts", "..%2f..%2fsys%2fmounts", "x/../../certs/", "x%2f..%2f..%2fcerts", "..\\certs",
		"%252e%252e%252fcerts", "..%252fcerts", "tok%00", "tok%0a", "%20", "a%20b", "tok;certs", "%C3%A9t%C3%A9",
		"tok?list=true", "tok%3Flist%3Dtrue", "tok?help=1", randomToken + "/", randomToken + "/..", randomToken + "%2f",
		"*", "-", "_", strings.Repeat("A", 256), strings.Repeat("A", 257), strings.Repeat("A", 5000), strings.Repeat("a/", 500),
		strings.Repeat("%2e%2e%2f", 40) + "certs",
	}
	t.Run("malformed tokens", func(t *testing.T) {
		for _, tok := range attacks {
			// 405: "?list=true" makes a GET a LIST, which the path does not have.
			check(t, base+"/challenge/"+tok, http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed)
			body, status, err := getNoToken(hc, ng.URL("/.well-known/acme-challenge/"+tok))
			require.NoError(t, err, tok)
			assert.Falsef(t, isChallengeHelp(body), "through nginx %.80q: Vault's help text", tok)
			assert.Containsf(t, []int{http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed}, status, "through nginx %.80q: %d %.200s", tok, status, body)
			assert.Falsef(t, secret(body), "through nginx %.80q: %.300s", tok, body)
		}
		for _, a := range ng.Access(t) {
			assert.NotRegexp(t, `^5`, a.UpstreamStatus, "Vault answered nginx with a server error: %+v", a)
		}
	})

	t.Run("rest of the mount needs a token", func(t *testing.T) {
		for _, p := range []string{"certs/x/a", "certs/", "certs/x/", "roles/" + is.Role, "roles/", "accounts/" + is.Account, "accounts/",
			"config/dns/" + is.DNS, "config/dns/", "status/certs", "challenge", "challengex/y", "Challenge/" + randomToken} {
			check(t, base+"/"+p, http.StatusForbidden)
			req, err := http.NewRequest("LIST", base+"/"+p, nil)
			require.NoError(t, err)
			resp, err := hc.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			want := []int{http.StatusForbidden}
			if p == "challenge" {
				// LIST adds a trailing slash: challenge/ is the unauthenticated prefix, and the
				// plugin has no list there.
				want = append(want, http.StatusNotFound, http.StatusMethodNotAllowed)
			}
			assert.Containsf(t, want, resp.StatusCode, "LIST %s without a token: %s", p, body)
			assert.False(t, secret(body), "LIST %s: %s", p, body)
		}
		for _, p := range []string{"renew/x/a", "revoke/x/a", "certs/x/a", "roles/" + is.Role, "accounts/" + is.Account} {
			resp, err := hc.Post(base+"/"+p, "application/json", strings.NewReader(`{"role":"`+is.Role+`","domains":"a.`+env.Zone+`"}`))
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equalf(t, http.StatusForbidden, resp.StatusCode, "POST %s without a token", p)
		}
		// LIST of the challenge path itself reveals no tokens.
		req, err := http.NewRequest("LIST", base+"/challenge/", nil)
		require.NoError(t, err)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Containsf(t, []int{http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusBadRequest}, resp.StatusCode, "LIST challenge/ without a token")
		// Nothing was created by any of it.
		assert.Equal(t, http.StatusNotFound, MustDo(t, c, http.MethodGet, Mount+"/certs/x/a", nil).Status)
	})
}

// TestHTTP01HAStandby runs the plugin on a real 3-node Vault cluster (raft) with nginx in front
// of a STANDBY node: the CA's HTTP-01 request reaches the standby, which forwards it to the
// active node, where the order keeps its key authorization in storage. The access log shows the
// standby as nginx's upstream, answering 200.
func TestHTTP01HAStandby(t *testing.T) {
	t.Parallel()
	cl := startHACluster(t, 3)
	active := cl.waitActive(t, time.Minute, nil)
	c := cl.client(t, active)
	MustWrite(t, c, "sys/plugins/catalog/secret/"+pluginName, map[string]any{
		"sha256": env.PluginSHA256, "command": pluginName, "version": env.PluginVersion,
	})
	MustWrite(t, c, "sys/mounts/"+Mount, map[string]any{"type": pluginName, "plugin_version": env.PluginVersion})
	var standby *haNode
	for _, n := range cl.Nodes {
		if n != active {
			standby = n
			break
		}
	}
	require.NotNil(t, standby)
	e := cl.nodeEnv(active)
	id := Unique("h01ha")
	role := http01Issuer(t, e, c, id, nil, nil)
	domain := id + "." + env.HTTP01Base

	port := lockHTTP01Port(t)
	ng := startNginx(t, port, standby.Addr, Mount)
	standbyHost := strings.TrimPrefix(standby.Addr, "http://")

	start := time.Now()
	cert := IssueCert(t, c, id, map[string]any{"role": role, "domains": domain, "challenge": "http-01"}, 2*time.Minute)
	t.Logf("HTTP-01 certificate for %s issued on the cluster in %s (active %s, nginx -> standby %s)",
		domain, time.Since(start).Round(time.Millisecond), active.Name, standby.Name)
	require.Equal(t, []string{domain}, cert.Leaf.DNSNames)
	requireChainsToPebble(t, cert, domain)

	hits := requireValidatedThrough(t, ng, domain, standbyHost)
	t.Logf("nginx access log: %d validation(s) answered through the standby, e.g. %+v", len(hits), hits[0])
	requireTokenGone(t, ng, standby.Addr, hits[0].URI)

	// The standby was a standby throughout, and the active node still is.
	li, err := standby.leader()
	require.NoError(t, err)
	require.False(t, li.IsSelf, "%s must be a standby", standby.Name)
	require.Equal(t, active.Addr, li.LeaderAddress)
	require.Equal(t, active, cl.active(), "no leader change during the test")
	// The standby serves the certificate too (forwarded).
	r := readCertOK(t, cl.client(t, standby), id)
	assert.Equal(t, cert.SerialNumber, fmt.Sprint(r.Data["serial_number"]))
}
