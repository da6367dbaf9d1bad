package storage

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoleAllows(t *testing.T) {
	r := &RoleEntry{AllowedDomains: []string{"example.com"}, AllowSubdomains: true, AllowedCertNames: []string{"team-a/*", "shared"}}
	require.True(t, r.AllowsDomain("www.example.com"))
	require.True(t, r.AllowsDomain("a.b.example.com"))
	require.False(t, r.AllowsDomain("example.com"), "bare domain needs allow_bare_domains")
	require.False(t, r.AllowsDomain("badexample.com"), "label boundary")
	require.False(t, r.AllowsDomain("*.example.com"), "wildcards need allow_wildcard_certificates")
	r.AllowWildcardCertificates, r.AllowBareDomains = true, true
	require.True(t, r.AllowsDomain("*.example.com"))
	require.True(t, r.AllowsDomain("example.com"))
	require.False(t, r.AllowsDomain("*.com"))

	require.True(t, r.AllowsCertName("team-a/www"))
	require.True(t, r.AllowsCertName("team-a/x/y"))
	require.True(t, r.AllowsCertName("shared"))
	require.False(t, r.AllowsCertName("team-b/www"))
	require.False(t, r.AllowsCertName("shared2"))
	require.False(t, r.AllowsCertName("team-a"))
}
