package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProviderErrorsDoNotLeakCredentials: a DNS provider that puts its password in a URL query
// (lego's cloudns) fails on a network error (no route to its API here). The tenant's write and
// read, the operator's status listing and the Vault log show no encoding of the password; the
// tenant sees which name failed and a reference to the log.
func TestProviderErrorsDoNotLeakCredentials(t *testing.T) {
	const password = `Pa$$ w0rd/+=&?"<>\tail`
	root := env.RootClient(t)
	env.CreateAccount(t, root, "leak-acct", nil)
	MustWrite(t, root, Mount+"/config/dns/leak-dns", map[string]any{
		"provider":    "cloudns",
		"credentials": map[string]any{"CLOUDNS_AUTH_ID": "424242", "CLOUDNS_AUTH_PASSWORD": password},
		"zones":       "leak." + env.Zone,
		// Zone discovery asks BIND, so lego gets as far as calling the ClouDNS API, whose URL
		// carries the password in its query, and fails there (no route).
		"resolvers": env.DNSAddr,
	})
	CreateRole(t, root, "leak", map[string]any{
		"account": "leak-acct", "dns": "leak-dns", "allowed_domains": "leak." + env.Zone,
		"allow_subdomains": true, "allowed_cert_names": "leak/*",
	})
	tenant := teamToken(t, root, "leak")

	jsonQuoted, err := json.Marshal(password)
	require.NoError(t, err)
	encodings := map[string]string{
		"literal":        password,
		"query-escaped":  url.QueryEscape(password),
		"path-escaped":   url.PathEscape(password),
		"Go-quoted":      strings.Trim(strconv.Quote(password), `"`),
		"JSON-escaped":   strings.Trim(string(jsonQuoted), `"`),
		"base64":         base64.StdEncoding.EncodeToString([]byte(password)),
		"base64url":      base64.RawURLEncoding.EncodeToString([]byte(password)),
		"prefix escaped": "Pa%24%24",
		"distinctive":    "w0rd",
	}
	assertClean := func(where, text string) {
		t.Helper()
		for enc, v := range encodings {
			assert.NotContainsf(t, text, v, "%s holds the password (%s)", where, enc)
		}
		assert.NotContains(t, text, "auth-password", where)
	}

	w := MustDo(t, tenant, http.MethodPut, Mount+"/certs/leak/www", map[string]any{"role": "leak", "domains": "www.leak." + env.Zone, "wait": "20s"})
	assertClean("the write's answer", string(w.Body))

	var read *Resp
	require.Eventually(t, func() bool {
		read = MustDo(t, tenant, http.MethodGet, Mount+"/certs/leak/www?wait=0", nil)
		return read.FailedAttempt()
	}, 60*time.Second, time.Second, "the attempt fails")
	msg := read.ErrorText()
	t.Logf("tenant sees: %s", msg)
	assertClean("the tenant's read", string(read.Body))
	assert.Contains(t, msg, "www.leak."+env.Zone, "names the failing name")
	assert.Contains(t, msg, "ref ", "gives the operator a reference")

	st := MustDo(t, root, http.MethodGet, Mount+"/status/certs", nil)
	require.Equal(t, http.StatusOK, st.Status, "%s", st)
	assert.Contains(t, string(st.Body), "leak/www", "status/certs lists the failing certificate")
	assertClean("status/certs", string(st.Body))

	logBytes, err := os.ReadFile(filepath.Join(env.StateDir, "vault.log"))
	require.NoError(t, err)
	logText := string(logBytes)
	assert.Contains(t, logText, "api.cloudns.net", "the provider got as far as calling its API")
	assertClean("the Vault log", logText)
	ref := msg[strings.Index(msg, "ref ")+4:]
	ref = ref[:strings.IndexAny(ref, ": )")]
	assert.Contains(t, logText, ref, "the log line with the details carries the reference %s", ref)
}
