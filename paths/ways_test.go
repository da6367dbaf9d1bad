package paths

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// testCA is a throw-away CA that signs leaves for import tests.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{key: key, cert: cert, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// leaf returns a PEM leaf for names (DNS names and IPs) valid from nb to na, with its PEM key.
func (ca *testCA) leaf(t *testing.T, key crypto.Signer, names []string, nb, na time.Time) (string, string) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: nb, NotAfter: na,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	require.NoError(t, err)
	keyPEM, err := acme.EncodeKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), keyPEM
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// csrPEM returns a PEM CSR for names signed by key.
func csrPEM(t *testing.T, key crypto.Signer, cn string, names []string, emails ...string) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, EmailAddresses: emails}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// privateAccount adds an account "private" with its own ca_bundle (a private CA, which may
// certify any IP address) and a role "ip" on it for http-01 and 127.0.0.0/30, 2001:db8::/64.
func privateAccount(h *harness) {
	h.t.Helper()
	ca := newTestCA(h.t)
	h.ok(logical.CreateOperation, "accounts/private", map[string]any{"directory_url": "https://ca.test/directory",
		"terms_of_service_agreed": true, "ca_bundle": ca.pem})
	h.role("ip", map[string]any{"account": "private", "dns": "", "allowed_challenges": "http-01",
		"allowed_ip_sans": "127.0.0.0/30,2001:db8::/64", "allowed_domains": "example.com"})
	h.e.reset()
}

func TestHTTP01ChallengePathServesOnlyTokensInFlight(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	token := "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
	require.NoError(t, storage.StoreHTTPChallenge(ctx, h.s, token, &storage.HTTPChallengeEntry{
		KeyAuthorization: token + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI", Cert: "team-a/www", CreatedAt: time.Now()}))
	old := "b" + token[1:]
	require.NoError(t, storage.StoreHTTPChallenge(ctx, h.s, old, &storage.HTTPChallengeEntry{
		KeyAuthorization: "stale", CreatedAt: time.Now().Add(-storage.HTTPChallengeTTL - time.Minute)}))

	resp, err := h.do(logical.ReadOperation, "challenge/"+token, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.Data[logical.HTTPStatusCode])
	require.Equal(t, "text/plain", resp.Data[logical.HTTPContentType])
	require.Equal(t, token+".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI", string(resp.Data[logical.HTTPRawBody].([]byte)))

	for _, bad := range []string{old, "a" + token[1:], "../certs/x", "..%2fcerts", "a/b", strings.Repeat("a", 257),
		"tok en", "tok.en", url.PathEscape("é"), "%00", token + "/", token + "/extra"} {
		resp, err := h.do(logical.ReadOperation, "challenge/"+bad, nil)
		require.NoError(t, err, bad)
		require.NotNil(t, resp, bad)
		require.Equal(t, http.StatusNotFound, resp.Data[logical.HTTPStatusCode], bad)
		require.Equal(t, "not found\n", string(resp.Data[logical.HTTPRawBody].([]byte)), bad)
	}
}

func TestRoleChallengesAndIPRanges(t *testing.T) {
	h := newHarness(t)
	h.fixtures()
	base := map[string]any{"account": "acme", "allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "*"}
	with := func(kv ...any) map[string]any {
		d := map[string]any{}
		for k, v := range base {
			d[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			d[kv[i].(string)] = kv[i+1]
		}
		return d
	}
	// http-01 only needs no DNS configuration.
	r := h.ok(logical.CreateOperation, "roles/h", with("allowed_challenges", "HTTP-01", "allowed_ip_sans", "192.0.2.7, 198.51.100.0/24"))
	require.Equal(t, []string{"http-01"}, r.Data["allowed_challenges"])
	require.Equal(t, []string{"192.0.2.7/32", "198.51.100.0/24"}, r.Data["allowed_ip_sans"])
	for _, c := range []struct {
		data  map[string]any
		wants []string
	}{
		{with(), []string{"dns is required for dns-01"}},
		{with("allowed_challenges", "tls-alpn-01"), []string{`"tls-alpn-01" is not a challenge type`}},
		{with("allowed_challenges", ","), []string{"allowed_challenges is empty"}},
		{with("dns", "ns", "allowed_ip_sans", "192.0.2.0/24"), []string{"allowed_ip_sans needs http-01"}},
		{with("allowed_challenges", "http-01", "allowed_ip_sans", "192.0.2.0/33"), []string{"allowed_ip_sans:", "neither a CIDR"}},
		{with("allowed_challenges", "http-01", "allowed_ip_sans", "fe80::1%eth0"), []string{"allowed_ip_sans:"}},
		{with("allowed_challenges", "http-01", "allowed_ip_sans", "127.1"), []string{"allowed_ip_sans:"}},
		{with("allowed_challenges", "http-01", "preferred_chain", strings.Repeat("x", 65)), []string{"preferred_chain must be"}},
		{with("allowed_challenges", "http-01", "preferred_chain", "a\nb"), []string{"preferred_chain must be"}},
		{with("allowed_challenges", "http-01", "allowed_domains", ""), []string{"allowed_domains is required"}},
	} {
		h.bad(nil, logical.CreateOperation, "roles/x", c.data, c.wants...)
	}
	// An IP-only role.
	h.ok(logical.CreateOperation, "roles/ips", with("allowed_domains", "", "allowed_challenges", "http-01", "allowed_ip_sans", "192.0.2.0/24"))
}

func TestCertIPAddresses(t *testing.T) {
	h := certHarness(t)
	privateAccount(h)
	resp := h.ok(logical.CreateOperation, "certs/ip", map[string]any{"role": "ip", "ip_sans": "127.0.0.1, 2001:DB8:0:0::5", "domains": "www.example.com"})
	require.Equal(t, []string{"www.example.com"}, resp.Data["domains"])
	require.Equal(t, []string{"127.0.0.1", "2001:db8::5"}, resp.Data["ip_sans"])
	require.Equal(t, "http-01", resp.Data["challenge"])
	c := h.loadCert("ip")
	require.Equal(t, []string{"www.example.com", "127.0.0.1", "2001:db8::5"}, c.Domains)
	require.Equal(t, storage.ChallengeHTTP01, c.Challenge)
	// Given among domains, IPv4-mapped: the same address.
	h.ok(logical.CreateOperation, "certs/ip2", map[string]any{"role": "ip", "domains": "::ffff:127.0.0.2"})
	require.Equal(t, []string{"127.0.0.2"}, h.loadCert("ip2").Domains)

	for _, ip := range []string{"127.0.0.4", "126.255.255.255", "::1", "2001:db8:0:1::1", "0x7f.0.0.1", "127.1", "2130706433",
		"127.000.000.001", "0177.0.0.1", "127.0.0.1/32", "fe80::1%lo", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::"} {
		h.bad(nil, logical.CreateOperation, "certs/bad", map[string]any{"role": "ip", "ip_sans": ip})
	}
	h.bad(nil, logical.CreateOperation, "certs/bad", map[string]any{"role": "ip", "ip_sans": "127.0.0.1", "challenge": "dns-01"},
		`role "ip" does not allow the dns-01 challenge`)
	// A role with both: IPs need http-01, wildcards dns-01, whatever the default.
	h.role("both", map[string]any{"account": "private", "allowed_challenges": "dns-01,http-01", "allowed_ip_sans": "127.0.0.1"})
	h.ok(logical.CreateOperation, "certs/both-ip", map[string]any{"role": "both", "ip_sans": "127.0.0.1"})
	require.Equal(t, storage.ChallengeHTTP01, h.loadCert("both-ip").Challenge, "the default challenge that can prove an IP")
	h.ok(logical.CreateOperation, "certs/both-dns", map[string]any{"role": "both", "domains": "*.example.com"})
	require.Equal(t, "", h.loadCert("both-dns").Challenge, "dns-01 (stored as the default)")
	h.bad(nil, logical.CreateOperation, "certs/bad", map[string]any{"role": "both", "ip_sans": "127.0.0.1", "challenge": "dns-01"}, "IP addresses can only be proven with http-01")
	h.bad(nil, logical.CreateOperation, "certs/bad", map[string]any{"role": "both", "domains": "*.example.com", "challenge": "http-01"}, "wildcard names can only be proven with dns-01")
	h.bad(nil, logical.CreateOperation, "certs/bad", map[string]any{"role": "both", "domains": "www.example.com", "challenge": "tls-alpn-01"}, "not one this engine answers")
	h.bad(nil, logical.CreateOperation, "certs/bad", map[string]any{"role": "web", "domains": "www.example.com", "challenge": "http-01"}, `role "web" does not allow the http-01 challenge`)

	// Through a public CA (account without ca_bundle) only public addresses.
	h.role("pub", map[string]any{"allowed_challenges": "http-01", "allowed_ip_sans": "0.0.0.0/0,::/0", "dns": ""})
	h.ok(logical.CreateOperation, "certs/pub", map[string]any{"role": "pub", "ip_sans": "8.8.8.8,2a00:1450:4001::1"})
	for _, ip := range []string{"10.0.0.1", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.0.1", "100.64.0.1", "192.0.2.1",
		"198.18.0.1", "240.0.0.1", "fc00::1", "fe80::1", "2001:db8::1", "::ffff:10.0.0.1", "64:ff9b::a00:1"} {
		h.bad(nil, logical.CreateOperation, "certs/pub-bad", map[string]any{"role": "pub", "ip_sans": ip}, "not a publicly routable address")
	}
}

func TestCertCSR(t *testing.T) {
	h := certHarness(t)
	key := ecKey(t)
	csr := csrPEM(t, key, "www.example.com", []string{"www.example.com", "api.example.com"})
	resp := h.ok(logical.CreateOperation, "certs/csr", map[string]any{"role": "web", "csr": csr})
	require.Equal(t, []string{"www.example.com", "api.example.com"}, resp.Data["domains"])
	require.Equal(t, "csr", resp.Data["key_source"])
	c := h.loadCert("csr")
	require.Equal(t, "ec256", c.KeyType)
	require.Equal(t, strings.TrimSpace(csr)+"\n", c.CSR)
	// The fake engine stores a key: a real one does not; what the read shows follows storage.
	c.PrivateKey, c.KeySource = "", storage.KeySourceCSR
	h.storeCert("csr", c)
	read := h.ok(logical.ReadOperation, "certs/csr", nil)
	require.NotContains(t, read.Data, "private_key")
	require.Equal(t, true, read.Data["key_reused"])
	require.Equal(t, "csr", read.Data["key_source"])
	require.Equal(t, c.CSR, read.Data["csr"])

	// The same CSR again, with the same names in another order: nothing changes.
	h.e.reset()
	h.ok(logical.UpdateOperation, "certs/csr", map[string]any{"csr": csr, "domains": "api.example.com,www.example.com"})
	require.Equal(t, int64(1), h.loadCert("csr").Generation)
	// Names cannot change without a new CSR.
	h.bad(nil, logical.UpdateOperation, "certs/csr", map[string]any{"domains": "other.example.com"}, "is defined by its csr")
	h.bad(nil, logical.UpdateOperation, "certs/csr", map[string]any{"key_type": "rsa2048"}, "does not match the key of the csr")

	tampered := []byte(csr)
	block, _ := pem.Decode(tampered)
	block.Bytes[len(block.Bytes)-5] ^= 0xff
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	for name, c := range map[string]struct {
		data  map[string]any
		wants []string
	}{
		"outside the role":  {map[string]any{"csr": csrPEM(t, key, "www.example.org", nil)}, []string{`does not allow "www.example.org"`}},
		"one name outside":  {map[string]any{"csr": csrPEM(t, key, "", []string{"www.example.com", "example.net"})}, []string{`does not allow "example.net"`}},
		"IP not allowed":    {map[string]any{"csr": csrPEM(t, key, "", []string{"www.example.com", "192.0.2.1"})}, []string{"does not allow the IP address"}},
		"e-mail":            {map[string]any{"csr": csrPEM(t, key, "www.example.com", nil, "a@example.com")}, []string{"e-mail addresses or URIs"}},
		"bad signature":     {map[string]any{"csr": string(pem.EncodeToMemory(block))}, []string{"signature does not verify"}},
		"RSA 1024":          {map[string]any{"csr": csrPEM(t, rsaKey, "www.example.com", nil)}, []string{"unsupported RSA key size 1024"}},
		"not PEM":           {map[string]any{"csr": "hello " + secret}, []string{"not a PEM certificate request"}},
		"a key":             {map[string]any{"csr": "-----BEGIN PRIVATE KEY-----\n" + secret + "\n-----END PRIVATE KEY-----\n"}, []string{"not a PEM certificate request"}},
		"two blocks":        {map[string]any{"csr": csr + csr}, []string{"more than one PEM block"}},
		"huge":              {map[string]any{"csr": strings.Repeat(secret, 10000)}, []string{"larger than"}},
		"names differ":      {map[string]any{"csr": csr, "domains": "www.example.com"}, []string{"must name exactly what the csr names"}},
		"csr and cert":      {map[string]any{"csr": csr, "certificate": "x"}, []string{"either csr"}},
		"key without cert":  {map[string]any{"domains": "www.example.com", "private_key": secret}, []string{"private_key is only taken with certificate"}},
		"chain without one": {map[string]any{"domains": "www.example.com", "chain": "x"}, []string{"chain is only taken with certificate"}},
	} {
		c.data["role"] = "web"
		msg := h.bad(nil, logical.CreateOperation, "certs/new", c.data, c.wants...)
		require.Less(t, len(msg), 400, name)
	}

	// csr="" returns to keys made by Vault: a new generation.
	h.ok(logical.UpdateOperation, "certs/csr", map[string]any{"csr": ""})
	c = h.loadCert("csr")
	require.Empty(t, c.CSR)
	require.Equal(t, int64(2), c.Generation)
}

func TestCertImport(t *testing.T) {
	h := certHarness(t)
	ca := newTestCA(h.t)
	key := ecKey(t)
	now := time.Now()
	cert, keyPEM := ca.leaf(t, key, []string{"www.example.com", "example.com"}, now.Add(-24*time.Hour), now.Add(60*24*time.Hour))
	h.bad(nil, logical.CreateOperation, "certs/imp", map[string]any{"role": "web", "certificate": cert, "private_key": keyPEM, "chain": ca.pem},
		`role "web" does not allow imports`)
	h.role("web", map[string]any{"allow_imports": true})
	resp := h.ok(logical.CreateOperation, "certs/imp", map[string]any{"role": "web", "certificate": cert, "private_key": keyPEM, "chain": ca.pem})
	require.Equal(t, "imported", resp.Data["key_source"])
	require.Equal(t, "valid", resp.Data["status"])
	require.Empty(t, h.e.called("EnsureCertificate"), "an import orders nothing")
	require.Len(t, h.e.called("PlanRenewal"), 1)
	c := h.loadCert("imp")
	require.True(t, c.Current())
	require.Equal(t, []string{"www.example.com", "example.com"}, c.Domains)
	require.Equal(t, "ec256", c.KeyType)
	require.Equal(t, []string{ca.pem}, c.Chain)
	require.False(t, c.RenewAt.IsZero())
	read := h.ok(logical.ReadOperation, "certs/imp", nil)
	require.Equal(t, cert, read.Data["certificate"])
	require.Equal(t, keyPEM, read.Data["private_key"])
	require.Equal(t, ca.pem, read.Data["issuing_ca"])

	// Without its chain: imported, with a warning.
	bare := h.ok(logical.CreateOperation, "certs/imp-bare", map[string]any{"role": "web", "certificate": cert, "private_key": keyPEM})
	require.Len(t, bare.Warnings, 1)
	require.Contains(t, bare.Warnings[0], "imported without its chain")

	// Again, as fullchain.pem: nothing changes.
	h.e.reset()
	h.ok(logical.UpdateOperation, "certs/imp", map[string]any{"certificate": cert + ca.pem, "private_key": keyPEM})
	require.Empty(t, h.e.called("CertificateChanged"))
	require.Equal(t, int64(1), h.loadCert("imp").Generation)

	other := ecKey(t)
	expired, expiredKey := ca.leaf(t, key, []string{"www.example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
	future, futureKey := ca.leaf(t, key, []string{"www.example.com"}, now.Add(time.Hour), now.Add(48*time.Hour))
	outside, outsideKey := ca.leaf(t, key, []string{"www.example.com", "www.example.org"}, now.Add(-time.Hour), now.Add(48*time.Hour))
	otherCA := newTestCA(t)
	for name, c := range map[string]struct {
		data  map[string]any
		wants []string
	}{
		"wrong key":           {map[string]any{"certificate": cert, "private_key": mustEncode(t, other)}, []string{"does not belong to the certificate"}},
		"no key":              {map[string]any{"certificate": cert}, []string{"private_key is required with certificate"}},
		"expired":             {map[string]any{"certificate": expired, "private_key": expiredKey}, []string{"expired at"}},
		"not yet valid":       {map[string]any{"certificate": future, "private_key": futureKey}, []string{"not valid before"}},
		"outside the role":    {map[string]any{"certificate": outside, "private_key": outsideKey}, []string{`does not allow "www.example.org"`}},
		"chain does not link": {map[string]any{"certificate": cert, "private_key": keyPEM, "chain": otherCA.pem}, []string{"in order"}},
		"key in certificate":  {map[string]any{"certificate": cert + keyPEM, "private_key": keyPEM}, []string{"certificate holds a private key"}},
		"garbage key":         {map[string]any{"certificate": cert, "private_key": secret}, []string{"private_key is not a PEM private key"}},
		"garbage cert":        {map[string]any{"certificate": secret, "private_key": keyPEM}, []string{"certificate is not a PEM certificate"}},
		"CA certificate":      {map[string]any{"certificate": ca.pem, "private_key": mustEncode(t, ca.key)}, []string{"is a CA certificate"}},
		"names differ":        {map[string]any{"certificate": cert, "private_key": keyPEM, "domains": "www.example.com"}, []string{"must name exactly what the certificate names"}},
		"key type differs":    {map[string]any{"certificate": cert, "private_key": keyPEM, "key_type": "rsa2048"}, []string{"does not match the key of the certificate"}},
		"huge":                {map[string]any{"certificate": strings.Repeat("A", maxImportCertSize+1), "private_key": keyPEM}, []string{"larger than"}},
	} {
		c.data["role"] = "web"
		msg := h.bad(nil, logical.CreateOperation, "certs/new-imp", c.data, c.wants...)
		require.NotContains(t, msg, "PRIVATE KEY", name)
		require.Less(t, len(msg), 400, name)
	}
	// A role that does not allow the key type refuses the import.
	h.role("rsa-only", map[string]any{"key_type": "rsa2048", "allowed_key_types": "", "allow_imports": true})
	h.bad(nil, logical.CreateOperation, "certs/new-imp", map[string]any{"role": "rsa-only", "certificate": cert, "private_key": keyPEM}, `does not allow key type "ec256"`)
}

func mustEncode(t *testing.T, k crypto.Signer) string {
	t.Helper()
	s, err := acme.EncodeKey(k)
	require.NoError(t, err)
	return s
}

func TestRevokeOnDelete(t *testing.T) {
	h := certHarness(t)
	h.role("revoking", map[string]any{"revoke_on_delete": true})
	h.ok(logical.CreateOperation, "certs/r", map[string]any{"role": "revoking", "domains": "www.example.com"})
	h.ok(logical.CreateOperation, "certs/keep", map[string]any{"role": "web", "domains": "www.example.com"})
	serial := h.loadCert("r").SerialNumber

	h.e.revokeErr = &acme.Error{Kind: acme.ErrUnreachable}
	err := h.fails(logical.DeleteOperation, "certs/r", nil)
	require.Equal(t, http.StatusBadGateway, codeOf(err))
	require.Contains(t, err.Error(), `certificate "r" was not deleted`)
	require.NotNil(t, h.loadCert("r"))

	h.e.revokeErr = nil
	h.e.reset()
	_, err = h.do(logical.DeleteOperation, "certs/r", nil)
	require.NoError(t, err)
	require.Nil(t, h.loadCert("r"))
	require.Equal(t, []string{serial}, h.e.revokedSerial[len(h.e.revokedSerial)-1:])
	require.Equal(t, uint(5), h.e.revokedReason[len(h.e.revokedReason)-1])

	// The CA refuses (it did not issue an imported certificate, or it is revoked already): the
	// entry goes, with a warning, so that nothing becomes undeletable.
	h.ok(logical.CreateOperation, "certs/r2", map[string]any{"role": "revoking", "domains": "www.example.com"})
	h.e.revokeErr = &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:malformed"}
	resp, err := h.do(logical.DeleteOperation, "certs/r2", nil)
	require.NoError(t, err)
	require.Nil(t, h.loadCert("r2"))
	require.Len(t, resp.Warnings, 1)
	require.Contains(t, resp.Warnings[0], `certificate "r2" was deleted without being revoked: the CA refused the revocation (problem urn:ietf:params:acme:error:malformed)`)
	h.e.revokeErr = nil

	h.e.reset()
	n := len(h.e.revokedSerial)
	_, err = h.do(logical.DeleteOperation, "certs/keep", nil)
	require.NoError(t, err)
	require.Len(t, h.e.revokedSerial, n, "a role without revoke_on_delete revokes nothing")
}

func TestCertListIsPaged(t *testing.T) {
	h := certHarness(t)
	for _, n := range []string{"team-a/c", "team-a/a", "team-a/b", "team-a/sub/x", "team-a/d"} {
		h.storeCert(n, &storage.CertEntry{Role: "team"})
	}
	resp := h.ok(logical.ListOperation, "certs/team-a/", nil)
	require.Equal(t, []string{"a", "b", "c", "d", "sub/"}, resp.Data["keys"])
	resp = h.ok(logical.ListOperation, "certs/team-a/", map[string]any{"limit": 2})
	require.Equal(t, []string{"a", "b"}, resp.Data["keys"])
	resp = h.ok(logical.ListOperation, "certs/team-a/", map[string]any{"limit": 2, "after": "b"})
	require.Equal(t, []string{"c", "d"}, resp.Data["keys"])
	resp = h.ok(logical.ListOperation, "certs/team-a/", map[string]any{"after": "bb"})
	require.Equal(t, []string{"c", "d", "sub/"}, resp.Data["keys"])
	h.bad(nil, logical.ListOperation, "certs/team-a/", map[string]any{"limit": 0}, "limit must be between 1 and 10000")
}

func TestInvalidALabelsAreRefused(t *testing.T) {
	for _, bad := range []string{"xn--x.example.com", "www.xn--.example.com", "xn--a-ecp.example.com"} {
		_, err := CanonicalDomain(bad)
		require.Error(t, err, bad)
	}
	got, err := CanonicalDomain("xn--bcher-kva.example.com")
	require.NoError(t, err)
	require.Equal(t, "xn--bcher-kva.example.com", got)
}

func TestChallengeHelpIsRefused(t *testing.T) {
	err := RefuseChallengeHelp(&logical.Request{Operation: logical.HelpOperation, Path: "challenge/tok"})
	require.Error(t, err)
	require.Equal(t, http.StatusNotFound, codeOf(err))
	require.NoError(t, RefuseChallengeHelp(&logical.Request{Operation: logical.HelpOperation, Path: "certs/x"}))
	require.NoError(t, RefuseChallengeHelp(&logical.Request{Operation: logical.ReadOperation, Path: "challenge/tok"}))
}
