package provider_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/dnstest"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/provider"
)

// TestMain lets the test binary act as the dns-solver child: the factory
// re-runs os.Executable() with the "dns-solver" argument.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == provider.Subcommand {
		provider.Serve() // never returns
	}
	os.Exit(m.Run())
}

// syncBuffer collects the parent's log output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFactory(t *testing.T, opts ...solvers.Option) (*solvers.ProcessFactory, *syncBuffer) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	logs := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Trace, Output: logs})
	f := solvers.NewProcessFactory(exe, logger, opts...)
	t.Cleanup(f.Close)
	return f, logs
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

const (
	tsigKey       = "tsig-key."
	tsigAlgorithm = "hmac-sha256."
)

var tsigSecret = base64.StdEncoding.EncodeToString([]byte("vault-plugin-test-tsig-secret-32b"))

func rfc2136Config(srv *dnstest.Server, secret string) solvers.DNSConfig {
	return solvers.DNSConfig{
		Provider: "rfc2136",
		Credentials: map[string]string{
			"RFC2136_NAMESERVER":     srv.Addr,
			"RFC2136_TSIG_KEY":       tsigKey,
			"RFC2136_TSIG_ALGORITHM": tsigAlgorithm,
			"RFC2136_TSIG_SECRET":    secret,
		},
		Resolvers:          []string{srv.Addr},
		TTL:                60,
		PropagationTimeout: 10 * time.Second,
		PollingInterval:    50 * time.Millisecond,
	}
}

func TestRFC2136EndToEnd(t *testing.T) {
	ctx := testCtx(t)
	srv := dnstest.Start(t, "example.test.", dnstest.WithTSIG(tsigKey, dns.HmacSHA256, tsigSecret))
	f, logs := newFactory(t)
	cfg := rfc2136Config(srv, tsigSecret)

	require.NoError(t, f.Check(ctx, cfg))
	s, err := f.Solver(ctx, "dns/internal", cfg)
	require.NoError(t, err)

	type chal struct{ domain, token, keyAuth string }
	chals := []chal{
		{"www.example.test", "token-www", "token-www.thumb"},
		{"*.example.test", "token-wild", "token-wild.thumb"},
	}

	// Present for all names of one order runs concurrently; lego's 60s
	// Sequential() interval for rfc2136 must not apply.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(chals))
	for i, c := range chals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Present(ctx, c.domain, c.token, c.keyAuth)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Less(t, time.Since(start), 20*time.Second)

	for _, c := range chals {
		fqdn, value := solvers.ChallengeRecord(c.domain, c.keyAuth)
		assert.Equal(t, []dnstest.Record{{Value: value, TTL: 60}}, srv.TXT(fqdn), c.domain)
	}
	// The wildcard's record lives at the base name.
	assert.Len(t, srv.TXT("_acme-challenge.example.test."), 1)

	for _, c := range chals {
		require.NoError(t, s.WaitPropagation(ctx, c.domain, c.keyAuth))
	}

	for _, c := range chals {
		require.NoError(t, s.CleanUp(ctx, c.domain, c.token, c.keyAuth))
		fqdn, _ := solvers.ChallengeRecord(c.domain, c.keyAuth)
		assert.Empty(t, srv.TXT(fqdn), c.domain)
	}
	applied, bad := srv.Updates()
	assert.Equal(t, 4, applied)
	assert.Zero(t, bad)

	assert.NotContains(t, logs.String(), tsigSecret)
	assert.NotContains(t, logs.String(), "token-www.thumb", "key authorizations are never logged")
}

func TestRFC2136WrongSecretIsRedacted(t *testing.T) {
	ctx := testCtx(t)
	srv := dnstest.Start(t, "example.test.", dnstest.WithTSIG(tsigKey, dns.HmacSHA256, tsigSecret))
	f, logs := newFactory(t)
	wrong := base64.StdEncoding.EncodeToString([]byte("a-different-secret-for-the-test!!"))
	cfg := rfc2136Config(srv, wrong)

	s, err := f.Solver(ctx, "dns/wrong", cfg)
	require.NoError(t, err)
	err = s.Present(ctx, "www.example.test", "tok", "tok.thumb")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "www.example.test")
	assert.NotContains(t, err.Error(), wrong)
	assert.False(t, solvers.IsConfigError(err))
	_, bad := srv.Updates()
	assert.Equal(t, 1, bad)
	assert.NotContains(t, logs.String(), wrong)
}

func TestCheckConfigErrors(t *testing.T) {
	ctx := testCtx(t)
	srv := dnstest.Start(t, "example.test.")
	f, logs := newFactory(t)

	// Missing nameserver: lego names the variable. (lego v4.35 names the
	// canonical DNSUPDATE_NAMESERVER; RFC2136_NAMESERVER is its alias.)
	cfg := rfc2136Config(srv, tsigSecret)
	delete(cfg.Credentials, "RFC2136_NAMESERVER")
	err := f.Check(ctx, cfg)
	require.Error(t, err)
	var ce *solvers.ConfigError
	require.True(t, errors.As(err, &ce), "got %T: %v", err, err)
	assert.Contains(t, err.Error(), "some credentials information are missing")
	assert.Contains(t, err.Error(), "_NAMESERVER")
	assert.NotContains(t, err.Error(), tsigSecret)

	// Unknown provider.
	err = f.Check(ctx, solvers.DNSConfig{Provider: "nope"})
	require.True(t, errors.As(err, &ce), "got %T: %v", err, err)
	assert.Equal(t, `provider "nope" is not a lego DNS provider`, err.Error())

	// Solver reports the same kind of error.
	_, err = f.Solver(ctx, "dns/nope", solvers.DNSConfig{Provider: "nope"})
	assert.True(t, solvers.IsConfigError(err), "got %v", err)

	// Forbidden providers and credential names are refused before a child starts.
	for _, p := range []string{"exec", "manual"} {
		err = f.Check(ctx, solvers.DNSConfig{Provider: p})
		assert.True(t, solvers.IsConfigError(err), p)
		_, err = f.Solver(ctx, "k", solvers.DNSConfig{Provider: p})
		assert.True(t, solvers.IsConfigError(err), p)
	}
	err = f.Check(ctx, solvers.DNSConfig{Provider: "rfc2136", Credentials: map[string]string{"RFC2136_TSIG_FILE": "/etc/passwd"}})
	assert.True(t, solvers.IsConfigError(err))
	assert.NotContains(t, err.Error(), "/etc/passwd")

	// A provider error that quotes a credential comes back redacted.
	secret := "echo-secret-value-42"
	err = f.Check(ctx, solvers.DNSConfig{Provider: "test-echo", Credentials: map[string]string{"ECHO_SECRET": secret, "ECHO_FAIL_CONFIG": "yes"}})
	require.True(t, solvers.IsConfigError(err), "got %v", err)
	assert.Equal(t, "echo: secret [redacted] was rejected", err.Error())

	require.NoError(t, f.Check(ctx, rfc2136Config(srv, tsigSecret)))
	assert.NotContains(t, logs.String(), tsigSecret)
	assert.NotContains(t, logs.String(), secret)
}

func TestProviderErrorsAndLogsAreRedacted(t *testing.T) {
	ctx := testCtx(t)
	f, logs := newFactory(t)
	secret := "echo-secret-value-43"
	s, err := f.Solver(ctx, "echo", solvers.DNSConfig{Provider: "test-echo", Credentials: map[string]string{"ECHO_SECRET": secret}})
	require.NoError(t, err)
	err = s.Present(ctx, "www.example.test", "tok", "tok.thumb")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "echo: API rejected token [redacted] for www.example.test")
	assert.NotContains(t, err.Error(), secret)

	// The child logged the secret through lego's logger; the parent's log
	// received the line, redacted.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "echo: presenting with secret") }, 10*time.Second, 20*time.Millisecond)
	assert.NotContains(t, logs.String(), secret)
	assert.Contains(t, logs.String(), "[redacted]")
}

func TestProviderPanicDoesNotKillChild(t *testing.T) {
	ctx := testCtx(t)
	f, _ := newFactory(t)
	s, err := f.Solver(ctx, "panic", solvers.DNSConfig{Provider: "test-panic"})
	require.NoError(t, err)
	for range 2 {
		err = s.Present(ctx, "www.example.test", "tok", "tok.thumb")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "panicked")
	}
}

var probeRE = regexp.MustCompile(`pid=(\d+) tmpdir=(\S*) cwd=(\S*) env=(\S*)`)

type probe struct {
	pid, tmpdir, cwd string
	env              []string
}

func runProbe(t *testing.T, s solvers.Solver) probe {
	t.Helper()
	err := s.Present(testCtx(t), "www.example.test", "tok", "tok.thumb")
	require.Error(t, err)
	m := probeRE.FindStringSubmatch(err.Error())
	require.NotNil(t, m, "unexpected probe output: %v", err)
	return probe{pid: m[1], tmpdir: m[2], cwd: m[3], env: strings.Split(m[4], ",")}
}

func probeConfig(token string) solvers.DNSConfig {
	return solvers.DNSConfig{Provider: "test-envprobe", Credentials: map[string]string{"PROBE_TOKEN": token}, TTL: 30}
}

func TestChildEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "host-secret")
	t.Setenv("VAULT_TOKEN", "host-vault-token")
	t.Setenv("RFC2136_TSIG_SECRET", "host-tsig")
	ctx := testCtx(t)
	f, _ := newFactory(t)

	s, err := f.Solver(ctx, "probe", probeConfig("probe-value-1"))
	require.NoError(t, err)
	p := runProbe(t, s)

	want := []string{
		"AWS_CONFIG_FILE",
		"AWS_EC2_METADATA_DISABLED",
		"AWS_SHARED_CREDENTIALS_FILE",
		"GCE_METADATA_HOST",
		"HOME",
		"LETSENCRYPT_VAULT_DNS_SOLVER_COOKIE",
		"PLUGIN_CLIENT_CERT",
		"PLUGIN_MAX_PORT",
		"PLUGIN_MIN_PORT",
		"PLUGIN_PROTOCOL_VERSIONS",
		"PROBE_TOKEN",
		"PROBE_TTL",
		"TEST_ENVPROBE_TTL",
		"TMPDIR",
	}
	assert.Equal(t, want, p.env)
	assert.NotContains(t, p.env, "AWS_ACCESS_KEY_ID")
	assert.NotContains(t, p.env, "PATH")

	// TMPDIR is a private directory, also the working directory.
	assert.Equal(t, p.tmpdir, p.cwd)
	st, err := os.Stat(p.tmpdir)
	require.NoError(t, err)
	assert.True(t, st.IsDir())
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())

	f.Evict("probe")
	_, err = os.Stat(p.tmpdir)
	assert.True(t, os.IsNotExist(err), "private directory removed on Evict")
}

func processGone(pid string) bool {
	var n int
	for _, c := range pid {
		n = n*10 + int(c-'0')
	}
	return errors.Is(syscall.Kill(n, 0), syscall.ESRCH)
}

func TestChildReuseRestartEvict(t *testing.T) {
	ctx := testCtx(t)
	f, _ := newFactory(t)

	// Concurrent Solver calls for one key share one child.
	var wg sync.WaitGroup
	solverList := make([]solvers.Solver, 8)
	for i := range solverList {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := f.Solver(ctx, "probe", probeConfig("probe-value-1"))
			assert.NoError(t, err)
			solverList[i] = s
		}()
	}
	wg.Wait()
	var pids []string
	for _, s := range solverList {
		require.NotNil(t, s)
		pids = append(pids, runProbe(t, s).pid)
	}
	slices.Sort(pids)
	assert.Len(t, slices.Compact(pids), 1, "one child per key")
	first := pids[0]

	// Unchanged config: the running child is reused.
	same, err := f.Solver(ctx, "probe", probeConfig("probe-value-1"))
	require.NoError(t, err)
	assert.Equal(t, first, runProbe(t, same).pid)

	// Another key gets its own child.
	other, err := f.Solver(ctx, "probe-2", probeConfig("probe-value-1"))
	require.NoError(t, err)
	assert.NotEqual(t, first, runProbe(t, other).pid)

	// Changed config: the child is restarted, and the stale solver refuses
	// to run with the old configuration.
	changed, err := f.Solver(ctx, "probe", probeConfig("probe-value-2"))
	require.NoError(t, err)
	second := runProbe(t, changed).pid
	assert.NotEqual(t, first, second)
	require.Eventually(t, func() bool { return processGone(first) }, 10*time.Second, 20*time.Millisecond)
	err = same.Present(ctx, "www.example.test", "tok", "tok.thumb")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "changed")

	// Evict stops the child; the solver starts a new one when used again.
	f.Evict("probe")
	assert.True(t, processGone(second))
	third := runProbe(t, changed).pid
	assert.NotEqual(t, second, third)

	// Close stops everything; solvers then fail.
	f.Close()
	assert.True(t, processGone(third))
	err = changed.Present(ctx, "www.example.test", "tok", "tok.thumb")
	assert.ErrorIs(t, err, solvers.ErrFactoryClosed)
	_, err = f.Solver(ctx, "probe", probeConfig("probe-value-2"))
	assert.ErrorIs(t, err, solvers.ErrFactoryClosed)
	assert.ErrorIs(t, f.Check(ctx, probeConfig("x")), solvers.ErrFactoryClosed)
}

func TestIdleChildIsStopped(t *testing.T) {
	ctx := testCtx(t)
	f, _ := newFactory(t, solvers.WithIdleTimeout(300*time.Millisecond))
	s, err := f.Solver(ctx, "probe", probeConfig("probe-value-1"))
	require.NoError(t, err)
	first := runProbe(t, s).pid
	require.Eventually(t, func() bool { return processGone(first) }, 10*time.Second, 50*time.Millisecond)
	// The solver transparently starts a new child.
	assert.NotEqual(t, first, runProbe(t, s).pid)
}

func TestChildCrashIsRecovered(t *testing.T) {
	ctx := testCtx(t)
	f, _ := newFactory(t)
	s, err := f.Solver(ctx, "probe", probeConfig("probe-value-1"))
	require.NoError(t, err)
	first := runProbe(t, s).pid
	var n int
	for _, c := range first {
		n = n*10 + int(c-'0')
	}
	require.NoError(t, syscall.Kill(n, syscall.SIGKILL))
	require.Eventually(t, func() bool { return processGone(first) }, 10*time.Second, 20*time.Millisecond)
	// At most one call fails while the crash is noticed; then a new child serves.
	var p probe
	require.Eventually(t, func() bool {
		err := s.Present(ctx, "www.example.test", "tok", "tok.thumb")
		m := probeRE.FindStringSubmatch(err.Error())
		if m == nil {
			return false
		}
		p.pid = m[1]
		return true
	}, 20*time.Second, 50*time.Millisecond)
	assert.NotEqual(t, first, p.pid)
}

func TestServeWithoutCookieExits(t *testing.T) {
	// Running the child mode by hand (no handshake cookie) refuses to serve.
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := execCommand(exe, provider.Subcommand)
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "This binary is a plugin")
}

// nastySecret has a character of every class an encoder treats specially.
const nastySecret = `Pa$$ w0rd/+=&?"<>\`

func TestProviderURLErrorsLoseQueryAndSecrets(t *testing.T) {
	ctx := testCtx(t)
	f, logs := newFactory(t)
	s, err := f.Solver(ctx, "urlerr", solvers.DNSConfig{Provider: "test-urlerr", Credentials: map[string]string{"URLERR_PASSWORD": nastySecret}})
	require.NoError(t, err)
	err = s.Present(ctx, "www.example.test", "tok", "tok.thumb")
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, `Get "https://api.cloudns.net/dns/add-record.json?[query removed]": dial tcp: lookup api.cloudns.net: no such host`)
	for _, leak := range []string{"auth-password", "auth-id", "Pa$$", "w0rd", "Pa%24%24"} {
		assert.NotContains(t, msg, leak)
	}

	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "urlerr: body") }, 10*time.Second, 20*time.Millisecond)
	for _, leak := range []string{"w0rd", "Pa$$", base64.StdEncoding.EncodeToString([]byte(nastySecret))} {
		assert.NotContains(t, logs.String(), leak)
	}
}
