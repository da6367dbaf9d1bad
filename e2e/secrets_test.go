package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSecretsNeverReadBack: raw HTTP answers for accounts and DNS configs (read and list) never
// contain the TSIG secret, the EAB HMAC key, any line of the account private key, or "PRIVATE KEY".
func TestSecretsNeverReadBack(t *testing.T) {
	c := env.RootClient(t)

	// An account with an imported private key (so the test knows it) and an external account
	// binding that Pebble accepts (env-up.sh configures the key).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	acctData := map[string]any{"private_key": keyPEM}
	if env.PebbleEABKID != "" {
		acctData["eab_kid"] = env.PebbleEABKID
		acctData["eab_hmac_key"] = env.PebbleEABHMACKey
	}
	env.CreateAccount(t, c, "sec-acct", acctData)
	env.CreateDNS(t, c, "sec-dns", nil)

	// The read shows what it should.
	acct := MustDo(t, c, http.MethodGet, Mount+"/accounts/sec-acct", nil)
	require.Equal(t, http.StatusOK, acct.Status, "%s", acct)
	if env.PebbleEABKID != "" {
		assert.Equal(t, env.PebbleEABKID, acct.Data["eab_kid"])
	}
	assert.Equal(t, "ec256", acct.Data["key_type"], "key_type of the imported P-256 key")
	dns := MustDo(t, c, http.MethodGet, Mount+"/config/dns/sec-dns", nil)
	require.Equal(t, http.StatusOK, dns.Status, "%s", dns)
	assert.ElementsMatch(t, []string{"RFC2136_NAMESERVER", "RFC2136_TSIG_KEY", "RFC2136_TSIG_ALGORITHM", "RFC2136_TSIG_SECRET"},
		asStrings(dns.Data["credential_keys"]), "credential_keys lists the names")
	assert.NotContains(t, dns.Data, "credentials")

	secrets := map[string]string{
		"TSIG secret":   env.TSIGSecret,
		"'PRIVATE KEY'": "PRIVATE KEY",
	}
	if env.PebbleEABHMACKey != "" {
		secrets["EAB HMAC key"] = env.PebbleEABHMACKey
	}
	for i, line := range strings.Split(strings.TrimSpace(keyPEM), "\n") {
		if strings.HasPrefix(line, "-----") {
			continue
		}
		secrets["private key line "+string(rune('0'+i))] = line
	}

	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "accounts/sec-acct"},
		{http.MethodGet, "accounts/?list=true"},
		{"LIST", "accounts"},
		{http.MethodGet, "config/dns/sec-dns"},
		{http.MethodGet, "config/dns/?list=true"},
		{"LIST", "config/dns"},
	} {
		r := MustDo(t, c, req.method, Mount+"/"+req.path, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s %s: %s", req.method, req.path, r)
		body := string(r.Body)
		for what, s := range secrets {
			assert.NotContainsf(t, body, s, "%s %s leaks the %s", req.method, req.path, what)
		}
		// JSON escapes '+' and '/' in nothing, but be safe about escaped forms of the base64 secret.
		assert.NotContains(t, body, strings.ReplaceAll(env.TSIGSecret, "/", `\/`))
	}
}
