package solvers

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/dnstest"
)

const testKeyAuth = "token-abc.thumbprint-xyz"

func newChecker(resolvers ...string) *propagationChecker {
	return &propagationChecker{
		resolvers:       resolvers,
		systemResolvers: func() ([]string, error) { return nil, errors.New("no system resolvers in this test") },
		authPort:        "53",
		logger:          hclog.NewNullLogger(),
	}
}

func TestWaitPropagationAppearsLater(t *testing.T) {
	srv := dnstest.Start(t, "example.test.")
	fqdn, value := ChallengeRecord("www.example.test", testKeyAuth)
	srv.SetTXT(fqdn, "stale-value", value)
	srv.HideTXT(2) // the first two polls see nothing

	start := time.Now()
	err := newChecker(srv.Addr).wait(context.Background(), "www.example.test", testKeyAuth, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, srv.TXTQueries(), 3)
	// 50ms + 75ms of back-off at least.
	assert.GreaterOrEqual(t, time.Since(start), 120*time.Millisecond)
}

func TestWaitPropagationWildcardUsesBaseName(t *testing.T) {
	srv := dnstest.Start(t, "example.test.")
	_, value := ChallengeRecord("example.test", testKeyAuth)
	srv.SetTXT("_acme-challenge.example.test.", value)
	err := newChecker(srv.Addr).wait(context.Background(), "*.example.test", testKeyAuth, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, err)
}

func TestWaitPropagationFollowsCNAME(t *testing.T) {
	srv := dnstest.Start(t, "example.test.")
	_, value := ChallengeRecord("www.example.test", testKeyAuth)
	srv.SetCNAME("_acme-challenge.www.example.test.", "_acme-challenge.delegated.example.test.")
	srv.SetCNAME("_acme-challenge.delegated.example.test.", "final.delegated.example.test.")
	srv.SetTXT("final.delegated.example.test.", value)

	err := newChecker(srv.Addr).wait(context.Background(), "www.example.test", testKeyAuth, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, err)
}

func TestWaitPropagationTimeoutNamesResolvers(t *testing.T) {
	good := dnstest.Start(t, "example.test.")
	bad := dnstest.Start(t, "example.test.")
	fqdn, value := ChallengeRecord("www.example.test", testKeyAuth)
	good.SetTXT(fqdn, value)
	bad.SetTXT(fqdn, "some-other-value")

	// A resolver nobody listens on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	silent := pc.LocalAddr().String()
	t.Cleanup(func() { _ = pc.Close() })

	err = newChecker(good.Addr, bad.Addr, silent).wait(context.Background(), "www.example.test", testKeyAuth, 1500*time.Millisecond, 50*time.Millisecond)
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, "www.example.test")
	assert.Contains(t, msg, "timed out")
	assert.Contains(t, msg, bad.Addr)
	assert.Contains(t, msg, "none with the expected value")
	assert.Contains(t, msg, silent)
	assert.NotContains(t, msg, good.Addr, "a resolver that saw the record is not named")
	assert.NotContains(t, msg, testKeyAuth)
	assert.True(t, errors.Is(err, context.DeadlineExceeded))
}

func TestWaitPropagationCanceled(t *testing.T) {
	srv := dnstest.Start(t, "example.test.")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err := newChecker(srv.Addr).wait(ctx, "www.example.test", testKeyAuth, time.Minute, 20*time.Millisecond)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled))
	assert.Contains(t, err.Error(), srv.Addr)
	assert.Contains(t, err.Error(), "no TXT record")
}

func TestWaitPropagationAuthoritative(t *testing.T) {
	srv := dnstest.Start(t, "example.test.")
	_, port, err := net.SplitHostPort(srv.Addr)
	require.NoError(t, err)
	fqdn, value := ChallengeRecord("www.example.test", testKeyAuth)
	srv.SetTXT(fqdn, value)
	srv.HideTXT(1)

	c := newChecker()
	c.systemResolvers = func() ([]string, error) { return []string{srv.Addr}, nil }
	c.authPort = port
	require.NoError(t, c.wait(context.Background(), "www.example.test", testKeyAuth, 5*time.Second, 20*time.Millisecond))

	// Not there: the error names the authoritative nameserver.
	err = c.wait(context.Background(), "other.example.test", testKeyAuth, 300*time.Millisecond, 20*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ns1.example.test. (127.0.0.1:"+port+")")
	assert.Contains(t, err.Error(), "other.example.test")

	// No system resolvers: the error says why.
	err = newChecker().wait(context.Background(), "www.example.test", testKeyAuth, 200*time.Millisecond, 20*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "authoritative nameservers of _acme-challenge.www.example.test.")
	assert.Contains(t, err.Error(), "no system resolvers in this test")
}

func TestWaitPropagationAuthoritativeFollowsCNAME(t *testing.T) {
	srv := dnstest.Start(t, "example.test.")
	_, port, err := net.SplitHostPort(srv.Addr)
	require.NoError(t, err)
	_, value := ChallengeRecord("www.example.test", testKeyAuth)
	srv.SetCNAME("_acme-challenge.www.example.test.", "txt.acme.example.test.")
	srv.SetTXT("txt.acme.example.test.", value)

	c := newChecker()
	c.systemResolvers = func() ([]string, error) { return []string{srv.Addr}, nil }
	c.authPort = port
	require.NoError(t, c.wait(context.Background(), "www.example.test", testKeyAuth, 5*time.Second, 20*time.Millisecond))
}

func TestWaitPropagationBadDomain(t *testing.T) {
	err := newChecker("127.0.0.1:1").wait(context.Background(), "", testKeyAuth, time.Second, time.Millisecond)
	assert.True(t, IsConfigError(err))
}
