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

// A wildcard is decided by the role's structure: *.R needs wildcards and subdomains allowed, and R
// an allowed base or under one. A bare allowed name must never make its parent's wildcard allowed.
func TestRoleWildcards(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		bases                  []string
		bare, subdomains, wild bool
		domain                 string
		want                   bool
	}{
		// The reported hole: a bare name x.team-x.test made *.team-x.test (every sibling) allowed.
		{"parent wildcard via a bare name", []string{"x.team-x.test"}, true, false, true, "*.team-x.test", false},
		{"parent wildcard with subdomains", []string{"x.team-x.test"}, true, true, true, "*.team-x.test", false},
		{"own wildcard without subdomains", []string{"x.team-x.test"}, true, false, true, "*.x.team-x.test", false},
		{"own wildcard", []string{"x.team-x.test"}, false, true, true, "*.x.team-x.test", true},
		{"deeper wildcard", []string{"x.team-x.test"}, false, true, true, "*.a.b.x.team-x.test", true},
		{"wildcards not allowed", []string{"x.team-x.test"}, true, true, false, "*.x.team-x.test", false},
		{"label boundary", []string{"x.team-x.test"}, true, true, true, "*.evilx.team-x.test", false},
		{"suffix without a dot", []string{"team-x.test"}, true, true, true, "*.xteam-x.test", false},
		{"sibling base", []string{"a.test", "b.test"}, false, true, true, "*.b.test", true},
		{"top-level wildcard", []string{"test"}, false, true, true, "*.test", true},
		{"top-level wildcard, other base", []string{"team-x.test"}, true, true, true, "*.test", false},
		{"bare name still allowed", []string{"x.team-x.test"}, true, false, true, "x.team-x.test", true},
		{"sibling not allowed", []string{"x.team-x.test"}, true, true, true, "y.team-x.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &RoleEntry{AllowedDomains: tc.bases, AllowBareDomains: tc.bare, AllowSubdomains: tc.subdomains, AllowWildcardCertificates: tc.wild}
			require.Equal(t, tc.want, r.AllowsDomain(tc.domain))
		})
	}
}
