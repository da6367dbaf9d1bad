package provider

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/go-acme/lego/v4/challenge"
	legolog "github.com/go-acme/lego/v4/log"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/testproviders"
)

// Test-only providers. This file is compiled only into this package's test
// binary, which doubles as the dns-solver child in the tests.
func init() {
	extraProviders = map[string]func() (challenge.Provider, error){
		"test-envprobe": func() (challenge.Provider, error) { return envProbe{}, nil },
		"test-echo":     newEcho,
		"test-panic":    func() (challenge.Provider, error) { return panicker{}, nil },
		"test-urlerr":   newURLErr,
	}
	// The parent accepts these names and credential names.
	testproviders.Env = map[string][]string{
		"test-envprobe": {"PROBE_TOKEN", "PROBE_TTL", "TEST_ENVPROBE_TTL"},
		"test-echo":     {"ECHO_SECRET", "ECHO_FAIL_CONFIG"},
		"test-panic":    {},
		"test-urlerr":   {"URLERR_PASSWORD"},
	}
}

// urlErr fails like lego's cloudns on a network error: a *url.Error whose
// URL carries the password in its query, wrapped; and it logs the password
// in several encodings.
type urlErr struct{ secret string }

func newURLErr() (challenge.Provider, error) {
	return urlErr{secret: os.Getenv("URLERR_PASSWORD")}, nil
}

func (u urlErr) Present(domain, _, _ string) error {
	q := url.Values{"auth-id": {"1"}, "auth-password": {u.secret}}.Encode()
	j, _ := json.Marshal(map[string]string{"password": u.secret})
	legolog.Infof("[%s] urlerr: body %s; quoted %s; basic %s", domain, j, strconv.Quote(u.secret), base64.StdEncoding.EncodeToString([]byte(u.secret)))
	ue := &url.Error{
		Op:  "Get",
		URL: "https://api.cloudns.net/dns/add-record.json?" + q,
		Err: errors.New("dial tcp: lookup api.cloudns.net: no such host"),
	}
	return fmt.Errorf("urlerr: could not add record: %w; path %s; raw %s", ue, url.PathEscape(u.secret), u.secret)
}
func (urlErr) CleanUp(string, string, string) error { return nil }

// envProbe reports the child's pid, environment variable names and TMPDIR
// through its errors.
type envProbe struct{}

func (envProbe) report() error {
	var keys []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	sort.Strings(keys)
	wd, _ := os.Getwd()
	return fmt.Errorf("pid=%d tmpdir=%s cwd=%s env=%s", os.Getpid(), os.Getenv("TMPDIR"), wd, strings.Join(keys, ","))
}

func (p envProbe) Present(_, _, _ string) error { return p.report() }
func (p envProbe) CleanUp(_, _, _ string) error { return p.report() }

// echo puts its ECHO_SECRET credential into errors and logs.
type echo struct{ secret string }

func newEcho() (challenge.Provider, error) {
	s := os.Getenv("ECHO_SECRET")
	if s == "" {
		return nil, errors.New("echo: some credentials information are missing: ECHO_SECRET")
	}
	if os.Getenv("ECHO_FAIL_CONFIG") != "" {
		return nil, fmt.Errorf("echo: secret %s was rejected", s)
	}
	return echo{secret: s}, nil
}

func (e echo) Present(domain, _, _ string) error {
	legolog.Infof("[%s] echo: presenting with secret %s", domain, e.secret)
	return fmt.Errorf("echo: API rejected token %s for %s", e.secret, domain)
}
func (e echo) CleanUp(string, string, string) error { return nil }

type panicker struct{}

func (panicker) Present(string, string, string) error { panic("provider bug") }
func (panicker) CleanUp(string, string, string) error { return nil }
