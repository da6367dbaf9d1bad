package provider

import (
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/dnstest"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/wire"
)

// The child cleans its error text itself, before it crosses the wire; the
// parent cleans it again (tested in provider_test.go).
func TestChildCleansErrorsBeforeSending(t *testing.T) {
	secret := `Pa$$ w0rd/+=&?"<>\`
	t.Setenv("URLERR_PASSWORD", secret)
	srv := dnstest.Start(t, "example.test.")
	s := newService(hclog.NewNullLogger())
	res := s.Configure(wire.ConfigureArgs{Provider: "test-urlerr", Resolvers: []string{srv.Addr}, CredentialKeys: []string{"URLERR_PASSWORD"}})
	require.Empty(t, res.Err)
	t.Cleanup(s.current().resolver.close)

	res = s.Present(wire.ChallengeArgs{Domain: "www.example.test", Token: "tok", KeyAuth: "tok.thumb"})
	require.NotEmpty(t, res.Err)
	assert.False(t, res.ConfigErr)
	assert.Contains(t, res.Err, "https://api.cloudns.net/dns/add-record.json?[query removed]")
	assert.Contains(t, res.Err, "[redacted]")
	for _, leak := range []string{"auth-password", "Pa$$", "w0rd", "Pa%24%24"} {
		assert.NotContains(t, res.Err, leak)
	}
}
