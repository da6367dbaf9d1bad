package provider_test

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/dnstest"
)

// twoZones starts an authoritative server for the configuration's zone
// example.test and one for another team's zone other.test, both accepting
// updates signed with the test key. The configuration asks both as its
// resolvers (lego, and the child's resolver, ask them in turn).
func twoZones(t *testing.T) (mine, theirs *dnstest.Server, cfg solvers.DNSConfig) {
	t.Helper()
	mine = dnstest.Start(t, "example.test.", dnstest.WithTSIG(tsigKey, dns.HmacSHA256, tsigSecret))
	theirs = dnstest.Start(t, "other.test.", dnstest.WithTSIG(tsigKey, dns.HmacSHA256, tsigSecret))
	cfg = rfc2136Config(mine, tsigSecret)
	cfg.Resolvers = []string{mine.Addr, theirs.Addr}
	cfg.Zones = []string{"example.test"}
	return mine, theirs, cfg
}

func updates(s *dnstest.Server) int {
	n, _ := s.Updates()
	return n
}

func TestCNAMEInsideZonesIsFollowed(t *testing.T) {
	ctx := testCtx(t)
	mine, _, cfg := twoZones(t)
	cfg.Resolvers = []string{mine.Addr} // every resolver must see the record
	// A chain of CNAMEs that stays in the configuration's zone.
	mine.SetCNAME("_acme-challenge.www.example.test.", "_acme-challenge.delegated.example.test.")
	mine.SetCNAME("_acme-challenge.delegated.example.test.", "final.acme.example.test.")
	f, _ := newFactory(t)
	s, err := f.Solver(ctx, "dns/cname-in", cfg)
	require.NoError(t, err)

	require.NoError(t, s.Present(ctx, "www.example.test", "tok", "tok.thumb"))
	_, value := solvers.ChallengeRecord("www.example.test", "tok.thumb")
	assert.Equal(t, []dnstest.Record{{Value: value, TTL: 60}}, mine.TXT("final.acme.example.test."))
	assert.Empty(t, mine.TXT("_acme-challenge.www.example.test."))
	require.NoError(t, s.WaitPropagation(ctx, "www.example.test", "tok.thumb"))
	require.NoError(t, s.CleanUp(ctx, "www.example.test", "tok", "tok.thumb"))
	assert.Empty(t, mine.TXT("final.acme.example.test."))
}

func TestCNAMEOutsideZonesIsRefused(t *testing.T) {
	tests := []struct {
		name   string
		cnames map[string]string // on my server
		theirs map[string]string // on their server
		target string            // the name the error must name
	}{
		{
			name:   "direct",
			cnames: map[string]string{"_acme-challenge.www.example.test.": "_acme-challenge.victim.other.test."},
			target: "_acme-challenge.victim.other.test.",
		},
		{
			name: "chain leaving the zone on the last hop",
			cnames: map[string]string{
				"_acme-challenge.www.example.test.": "a.example.test.",
				"a.example.test.":                   "b.example.test.",
				"b.example.test.":                   "_acme-challenge.victim.other.test.",
			},
			target: "_acme-challenge.victim.other.test.",
		},
		{
			name:   "chain continuing in the other zone",
			cnames: map[string]string{"_acme-challenge.www.example.test.": "x.other.test."},
			theirs: map[string]string{"x.other.test.": "y.other.test."},
			target: "y.other.test.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			mine, theirs, cfg := twoZones(t)
			for n, target := range tt.cnames {
				mine.SetCNAME(n, target)
			}
			for n, target := range tt.theirs {
				theirs.SetCNAME(n, target)
			}
			f, logs := newFactory(t)
			s, err := f.Solver(ctx, "dns/cname-out", cfg)
			require.NoError(t, err)

			err = s.Present(ctx, "www.example.test", "tok", "tok.thumb")
			require.Error(t, err)
			assert.True(t, solvers.IsConfigError(err), "got %T: %v", err, err)
			assert.Contains(t, err.Error(), "_acme-challenge.www.example.test. follows a CNAME to "+tt.target+", outside this DNS configuration's zones (example.test)")
			assert.Contains(t, err.Error(), "no record was written")
			err = s.CleanUp(ctx, "www.example.test", "tok", "tok.thumb")
			require.Error(t, err)
			assert.Contains(t, err.Error(), "no record was removed")

			assert.Zero(t, updates(mine), "nothing written in my zone")
			assert.Zero(t, updates(theirs), "nothing written in theirs")
			assert.NotContains(t, logs.String(), tsigSecret)
		})
	}
}

func TestCNAMEChainThroughOtherZoneBackIntoMine(t *testing.T) {
	ctx := testCtx(t)
	mine, theirs, cfg := twoZones(t)
	// Only the name written counts: a chain may pass through other zones.
	mine.SetCNAME("_acme-challenge.www.example.test.", "x.other.test.")
	theirs.SetCNAME("x.other.test.", "back.example.test.")
	f, _ := newFactory(t)
	s, err := f.Solver(ctx, "dns/cname-back", cfg)
	require.NoError(t, err)
	require.NoError(t, s.Present(ctx, "www.example.test", "tok", "tok.thumb"))
	assert.Len(t, mine.TXT("back.example.test."), 1)
	assert.Zero(t, updates(theirs))
}

func TestCNAMELoopIsRefused(t *testing.T) {
	for name, cnames := range map[string]map[string]string{
		"two names": {
			"_acme-challenge.www.example.test.": "a.example.test.",
			"a.example.test.":                   "_acme-challenge.www.example.test.",
		},
		"three names": {
			"_acme-challenge.www.example.test.": "a.example.test.",
			"a.example.test.":                   "b.example.test.",
			"b.example.test.":                   "a.example.test.",
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			mine, _, cfg := twoZones(t)
			for n, target := range cnames {
				mine.SetCNAME(n, target)
			}
			f, _ := newFactory(t)
			s, err := f.Solver(ctx, "dns/loop", cfg)
			require.NoError(t, err)
			err = s.Present(ctx, "www.example.test", "tok", "tok.thumb")
			require.Error(t, err)
			assert.True(t, solvers.IsConfigError(err))
			assert.Contains(t, err.Error(), "_acme-challenge.www.example.test. follows a CNAME loop")
			assert.Zero(t, updates(mine))
		})
	}
}

// The zone check and lego's own lookup in the provider must see the same
// CNAME: an alias switched to another zone right after the check does not
// steer the write there.
func TestCNAMEChangedAfterCheckIsNotFollowed(t *testing.T) {
	ctx := testCtx(t)
	mine, theirs, cfg := twoZones(t)
	mine.SetCNAMESequence("_acme-challenge.www.example.test.", "checked.example.test.", "_acme-challenge.victim.other.test.")
	f, _ := newFactory(t)
	s, err := f.Solver(ctx, "dns/flip", cfg)
	require.NoError(t, err)
	require.NoError(t, s.Present(ctx, "www.example.test", "tok", "tok.thumb"))
	assert.Len(t, mine.TXT("checked.example.test."), 1, "written where the check looked")
	assert.Zero(t, updates(theirs))

	// The next call asks again: the alias now leaves the zone and is refused.
	err = s.Present(ctx, "www.example.test", "tok2", "tok2.thumb")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "follows a CNAME to _acme-challenge.victim.other.test.")
}

func TestDomainOutsideZonesIsRefused(t *testing.T) {
	ctx := testCtx(t)
	mine, theirs, cfg := twoZones(t)
	f, _ := newFactory(t)
	s, err := f.Solver(ctx, "dns/outside", cfg)
	require.NoError(t, err)
	err = s.Present(ctx, "www.other.test", "tok", "tok.thumb")
	require.Error(t, err)
	assert.True(t, solvers.IsConfigError(err))
	assert.Equal(t, "www.other.test is outside this DNS configuration's zones (example.test)", err.Error())
	// A look-alike suffix is not inside the zone.
	err = s.Present(ctx, "www.notexample.test", "tok", "tok.thumb")
	require.Error(t, err)
	assert.True(t, solvers.IsConfigError(err))
	assert.Zero(t, updates(mine)+updates(theirs))
}

func TestCNAMESupportDisabledWritesAtTheChallengeName(t *testing.T) {
	ctx := testCtx(t)
	mine, theirs, cfg := twoZones(t)
	cfg.Credentials["LEGO_DISABLE_CNAME_SUPPORT"] = "true"
	mine.SetCNAME("_acme-challenge.www.example.test.", "_acme-challenge.victim.other.test.")
	f, _ := newFactory(t)
	s, err := f.Solver(ctx, "dns/nocname", cfg)
	require.NoError(t, err)
	// lego does not follow the alias, so the name written is in the zone.
	require.NoError(t, s.Present(ctx, "www.example.test", "tok", "tok.thumb"))
	assert.Len(t, mine.TXT("_acme-challenge.www.example.test."), 1)
	assert.Zero(t, updates(theirs))
}

// A delegated name (outside the zones, allowed by delegated_domains) is written only at a name
// derived from itself in the zones: a CNAME to any other name of the zones (the apex, another
// tenant's record) is refused before anything is written, since rfc2136 replaces the whole TXT
// set at the name it writes.
func TestDelegatedNameWritesOnlyAtItsOwnTarget(t *testing.T) {
	ctx := testCtx(t)
	mine, theirs, cfg := twoZones(t)
	cfg.DelegatedDomains = []string{"other.test"}
	theirs.SetCNAME("_acme-challenge.www.other.test.", "www.other.test.acme.example.test.")
	theirs.SetCNAME("_acme-challenge.api.other.test.", "_acme-challenge.api.other.test.example.test.")
	theirs.SetCNAME("_acme-challenge.evil.other.test.", "example.test.")
	theirs.SetCNAME("_acme-challenge.steal.other.test.", "_acme-challenge.www.example.test.")
	theirs.SetCNAME("_acme-challenge.pre.other.test.", "www.other.test.acme.example.test.")
	f, _ := newFactory(t)
	s, err := f.Solver(ctx, "dns/delegated", cfg)
	require.NoError(t, err)

	require.NoError(t, s.Present(ctx, "www.other.test", "tok", "tok.thumb"))
	assert.Len(t, mine.TXT("www.other.test.acme.example.test."), 1)
	require.NoError(t, s.Present(ctx, "api.other.test", "tok2", "tok2.thumb"))
	assert.Len(t, mine.TXT("_acme-challenge.api.other.test.example.test."), 1)
	before := updates(mine)
	for _, d := range []string{"evil.other.test", "steal.other.test", "pre.other.test"} {
		err := s.Present(ctx, d, "tok3", "tok3.thumb")
		require.Error(t, err, d)
		assert.True(t, solvers.IsConfigError(err), d)
		assert.Contains(t, err.Error(), "a delegated name's CNAME must point to a name of its own in the zones", d)
		assert.Contains(t, err.Error(), "no record was written", d)
	}
	assert.Equal(t, before, updates(mine), "nothing written for the refused names")
	assert.Zero(t, updates(theirs))
	// A delegated name without a CNAME stays outside the zones.
	err = s.Present(ctx, "nocname.other.test", "tok4", "tok4.thumb")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "outside this DNS configuration's zones")
}
