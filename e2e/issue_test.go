package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIssueEndToEnd issues a certificate for www.example.test and *.example.test through the
// plugin (account at Pebble, DNS-01 through rfc2136 to BIND) and checks it with crypto/x509.
func TestIssueEndToEnd(t *testing.T) {
	c := env.RootClient(t)
	name := Unique("web")
	is := env.SetupIssuer(t, c, name, nil, map[string]any{
		"allowed_domains":             env.Zone,
		"allow_subdomains":            true,
		"allow_wildcard_certificates": true,
		"allowed_cert_names":          "*",
	})

	// The account is registered at Pebble and its read shows no secrets.
	acct := MustDo(t, c, http.MethodGet, Mount+"/accounts/"+is.Account, nil)
	require.Equal(t, http.StatusOK, acct.Status, "%s", acct)
	assert.Equal(t, env.PebbleDirectory, acct.Data["directory_url"])
	assert.Equal(t, true, acct.Data["terms_of_service_agreed"])
	assert.Equal(t, "ec256", acct.Data["key_type"], "default key_type")
	assert.Contains(t, fmt.Sprint(acct.Data["account_url"]), strings.TrimSuffix(env.PebbleDirectory, "/dir")+"/", "account_url at Pebble")
	assert.Equal(t, "valid", acct.Data["status"])
	assert.NotContains(t, acct.Data, "private_key")
	assert.NotContains(t, acct.Data, "eab_hmac_key")

	domains := []string{"www." + env.Zone, "*." + env.Zone}
	start := time.Now()
	cert := IssueCert(t, c, name, map[string]any{"role": is.Role, "domains": strings.Join(domains, ",")}, 3*time.Minute)
	t.Logf("certificate issued in %s", time.Since(start).Round(time.Millisecond))

	// Leaf: names, subject, validity, key.
	leaf := cert.Leaf
	assert.ElementsMatch(t, domains, leaf.DNSNames, "SANs")
	// Pebble's default profile (env-up.sh) promotes the CSR's first name to the subject CN, like
	// Let's Encrypt's classic profile.
	assert.Equal(t, domains[0], leaf.Subject.CommonName, "the first domain is the subject")
	require.NoError(t, leaf.VerifyHostname("www."+env.Zone))
	require.NoError(t, leaf.VerifyHostname("anything."+env.Zone), "wildcard covers other names")
	assert.True(t, KeyMatches(cert.Key, leaf), "private_key matches the certificate's public key")
	assert.Equal(t, "ec256", KeyType(leaf.PublicKey), "role default key type")
	assert.Equal(t, 90*24*time.Hour, leaf.NotAfter.Sub(leaf.NotBefore).Round(time.Hour), "Pebble profile %q (90 days)", DefaultProfile)

	// Chain: leaf -> ca_chain intermediates -> Pebble's root from /roots/0.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := env.PebbleRoot(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, cert.CAChain, "ca_chain")
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, ca := range cert.CAChain {
		inter.AddCert(ca)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       "www." + env.Zone,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	require.NoError(t, err, "leaf must chain to Pebble's root through ca_chain")
	require.NotEmpty(t, chains)
	if cert.IssuingCA != nil {
		assert.Equal(t, leaf.RawIssuer, cert.IssuingCA.RawSubject, "issuing_ca issued the leaf")
		assert.NoError(t, leaf.CheckSignatureFrom(cert.IssuingCA))
	}

	// Metadata agrees with the certificate.
	d := cert.Data
	assert.True(t, SerialMatches(cert.SerialNumber, leaf), "serial_number %q vs %s", cert.SerialNumber, leaf.SerialNumber.Text(16))
	assert.Equal(t, leaf.NotAfter.Unix(), asInt64(t, d["expiration"]), "expiration")
	assert.Equal(t, "valid", d["status"])
	assert.Equal(t, is.Role, d["role"])
	assert.Equal(t, DefaultProfile, d["profile"], "profile from the role")
	assert.ElementsMatch(t, domains, asStrings(d["domains"]), "domains")
	assert.NotEmpty(t, d["private_key_type"])
	assert.Empty(t, d["last_error"])
	for _, k := range []string{"not_before", "not_after"} {
		assert.NotEmpty(t, d[k], k)
	}

	// Writing the same thing again gives the same certificate (no new order).
	again := IssueCert(t, c, name, map[string]any{"role": is.Role, "domains": strings.Join(domains, ",")}, time.Minute)
	assert.Equal(t, leaf.SerialNumber, again.Leaf.SerialNumber, "a repeated identical write must not order again")

	// Listed.
	assert.Contains(t, List(t, c, Mount+"/certs"), name)

	// The real vault CLI reads the same certificate.
	out, _, err := env.CLI(ctx, env.VaultToken, "read", "-format=json", Mount+"/certs/"+name)
	require.NoError(t, err)
	var cli struct {
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &cli), "vault read -format=json output: %s", out)
	assert.Equal(t, d["certificate"], cli.Data["certificate"], "CLI and API read the same certificate")
	assert.Equal(t, d["serial_number"], cli.Data["serial_number"])
	field, _, err := env.CLI(ctx, env.VaultToken, "read", "-field=certificate", Mount+"/certs/"+name)
	require.NoError(t, err)
	fc, err := ParseCertsPEM(field)
	require.NoError(t, err)
	assert.Equal(t, leaf.Raw, fc[0].Raw)
}

func asInt64(t testing.TB, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		require.NoError(t, err)
		return n
	case float64:
		return int64(x)
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		require.NoError(t, err, "number %q", x)
		return n
	}
	require.FailNowf(t, "not a number", "%T %v", v, v)
	return 0
}

func asStrings(v any) []string {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, s := range x {
			out = append(out, fmt.Sprint(s))
		}
		return out
	case []string:
		return x
	case string:
		if x == "" {
			return nil
		}
		return strings.Split(x, ",")
	}
	return nil
}
